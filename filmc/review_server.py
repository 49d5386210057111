"""`filmc review`: the review page on localhost, where a click picks.

    serve(Path("film.film"), "127.0.0.1", 8737) → exit code

The standard library's threading HTTP server, three routes:

    GET  /?filter=unpicked&page=2    the page (engine/review.py renders it)
    GET  /media/<digest><ext>         a store object, with Range requests (video seeking)
    GET  /font.otf                    the bundled Latin + CJK face, for Chinese dialogue
    POST /api/pick {shot, kind, name} engine.picks.pick, as `filmc pick` does; then the
                                      film is compiled again (its clip takes are keyed by
                                      the keyframe pick) and the cards that changed return

Before a page, the film is compiled again when a file it reads changed (an edit,
a pick from a terminal) and the store is read again (a build in another
terminal), so a reload always shows the truth.  A pick is refused with the
reason and a hint (400) when `engine.picks` refuses it, for instance a
candidate not built yet.  Only JSON posts are taken, and on a loopback address
only loopback host names: another site open in the browser cannot pick.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import mimetypes
import os
import re
import socket
import sys
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .common import compile_or_report, fail, report
from .lang.paths import stamp

MEDIA = re.compile(r"/media/([0-9a-f]{64})(\.[A-Za-z0-9]{1,8})")
MAX_BODY = 64 * 1024
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


class Review:
    """What the server shows: the compiled film, its store and its cards, behind one lock."""

    def __init__(self, path: Path, offline: bool) -> None:
        self.path, self.offline = path, offline
        self.lock = threading.Lock()
        self.program: Any = None
        self.store: Any = None
        self.cards: list[Any] = []
        self.digests: set[str] = set()
        self.broken = False  # the film stopped compiling since it was loaded
        self._stamps: dict[Path, tuple[int, int, int] | None] = {}
        self._seen: tuple[Any, Any] = (None, None)  # what the cards were gathered from
        # The last compile, kept (compiler/pipeline.py Memo): a pick re-keys its shot alone.
        self.memo: Any = None

    def load(self, first: bool = False) -> bool:
        """Compile the film; print its diagnostics the way every command does (warnings
        only the first time); False when it has errors."""
        from .compiler.pipeline import Memo, compile_film
        from .engine.lengths import lookup_for

        self.memo = self.memo or Memo()
        if first:
            result = compile_or_report(self.path, offline=self.offline, memo=self.memo)
        else:
            result = compile_film(self.path, offline=self.offline, said=lookup_for,
                                  memo=self.memo)
            if not result.ok or result.graph is None:
                report(result.diags, result.sources)
                result = None
        if result is None:
            self.broken = True
            return False
        self.program, self.broken = result.program(), False
        self._stamps = _stamps(self.program.files)
        return True

    def refresh(self) -> None:
        """Compile again if a file of the film changed; read the store again."""
        from .engine.review import contact_sheet
        from .engine.store import Store, location

        program = self.program
        if _stamps(program.files) != self._stamps:
            self.load()
        if self.store is None:
            self.store = Store.open(location(Path(self.program.root), self.program.store))
        # Every finished step appends to the store's log: an unchanged log and program
        # mean unchanged cards (a 3,000-shot film's take half a second to gather).
        seen = (self.program, _stamps([self.store.log.path]) if self.store else None)
        if seen == self._seen:
            return
        self.cards = contact_sheet(self.program, self.store)
        self.digests = {c.digest for card in self.cards
                        for c in (*card.keyframes, *card.clips) if c.digest}
        self._seen = seen

    def page(self, filter: str, number: int) -> str:
        from .engine.review import paginate, render

        with self.lock:
            self.refresh()
            program, cards = self.program, self.cards
        pages = paginate(cards, filter)
        page = pages[min(max(number, 1), len(pages)) - 1]
        return render(program, page, served=True, link=page_link, media_url=media_url,
                      font_url="/font.otf")

    def pick(self, shot_name: str, kind: str, name: str) -> tuple[int, dict[str, Any]]:
        """Pick; (HTTP status, answer)."""
        from .engine.picks import PickError, find_shot, pick
        from .engine.review import cards_html, counts

        with self.lock:
            self.refresh()
            if self.broken:
                return 409, {"error": "the film has errors since the page was loaded",
                             "hint": "fix them (`filmc check` lists them), then reload"}
            try:
                shot = find_shot(self.program, shot_name)
                pick(self.program, self.store, shot, kind, name)
            except PickError as e:
                return 400, {"error": e.message, "hint": e.hint}
            before = {c.shot: c for c in self.cards}
            if not self.load():
                return 409, {"error": "picked, but the film no longer compiles",
                             "hint": "the terminal running `filmc review` says why"}
            self.refresh()
            program, cards = self.program, self.cards
        changed = [c for c in cards if before.get(c.shot) != c]
        picks = find_shot(program, shot.shot)
        return 200, {
            "shot": shot.shot,
            **{c.kind: {"status": c.status, "used": c.used, "why": c.why,
                        "pick": c.pick.name if c.pick else None}
               for c in (picks.keyframe, picks.clip)},
            "cards": cards_html(program, changed, served=True, media_url=media_url),
            "counts": counts(cards),
        }

    def media(self, digest: str) -> Path | None:
        with self.lock:
            if digest not in self.digests or self.store is None:
                return None
            return Path(self.store.objects.path(digest))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _stamps(files: Any) -> dict[Path, tuple[int, int, int] | None]:
    return {f: stamp(f) for f in files}


def page_link(filter: str, page: int) -> str:
    query = {k: v for k, v in (("filter", filter), ("page", page))
             if (k, v) not in (("filter", "all"), ("page", 1))}
    return "/" + ("?" + urllib.parse.urlencode(query) if query else "")


def media_url(c: Any) -> str:
    return f"/media/{c.digest}{c.ext}"


# --- HTTP ---------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal is the UI
        pass

    def do_GET(self) -> None:
        self._safely(lambda: self._get(body=True))

    def do_HEAD(self) -> None:
        self._safely(lambda: self._get(body=False))

    def do_POST(self) -> None:
        self._safely(self._post)

    # -- routes -------------------------------------------------------------------------------

    def _get(self, body: bool) -> None:
        if not self._host_ok():
            return
        url = urllib.parse.urlsplit(self.path)
        from .engine.review import FILTERS, font_file

        if url.path == "/":
            query = urllib.parse.parse_qs(url.query)
            filter = query.get("filter", ["all"])[0]
            number = query.get("page", ["1"])[0]
            if filter not in FILTERS or not number.isdigit():
                return self._text(400, f"filter is one of {', '.join(FILTERS)}; page a number")
            html = self.server.review.page(filter, int(number)).encode("utf-8")
            return self._send(200, "text/html; charset=utf-8", html if body else None,
                              len(html), {"Cache-Control": "no-store"})
        if url.path == "/font.otf":
            return self._file(font_file(), "font/otf", body)
        m = MEDIA.fullmatch(url.path)
        if m:
            path = self.server.review.media(m[1])
            if path is None:
                return self._text(404, "not a candidate of this film in the store")
            kind = mimetypes.guess_type("x" + m[2].lower())[0] or "application/octet-stream"
            return self._file(path, kind, body, etag=m[1])
        return self._text(404, "not found")

    def _post(self) -> None:
        if not self._host_ok():
            return
        if urllib.parse.urlsplit(self.path).path != "/api/pick":
            return self._json(404, {"error": "not found"})
        origin = self.headers.get("Origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != self.headers.get("Host"):
            return self._json(403, {"error": "a pick must come from the review page itself"})
        if self.headers.get_content_type() != "application/json":
            return self._json(415, {"error": "send JSON: {shot, kind, name}"})
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._json(411, {"error": "a Content-Length is required"})
        if not 0 <= length <= MAX_BODY:
            return self._json(413, {"error": "the request is too large"})
        try:
            data = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            return self._json(400, {"error": "the body is not JSON"})
        if not (isinstance(data, dict)
                and all(isinstance(data.get(k), str) and data[k] for k in ("shot", "kind", "name"))):
            return self._json(400, {"error": "send {shot, kind, name}, each a string"})
        if data["kind"] not in ("keyframe", "clip"):
            return self._json(400, {"error": f"kind `{data['kind']}` is neither keyframe nor clip"})
        status, answer = self.server.review.pick(data["shot"], data["kind"], data["name"])
        return self._json(status, answer)

    # -- answers -------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        """On a loopback address, only loopback host names (no DNS rebinding)."""
        if not self.server.loopback:
            return True
        host = urllib.parse.urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        if host in _LOOPBACK_NAMES or _is_loopback(host):
            return True
        self._text(403, "this review server answers only to localhost")
        return False

    def _file(self, path: Path, kind: str, body: bool, etag: str | None = None) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return self._text(404, "not found")
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            headers = {"Accept-Ranges": "bytes",
                       "Cache-Control": "public, max-age=31536000, immutable"}
            if etag:
                headers["ETag"] = f'"{etag}"'
            start, end, status = 0, size - 1, 200
            wanted = self.headers.get("Range")
            if wanted:
                try:
                    found = byte_range(wanted, size)
                except Unsatisfiable:
                    return self._send(416, "text/plain", b"", 0,
                                      {"Content-Range": f"bytes */{size}"})
                if found is not None:
                    start, end = found
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            length = end - start + 1 if size else 0
            self._send(status, kind, None, length, headers)
            if body and length:
                self.connection.sendfile(f, start, length)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self._send(status, "application/json; charset=utf-8", raw, len(raw),
                   {"Cache-Control": "no-store"})

    def _text(self, status: int, text: str) -> None:
        raw = (text + "\n").encode("utf-8")
        self._send(status, "text/plain; charset=utf-8", raw, len(raw))

    def _send(self, status: int, kind: str, raw: bytes | None, length: int,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if raw and self.command != "HEAD":
            self.wfile.write(raw)

    def _safely(self, route: Any) -> None:
        """A route; a store failure answers its message, a bug one line in the terminal."""
        from .engine.db import StoreError

        try:
            route()
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the browser went away (a seek, a closed tab)
        except StoreError as e:
            print(e.render(), file=sys.stderr, flush=True)
            with contextlib.suppress(OSError):
                self._json(500, {"error": e.message, "hint": e.hint})
        except Exception as e:
            last = traceback.extract_tb(e.__traceback__)[-1]
            print(f"filmc review: internal error ({type(e).__name__} at "
                  f"{Path(last.filename).name}:{last.lineno}) answering {self.command} "
                  f"{self.path}; this is a bug in filmc — please report it", file=sys.stderr,
                  flush=True)
            with contextlib.suppress(OSError):
                self._json(500, {"error": f"internal error in filmc ({type(e).__name__})",
                                 "hint": "this is a bug in filmc: please report it"})


class Unsatisfiable(Exception):
    """A range wholly past the end of the file: 416."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The (first, last) bytes a Range header asks for; None to send it all (no single
    byte range: a multi-range, another unit); Unsatisfiable past the end."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or not (m[1] or m[2]):
        return None
    if m[1]:
        start = int(m[1])
        end = min(int(m[2]), size - 1) if m[2] else size - 1
        if m[2] and int(m[2]) < start:
            return None  # invalid: ignored, as RFC 9110 says
    else:
        start, end = max(0, size - int(m[2])), size - 1
        if int(m[2]) == 0:
            raise Unsatisfiable
    if start >= size:
        raise Unsatisfiable
    return start, end


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], review: Review) -> None:
        self.review = review
        self.loopback = address[0] in _LOOPBACK_NAMES or _is_loopback(address[0])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(path: Path, host: str, port: int, offline: bool = False) -> int:
    """Serve the review page of the film at `path` until Ctrl-C; the exit code."""
    from .engine.db import StoreError

    review = Review(path, offline)
    if not review.load(first=True):
        return 1
    try:
        review.refresh()
    except StoreError as e:
        print(e.render(), file=sys.stderr)
        return 1
    try:
        server = Server((host, port), review)
    except OSError as e:
        review.close()
        return fail(f"cannot listen on {host}:{port}: {e.strerror or e}",
                    "another program may use the port: choose one with `--port N`, or "
                    "`--port 0` for any free one" if port else None)
    shown = str(server.server_address[0])
    shown = f"[{shown}]" if ":" in shown else shown
    try:  # (a Ctrl-C as soon as the address is out is a stop too)
        print(f"serving http://{shown}:{server.server_address[1]}/ (Ctrl-C to stop)",
              flush=True)
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
        review.close()
    return 0
