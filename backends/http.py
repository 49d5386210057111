"""HTTP for adapters: one aiohttp session per backend, every failure a `ServiceError`.

aiohttp rather than httpx: on this project's benchmark (32 jobs in flight, a
request per job every few hundred milliseconds) httpx spent 3.5–4.5 ms of CPU
a request, aiohttp 0.3 ms, and aiohttp also speaks WebSocket (ComfyUI's
progress channel).

    http = Http("comfyui", timeout=60)
    r = await http.request("POST", url, json=body)     # any status comes back
    r.raise_for_status("queue the prompt")             # 4xx/5xx → ServiceError by kind
    data = r.json()
    await http.close()

The engine owns retrying (backoff, `Retry-After`, deadlines): this module only
says precisely what happened — above all whether a request provably never left
(`unbilled`): a failed connect, as opposed to a connection that broke after the
request was sent, which might have been billed.  Messages never carry a URL's
query string or a header, so a key in either cannot leak into a log; and `redact`
masks the keys (and anything shaped like one) in what a service's answer said.

aiohttp takes a quarter of a second to import, so it is imported on first use:
`filmc check` and `plan` read adapters' declarations without it.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .protocol import FailureKind, ServiceError

if TYPE_CHECKING:
    import aiohttp

# HTTP statuses and what they mean for a request, by the rules in BACKENDS.md.
_BY_STATUS = {
    400: FailureKind.INVALID, 401: FailureKind.AUTH, 402: FailureKind.CREDIT,
    403: FailureKind.AUTH, 404: FailureKind.NOT_FOUND, 408: FailureKind.TRANSIENT,
    409: FailureKind.INVALID, 410: FailureKind.EXPIRED, 413: FailureKind.INVALID,
    422: FailureKind.INVALID, 429: FailureKind.RATE_LIMITED,
}


def kind_of_status(status: int) -> FailureKind:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return FailureKind.TRANSIENT if status >= 500 else FailureKind.INVALID


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`Retry-After` in seconds: a number of seconds, or an HTTP date."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def where(url: str) -> str:
    """A URL for a message: scheme, host and path; never the query, nor a user and password
    before the host (keys live in both)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url.split("?", 1)[0])
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# What an OpenAI-style key looks like (`sk-…`): masked by default, whoever's key it is.
KEY_SHAPES = ((re.compile(r"\bsk-[A-Za-z0-9_\-*]{4,}"), "sk-***"),)


@attrs.frozen
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ServiceError(FailureKind.TRANSIENT,
                               f"{where(self.url)} answered {self.status} with a body that is "
                               f"not JSON ({snippet(self.body)})", status=self.status) from None

    def error(self, doing: str, detail: str | None = None, kind: FailureKind | None = None,
              unbilled: bool = False) -> ServiceError:
        """The ServiceError this response means, for a message `cannot {doing}: ...`."""
        text = detail if detail is not None else snippet(self.body)
        return ServiceError(kind or kind_of_status(self.status),
                            f"cannot {doing}: {where(self.url)} answered {self.status}"
                            + (f": {text}" if text else ""),
                            retry_after=retry_after(self.headers), unbilled=unbilled,
                            status=self.status)

    def raise_for_status(self, doing: str) -> None:
        if not self.ok:
            raise self.error(doing)


def snippet(body: bytes, limit: int = 300) -> str:
    """An answer's body for a message: one line, cut at `limit` characters."""
    text = body.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


class Http:
    """One connection pool for one backend.  Created lazily inside the running loop."""

    def __init__(self, backend: str, timeout: float = 120.0, connections: int = 64) -> None:
        self.backend = backend
        self.timeout = timeout
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def request(self, method: str, url: str, *, json: Any = None, data: Any = None,
                      headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
                      timeout: float | None = None, max_bytes: int = 1 << 30) -> Response:
        """Send one request and read the whole answer, whatever its status."""
        import aiohttp

        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self.session().request(method, url, json=json, data=data, headers=headers,
                                              params=params, **kwargs) as r:
                # `read(n)` answers what has arrived so far: read to the end, bounded.
                chunks, size = [], 0
                async for chunk in r.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ServiceError(FailureKind.INVALID,
                                           f"{where(url)} sent more than {max_bytes} bytes")
                    chunks.append(chunk)
                return Response(r.status, dict(r.headers), b"".join(chunks), str(r.url))
        except ServiceError:
            raise
        except aiohttp.ClientConnectorError as e:
            # The connection was never made: the request provably did not arrive.
            raise ServiceError(FailureKind.TRANSIENT,
                               f"cannot reach {self.backend} at {where(url)}: {_reason(e)}",
                               unbilled=True) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ServiceError(FailureKind.TRANSIENT,
                               f"{where(url)} did not answer within "
                               f"{timeout or self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as e:
            raise ServiceError(FailureKind.TRANSIENT,
                               f"the connection to {where(url)} broke: {_reason(e)}") from None

    async def send(self, method: str, url: str, doing: str, secrets: str | Iterable[str] = (),
                   shapes: Iterable[tuple[re.Pattern[str], str]] = KEY_SHAPES,
                   **kwargs: Any) -> Response:
        """`request`, its failure said as `cannot {doing}: ...` with the secrets it carried
        (and anything key-shaped) masked out of the message (`redact`)."""
        try:
            return await self.request(method, url, **kwargs)
        except ServiceError as e:
            raise redact(e, secrets, doing, shapes) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def masked(text: str, secrets: str | Iterable[str],
           shapes: Iterable[tuple[re.Pattern[str], str]] = ()) -> str:
    """`text` with each secret (four characters or more), and whatever matches one of
    `shapes`, masked."""
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    for shape, mask in shapes:
        text = shape.sub(mask, text)
    return text


def redact(e: ServiceError, secrets: str | Iterable[str], doing: str | None = None,
           shapes: Iterable[tuple[re.Pattern[str], str]] = KEY_SHAPES) -> ServiceError:
    """`e` with the secrets, and anything key-shaped, masked out of its message (a server
    may echo what it was sent); and, given `doing`, said as `cannot {doing}: ...` when it
    does not say so yet."""
    message = masked(e.message, secrets, shapes)
    if doing and not message.startswith("cannot "):
        message = f"cannot {doing}: {message}"
    if message == e.message:
        return e
    return ServiceError(e.kind, message, retry_after=e.retry_after, unbilled=e.unbilled,
                        status=e.status)


def unbilled(e: ServiceError) -> ServiceError:
    """`e`, of a request that made nothing billable (an upload): it may always be sent again."""
    return ServiceError(e.kind, e.message, retry_after=e.retry_after, unbilled=True,
                        status=e.status)


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.split("?", 1)[0] if "://" in text else text
