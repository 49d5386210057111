"""What the loopback servers share: how a route is served (counted, its key checked, a
queued fault injected), the answers every service gives the same way (a body that is
not a JSON object, a signed file URL past its expiry, a connection dropped), and the
command line of a server run as its own process.

    api = guarded(state, "Bearer", lambda request: refusal(...), _fault)
    app.router.add_post("/v1/things", api("create", _create))       # counted as "create"
    app.router.add_get("/files/{id}", api("file", _file, auth=False)) # a signed URL
    api = routed(app, state, _Refusal, serve)                         # or: served by `serve`
    api("POST", "/v1/things", "create", _create)

    body = await json_object(request, lambda m: _Refusal(400, m), "not JSON", "not an object")
    return signed_file(body, expired=time.time() >= expires)          # S3's 403 / 404 XML
    hang_up(request)                                                  # the answer is lost
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn

from aiohttp import web

from . import media

Handler = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
Fault = Callable[[Any, tuple[Any, ...], web.Request, str], Awaitable[web.StreamResponse | None]]


def guarded(state: Any, scheme: str, refusal: Callable[[web.Request], web.StreamResponse],
            fault: Fault) -> Callable[..., Route]:
    """How a server's routes are served: `api(route, handler, auth=True)` counts each
    request in `state.requests[route]`, refuses one whose `Authorization` is not
    `{scheme} {state.key}` (`refusal`), unless the route takes no key (a signed URL:
    `auth=False`), and answers the next fault of `state.faults` (`fault`; None: the
    handler answers after all) before the handler does."""
    def api(route: str, handler: Handler, auth: bool = True) -> Route:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            state.requests[route] += 1
            if auth and request.headers.get("Authorization") != f"{scheme} {state.key}":
                state.auth_failures += 1
                return refusal(request)
            queued = state.faults.pop(0) if state.faults and auth else None
            if queued is not None:
                answer = await fault(state, queued, request, route)
                if answer is not None:
                    return answer
            return await handler(state, request)

        return wrapped

    return api


def routed(app: web.Application, state: Any, refusal: type[Exception],
           serve: Callable[[Handler, web.Request, str], Awaitable[web.StreamResponse]]
           ) -> Callable[[str, str, str, Handler], None]:
    """`api(method, path, route, handler)` adds a route to `app`: each request counted in
    `state.requests[route]` and served by `serve(handler, request, route)` (the key
    checked, a fault injected, then the handler); a `refusal` raised on the way answers
    with its `response`."""
    def api(method: str, path: str, route: str, handler: Handler) -> None:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            state.requests[route] += 1
            try:
                return await serve(handler, request, route)
            except refusal as e:
                return e.response  # type: ignore[attr-defined]

        app.router.add_route(method, path, wrapped)

    return api


@contextlib.contextmanager
def counted(state: Any, route: str) -> Iterator[None]:
    """One request to `route`: counted, timed, and in flight while the block runs."""
    state.requests[route] += 1
    state.request_times.append(time.monotonic())
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        yield
    finally:
        state.in_flight -= 1


async def json_object(request: web.Request, refusal: Callable[[str], Exception],
                      not_json: str, not_object: str) -> dict[str, Any]:
    """The request's body, a JSON object; else `refusal` of what is wrong is raised."""
    try:
        body = await request.json()
    except ValueError:
        raise refusal(not_json) from None
    if not isinstance(body, dict):
        raise refusal(not_object)
    return body


def signed_file(body: bytes | None, expired: bool,
                content_type: str = "video/mp4") -> web.Response:
    """A file behind a signed URL, as an object store (S3, TOS) answers: 404 NoSuchKey for
    none, 403 AccessDenied once the URL has expired."""
    if body is None:
        return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>",
                            content_type="application/xml")
    if expired:
        return web.Response(status=403, text="<Error><Code>AccessDenied</Code><Message>Request "
                            "has expired</Message></Error>", content_type="application/xml")
    return web.Response(body=body, content_type=content_type)


def kept(found: tuple[bytes, str, float] | None, ttl: float) -> web.Response:
    """An output (its body, its type, when it was made) while it is kept, `ttl` seconds;
    404 before and after."""
    if found is None or time.time() - found[2] >= ttl:
        return web.Response(status=404, text="Not Found")
    return web.Response(body=found[0], content_type=found[1])


def keep_clip(state: Any, file_id: Any, task: Any, broken: bytes) -> None:
    """The clip a task made (of its size, length and prompt; `broken`, an error page, when
    `state.corrupt`) kept in `state.files` as `file_id`, and counted as made."""
    body = broken if state.corrupt else media.mp4_once(*task.size, task.seconds, task.prompt)
    state.files[file_id] = (body, time.time())
    state.made.append(hashlib.sha256(body).hexdigest())


async def lost(request: web.Request, made: Awaitable[Any] | None = None) -> NoReturn:
    """The answer lost: the request read (what it asks for `made`, where given), then the
    connection dropped."""
    if made is not None:
        await made
    else:
        await request.read()
    hang_up(request)


def hang_up(request: web.Request) -> NoReturn:
    """No answer: the connection is dropped, and the handler ends with it."""
    assert request.transport is not None
    request.transport.abort()
    raise asyncio.CancelledError


def command_line(description: str, port: int, key: str | None = None) -> argparse.ArgumentParser:
    """The arguments of a server run as its own process (`python -m loopback.NAME`):
    `--host`, `--port` and, given a default, the `--key` it accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    if key is not None:
        parser.add_argument("--key", default=key, help="the API key it accepts")
    return parser
