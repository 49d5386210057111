"""The `elevenlabs` backend: dialogue, sound effects (and ambience) and music from ElevenLabs.

ElevenLabs answers synchronously with the audio itself, so `submit` makes the request
and returns `Done` with the file already in the step's work folder.

    speech → POST {base_url}/v1/text-to-speech/{voice_id}?output_format=pcm_24000
             {"text", "model_id"}
    sfx    → POST {base_url}/v1/sound-generation?output_format=...
             {"text", "model_id", "duration_seconds" (0.5–30; an effect: left to the model)}
    music  → POST {base_url}/v1/music?output_format=...   {"prompt", "music_length_ms", "model_id"}

The key goes in the `xi-api-key` header.  Audio is asked for as raw PCM
(`pcm_<rate>`: 16-bit little-endian mono) and kept as a WAV file.  The voice of a
line is `voices.<CHARACTER>`, else `voice`, else ElevenLabs' premade "Rachel".

Protocol as documented by ElevenLabs (verified with the search tool, late 2026):
https://elevenlabs.io/docs/api-reference/text-to-speech/convert (voice id in the path,
`text` and `model_id` in the JSON body, `xi-api-key` header, `output_format` in the
query, raw audio back); https://elevenlabs.io/docs/api-reference/sound-generation
(`text`, `duration_seconds` 0.5–30, `prompt_influence` 0–1, `output_format`); the
Music API's compose, `POST /v1/music` (`prompt`, `music_length_ms`, `model_id`
`music_v1`, `output_format`, audio bytes back).  Errors come as
`{"detail": {"status": ..., "message": ...}}`; `quota_exceeded` means no credit.
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..lang.steps import Fields
from .http import Http, Response, redact, snippet, where
from .protocol import (
    Adapter,
    Capabilities,
    Done,
    FailureKind,
    Handle,
    Json,
    Request,
    ServiceError,
    SettingProblem,
    Setup,
)
from .settings import ENGINE, Problems, number

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
DEFAULT_VOICE = "21m00Tcm4TlvDq8ikWAM"  # "Rachel", a premade voice every account has
DEFAULT_MODELS = {"speech": "eleven_multilingual_v2", "sfx": "eleven_text_to_sound_v2",
                  "music": "music_v1"}
MODEL_SETTINGS = {"speech": "speech_model", "sfx": "sfx_model", "music": "music_model"}
PCM_FORMATS = ("pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100")
DEFAULT_FORMAT = "pcm_24000"
SFX_SECONDS = (0.5, 30.0)
MUSIC_MIN_MS = 3000
KINDS = ("speech", "sfx", "music")
TEXT_SETTINGS = ("base_url", "voice", *MODEL_SETTINGS.values())
KNOWN = set(TEXT_SETTINGS) | {"voices", "output_format", "prompt_influence", *ENGINE}
GATEWAY_TIMEOUTS = frozenset({504, 524})


class ElevenLabs(Adapter):
    """ElevenLabs' text-to-speech, sound effects and music API."""

    type = "elevenlabs"
    version = "1"
    runs_here = False
    secrets = ("api_key",)
    kinds = KINDS

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.base_url = str(self.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self.http = Http(setup.name, timeout=float(self.settings.get("timeout_s") or 300))

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any], root: Path) -> Capabilities | None:
        if kind not in KINDS:
            return None
        return Capabilities(seed=False, negative=False, references=0, first_frame=False)

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        if kind == "speech":
            return frozenset({"text", "speaker", "take"})
        return frozenset({"prompt", "duration", "take"})

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        mine = {MODEL_SETTINGS.get(kind, ""), "output_format"}
        if kind == "sfx":
            mine.add("prompt_influence")
        return {k: v for k, v in settings.items() if k in mine}

    @classmethod
    def key_request(cls, kind: str, settings: Mapping[str, Any],
                    fields: Fields) -> Mapping[str, Json]:
        # The voice this line's speaker gets, not the whole `voices` table.
        return {"voice": voice_for(settings, fields.speaker)} if kind == "speech" else {}

    @classmethod
    def key_extra(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Json]:
        # A default model is part of what is made: were it changed here, keys must change.
        name = MODEL_SETTINGS.get(kind)
        if name is None or name in settings:
            return {}
        return {name: DEFAULT_MODELS[kind]}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check(settings)

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        f = request.fields
        if request.kind == "speech":
            doing = f"speak the line `{request.step}`"
            if not f.text.strip():
                raise ServiceError(FailureKind.INVALID, f"cannot {doing}: the line has no words")
            route = f"v1/text-to-speech/{voice_for(self.settings, f.speaker)}"
            body: dict[str, Any] = {"text": f.text, "model_id": self._model("speech")}
        elif request.kind == "sfx":
            doing = f"make the sound `{request.step}`"
            route = "v1/sound-generation"
            body = {"text": f.prompt, "model_id": self._model("sfx")}
            if request.params.get("bed") and f.duration:
                low, high = SFX_SECONDS
                body["duration_seconds"] = round(min(high, max(low, float(f.duration))), 2)
            if "prompt_influence" in self.settings:
                body["prompt_influence"] = self.settings["prompt_influence"]
        elif request.kind == "music":
            doing = f"make the music `{request.step}`"
            route = "v1/music"
            body = {"prompt": f.prompt, "model_id": self._model("music")}
            if f.duration:
                body["music_length_ms"] = max(MUSIC_MIN_MS, round(float(f.duration) * 1000))
        else:
            return await super().submit(request, handle)
        if request.kind != "speech" and not f.prompt.strip():
            raise ServiceError(FailureKind.INVALID, f"cannot {doing}: it has no description")
        fmt = str(self.settings.get("output_format") or DEFAULT_FORMAT)
        r = await self._post(route, doing, body, fmt)
        path = request.workdir / f"{request.outputs[0].name}.wav"
        await asyncio.to_thread(path.write_bytes, as_wav(r, fmt, doing))
        return Done({request.outputs[0].name: str(path)})

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        return {name: Path(place) for name, place in done.outputs.items()}

    async def close(self) -> None:
        await self.http.close()

    def _model(self, kind: str) -> str:
        return str(self.settings.get(MODEL_SETTINGS[kind]) or DEFAULT_MODELS[kind])

    async def _post(self, route: str, doing: str, body: Mapping[str, Any], fmt: str) -> Response:
        """One POST; a failure is classified and never carries the key."""
        key = self.setup.secret("api_key")
        r = await self.http.send("POST", f"{self.base_url}/{route}", doing, key,
                                 headers={"xi-api-key": key}, json=dict(body),
                                 params={"output_format": fmt})
        if not r.ok:
            raise redact(classify(r, doing), key)
        return r


# -- answers ------------------------------------------------------------------------------


def voice_for(settings: Mapping[str, Any], speaker: str | None) -> str:
    """The ElevenLabs voice id of a character: `voices.CHEN`, else `voice`, else Rachel."""
    voices = settings.get("voices") or {}
    if speaker is not None and isinstance(voices, Mapping) and speaker in voices:
        return str(voices[speaker])
    return str(settings.get("voice") or DEFAULT_VOICE)


def classify(r: Response, doing: str) -> ServiceError:
    """What a failed answer means: 401/403 a refused key (or, `quota_exceeded`, no
    credit), 422 and other 4xx a request ElevenLabs does not take, 429 a rate limit
    (nothing made: sent again), 5xx a server error (nothing made: sent again) but a
    gateway timeout, after which the audio may have been made and billed."""
    detail = _detail(r.body)
    status, message = detail if detail else ("", snippet(r.body))
    said = f"{status}: {message}" if status and message else status or message
    unbilled = False
    hint = ""
    if status in ("quota_exceeded", "insufficient_credits") or r.status == 402:
        kind = FailureKind.CREDIT
        hint = "; the account is out of credit: top it up or use another backend"
    elif r.status in (401, 403):
        kind = FailureKind.AUTH
        hint = "; check the key in the variable that `api_key_env` names"
    elif r.status == 429:
        kind, unbilled = FailureKind.RATE_LIMITED, True
    elif r.status in GATEWAY_TIMEOUTS:
        kind = FailureKind.TRANSIENT
        hint = "; the audio may have been made and billed, so it is not sent again at once"
    elif r.status >= 500:
        kind, unbilled = FailureKind.TRANSIENT, True
    else:
        kind = FailureKind.INVALID
    return r.error(doing, (said or f"status {r.status}") + hint, kind=kind, unbilled=unbilled)


def _detail(body: bytes) -> tuple[str, str] | None:
    import json

    try:
        doc = json.loads(body)
    except ValueError:
        return None
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if isinstance(detail, dict):
        return str(detail.get("status") or ""), str(detail.get("message") or "")
    if isinstance(detail, str):
        return "", detail
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):  # a 422's list
        return "validation_error", str(detail[0].get("msg") or "")
    return None


def as_wav(r: Response, fmt: str, doing: str) -> bytes:
    """The raw PCM ElevenLabs sent (16-bit mono at the format's rate) as a WAV file."""
    body = r.body
    if body[:4] == b"RIFF" or body[:3] == b"ID3" or body[:1] == b"{" or len(body) < 2 \
            or len(body) % 2:
        raise ServiceError(FailureKind.FAILED,
                           f"cannot {doing}: {where(r.url)} sent {len(body)} bytes that are not "
                           f"the raw 16-bit PCM `{fmt}` asks for", status=r.status)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(fmt.removeprefix("pcm_")))
        w.writeframes(body)
    return out.getvalue()


# -- settings -----------------------------------------------------------------------------


def _check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problem = Problems()
    problem.strings(settings, TEXT_SETTINGS)
    problem.http_url(settings, "base_url",
                     f"for ElevenLabs itself leave it out (it is `{DEFAULT_BASE_URL}`)")
    fmt = settings.get("output_format")
    if fmt is not None and fmt not in PCM_FORMATS:
        problem("output_format", f"`output_format` must be one of the raw PCM formats, not "
                f"`{fmt}`", "it is " + ", ".join(f"`{p}`" for p in PCM_FORMATS)
               )
    if "prompt_influence" in settings and not number(settings["prompt_influence"], 0, 1):
        problem("prompt_influence", "`prompt_influence` must be a number from 0 to 1, not "
                f"`{settings['prompt_influence']}`")
    if "timeout_s" in settings and not number(settings["timeout_s"], 1, 86400):
        problem("timeout_s", "`timeout_s` must be a number of seconds from 1 to 86400, not "
                f"`{settings['timeout_s']}`", "how long one request may take; 300 by default")
    voices = settings.get("voices")
    if voices is not None and not (isinstance(voices, Mapping) and all(
            isinstance(v, str) and v for v in voices.values())):
        problem("voices", "`voices` must be a table of character → ElevenLabs voice id",
                'for example `voices = { CHEN = "JBFqnCBsd6RMkjVDRZzb" }`')
    problem.near_misses(settings, KNOWN, "elevenlabs")
    return problem
