"""Loopback servers that speak each service's documented protocol, for tests and benchmarks.

Real HTTP on 127.0.0.1, strict about what the real service is strict about,
with real PNG/MP4/WAV bodies and injectable faults; each counts what it was
asked (above all, submissions: nothing may be paid twice).

    with serve(make_app(state)) as url:       # a background thread, a free port
        ...                                   # state.counts, state.faults

`python -m loopback.comfyui --port 8188` (from tests/) runs one in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from aiohttp import web


@contextlib.contextmanager
def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` on a background thread's event loop; yield its base URL, stop it after."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict = {}

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        box["runner"] = runner
        box["url"] = f"http://{host}:{sock.getsockname()[1]}"

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as e:  # the port is taken, say
            box["error"] = e
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="loopback-server", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]
    try:
        yield box["url"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def run_forever(app: web.Application, host: str, port: int) -> None:
    """Serve in this process until killed (for `python -m`)."""
    web.run_app(app, host=host, port=port, access_log=None, print=None)
