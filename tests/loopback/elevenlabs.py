"""A loopback ElevenLabs API: text-to-speech, sound generation, music, and their faults.

Written from ElevenLabs' documented protocol (backends/elevenlabs.py cites it): the
`xi-api-key` header, the voice id in the speech route's path, `output_format` in the
query, JSON bodies whose required fields are checked (422 with a pydantic-style
`detail` list otherwise), errors as `{"detail": {"status", "message"}}`.  Answers
carry real audio: raw 16-bit mono PCM at the format's rate (a tone, its pitch a
function of the words), as long as the words take to say, the `duration_seconds`
or the `music_length_ms` asked for.

    state = ElevenLabsState(key="el-test")
    with serve(make_app(state)) as url:       # base_url = url
        state.faults.append(("status", 429, {"Retry-After": "1"}, None))
    state.requests["text-to-speech"], state.received, state.voices

Faults, one taken per API request (after the key is checked), in order:
("status", code, headers, body) answers that (body None: an ElevenLabs-shaped error),
("quota",) a 401 `quota_exceeded`, ("reset",) reads the request, counts it billed and
drops the connection unanswered, ("corrupt",) a 200 whose body is JSON, not audio.

`python -m loopback.elevenlabs --port 8191 --key el-test` (from tests/) serves until killed.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections import Counter
from typing import Any

import attrs
from aiohttp import web

from . import run_forever
from .common import command_line, hang_up

FORMATS = ("mp3_44100_128", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100")


@attrs.define
class ElevenLabsState:
    """The server's knobs and what it was asked; read it from the test's thread."""

    key: str = "el-loopback"
    faults: list[tuple[Any, ...]] = attrs.Factory(list)
    requests: Counter[str] = attrs.Factory(Counter)  # by route: text-to-speech, sound-generation…
    auth_failures: int = 0
    billed: int = 0  # requests that made audio, or were read and then dropped
    received: list[dict[str, Any]] = attrs.Factory(list)  # each JSON body, with its route
    voices: list[str] = attrs.Factory(list)  # the voice id of each speech request
    formats: list[str] = attrs.Factory(list)  # the output_format of each request


def _error(code: int, status: str, message: str, headers: Any = None) -> web.Response:
    return web.json_response({"detail": {"status": status, "message": message}}, status=code,
                             headers=headers)


def pcm(seconds: float, rate: int, seed: str) -> bytes:
    """Raw 16-bit mono PCM: a tone of `seconds`, its pitch a function of `seed`."""
    pitch = 200 + hashlib.sha256(seed.encode()).digest()[0] * 2
    n = max(1, round(seconds * rate))
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * pitch * i / rate)))
                    for i in range(n))


def make_app(state: ElevenLabsState) -> web.Application:
    app = web.Application()

    def api(route: str, required: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            state.requests[route] += 1
            if request.headers.get("xi-api-key") != state.key:
                state.auth_failures += 1
                return _error(401, "invalid_api_key", "Invalid API key")
            fmt = request.query.get("output_format", "mp3_44100_128")
            fault = state.faults.pop(0) if state.faults else None
            if fault is not None:
                if fault[0] == "status":
                    code, headers, body = fault[1], fault[2], fault[3]
                    if body is None:
                        return _error(code, "error", f"loopback fault {code}", headers)
                    return web.Response(status=code, body=body, headers=headers)
                if fault[0] == "quota":
                    return _error(401, "quota_exceeded", "This request exceeds your quota.")
                if fault[0] == "reset":
                    await request.read()
                    state.billed += 1
                    hang_up(request)
            try:
                body = json.loads(await request.read())
            except ValueError:
                return web.json_response({"detail": [{"msg": "body is not JSON"}]}, status=422)
            if not isinstance(body, dict) or not isinstance(body.get(required), str):
                return web.json_response({"detail": [{"loc": ["body", required],
                                                      "msg": "field required"}]}, status=422)
            if fmt not in FORMATS:
                return _error(422, "invalid_output_format", f"unknown output_format {fmt}")
            state.received.append({"route": route, **body})
            state.formats.append(fmt)
            if route == "text-to-speech":
                state.voices.append(request.match_info["voice_id"])
                seconds = 0.3 * max(1, len(body["text"].split()))
            elif route == "sound-generation":
                d = body.get("duration_seconds")
                if d is not None and not (isinstance(d, (int, float)) and 0.5 <= d <= 30):
                    return _error(422, "invalid_duration", "duration_seconds is 0.5 to 30")
                seconds = float(d) if d is not None else 1.0
            else:
                ms = body.get("music_length_ms")
                if ms is not None and not (isinstance(ms, int) and 3000 <= ms <= 600000):
                    return _error(422, "invalid_length", "music_length_ms is 3000 to 600000")
                seconds = (ms or 10000) / 1000
            if fault is not None and fault[0] == "corrupt":
                return web.json_response({"audio": "none"})
            state.billed += 1
            if not fmt.startswith("pcm_"):
                return _error(422, "unsupported", "the loopback server makes raw PCM only")
            audio = pcm(seconds, int(fmt.removeprefix("pcm_")), json.dumps(body, sort_keys=True))
            return web.Response(body=audio, content_type="application/octet-stream")

        return handler

    app.router.add_post("/v1/text-to-speech/{voice_id}", api("text-to-speech", "text"))
    app.router.add_post("/v1/sound-generation", api("sound-generation", "text"))
    app.router.add_post("/v1/music", api("music", "prompt"))
    return app


if __name__ == "__main__":
    args = command_line("A loopback ElevenLabs API.", 8191, key="el-loopback").parse_args()
    run_forever(make_app(ElevenLabsState(key=args.key)), args.host, args.port)
