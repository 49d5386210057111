"""The `openai` backend: images (sheets, plates, keyframes) and speech from OpenAI's API.

OpenAI answers synchronously, so `submit` makes the request and returns `Done`
with the file already in the step's work folder; `fetch` only downloads when a
server answered with a `url` instead of base64 (dall-e models, some compatible
servers).  The same adapter talks to any OpenAI-compatible server: `base_url`
names where the `/images/...` and `/audio/...` routes live.

    keyframe without references → POST {base_url}/images/generations   (JSON)
    keyframe with references    → POST {base_url}/images/edits          (multipart image[])
    speech                      → POST {base_url}/audio/speech          (→ WAV)

References go characters first, then the location, then the user's own images,
and the prompt opens by saying what each one shows ("Image 1 shows CHEN (winter
outfit)."): the model sees pictures in order, not the names we give them.

There is no seed and no negative prompt, so neither enters the content keys;
with `size` set, the film's frame size does not either.  Failures are sorted by
`openai_errors.classify` (what to retry, what stops the backend).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..lang.steps import Fields
from .http import Http, Response, redact, where
from .inputs import as_sent, describe, references
from .openai_errors import classify
from .protocol import (
    Adapter,
    Capabilities,
    Done,
    FailureKind,
    Handle,
    Input,
    Json,
    Request,
    ServiceError,
    SettingProblem,
    Setup,
)
from .results import downloaded, keep_image
from .settings import Problems, number

if TYPE_CHECKING:
    import aiohttp  # imported where a form is built: `filmc check` does without it

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_IMAGE_MODEL = "gpt-image-1"
DEFAULT_SPEECH_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
IMAGE_KINDS = ("sheet", "plate", "keyframe")
MAX_REFERENCES = 16  # images an edit takes (gpt-image models)

# The sizes gpt-image models make; the default is the one nearest the film's aspect.
LANDSCAPE, PORTRAIT, SQUARE = (1536, 1024), (1024, 1536), (1024, 1024)
SIZES = (SQUARE, LANDSCAPE, PORTRAIT)
SIZE_NAMES = tuple(f"{w}x{h}" for w, h in SIZES)
OTHER_SIZES = ("256x256", "512x512", "1792x1024", "1024x1792")  # dall-e-2 and dall-e-3
VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx",
          "sage", "shimmer", "verse")

# Image settings sent as written, and where the API takes them.
BOTH = ("quality", "background", "output_format", "output_compression", "response_format")
GENERATIONS_ONLY = ("style", "moderation")
EDITS_ONLY = ("input_fidelity",)
# Values OpenAI documents; another value is a warning (a compatible server may take it).
CHOICES = {
    "quality": ("auto", "low", "medium", "high", "standard", "hd"),
    "background": ("auto", "opaque", "transparent"),
    "moderation": ("auto", "low"),
    "input_fidelity": ("low", "high"),
    "style": ("vivid", "natural"),
    "response_format": ("b64_json", "url"),
}
TEXT_SETTINGS = ("base_url", "model", "speech_model", "voice", "organization", "project")
# What each kind of step reads (for content keys; the rest are where and who pays).
IMAGE_SETTINGS = frozenset({"model", "size", *BOTH, *GENERATIONS_ONLY, *EDITS_ONLY})
SPEECH_SETTINGS = frozenset({"speech_model", "speed", "instructions"})
KNOWN = set(BOTH + GENERATIONS_ONLY + EDITS_ONLY + TEXT_SETTINGS) | {
    "size", "voices", "speed", "instructions", "timeout_s"}


class OpenAI(Adapter):
    """OpenAI's image and speech API, or a server that speaks it."""

    type = "openai"
    version = "1"
    runs_here = False
    secrets = ("api_key",)
    kinds = (*IMAGE_KINDS, "speech")

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.base_url = str(self.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self.http = Http(setup.name, timeout=float(self.settings.get("timeout_s") or 300))

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any], root: Path) -> Capabilities | None:
        if kind == "speech":
            return Capabilities(seed=False, negative=False, references=0, first_frame=False)
        if kind not in IMAGE_KINDS:
            return None
        size = _parse_size(settings.get("size"))
        return Capabilities(seed=False, negative=False, references=MAX_REFERENCES,
                            first_frame=False, sizes=(size,) if size else SIZES)

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        if kind == "speech":
            if settings.get("instructions", True) is False:
                return frozenset({"text", "speaker", "take"})
            return frozenset({"text", "voice", "speaker", "language", "take"})
        if _parse_size(settings.get("size")) or settings.get("size") == "auto":
            return frozenset({"prompt", "take"})  # the film's frame size picks nothing
        return frozenset({"prompt", "width", "height", "take"})

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        # An image setting never re-keys the dialogue, nor a voice the pictures.
        mine = SPEECH_SETTINGS if kind == "speech" else IMAGE_SETTINGS
        return {k: v for k, v in settings.items() if k in mine}

    @classmethod
    def key_request(cls, kind: str, settings: Mapping[str, Any],
                    fields: Fields) -> Mapping[str, Json]:
        # The voice this line's speaker gets, not the whole `voices` table.
        return {"voice": voice_for(settings, fields.speaker)} if kind == "speech" else {}

    @classmethod
    def key_extra(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Json]:
        # A default model is part of what is made: were it changed here, keys must change.
        if kind == "speech":
            return {} if "speech_model" in settings else {"speech_model": DEFAULT_SPEECH_MODEL}
        return {} if "model" in settings else {"model": DEFAULT_IMAGE_MODEL}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check(settings)

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        if request.kind == "speech":
            return await self._speech(request)
        if request.kind in IMAGE_KINDS:
            return await self._image(request)
        return await super().submit(request, handle)

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        files: dict[str, Path | Sequence[Path]] = {}
        for name, place in done.outputs.items():
            if isinstance(place, Mapping) and "url" in place:
                files[name] = await self._download(str(place["url"]), request, name)
            else:
                files[name] = Path(place)
        return files

    async def close(self) -> None:
        await self.http.close()

    # -- images ---------------------------------------------------------------------------

    async def _image(self, request: Request) -> Done:
        refs = references(request)
        doing = f"make the image for `{request.step}`"
        if len(refs) > MAX_REFERENCES:
            raise ServiceError(FailureKind.INVALID,
                               f"cannot {doing}: it has {len(refs)} reference images and "
                               f"OpenAI's image edits take at most {MAX_REFERENCES}; cast fewer "
                               f"characters or use another backend for this step")
        fields: dict[str, Any] = {
            "model": str(self.settings.get("model") or DEFAULT_IMAGE_MODEL),
            "prompt": describe(refs) + request.fields.prompt, "n": 1,
            "size": str(self.settings.get("size") or nearest_size(request))}
        for name in BOTH + (EDITS_ONLY if refs else GENERATIONS_ONLY):
            if name in self.settings:
                fields[name] = self.settings[name]
        if refs:
            form = await asyncio.to_thread(_edit_form, fields, refs)
            answer = await self._post("images/edits", doing, data=form)
        else:
            answer = await self._post("images/generations", doing, json=fields)
        entry = _first_image(answer.json(), answer.url, doing)
        note = str(entry.get("revised_prompt") or "")
        output = request.outputs[0].name
        if entry.get("b64_json"):
            try:
                body = base64.b64decode(str(entry["b64_json"]), validate=True)
            except (binascii.Error, ValueError):
                body = b""
            path = await asyncio.to_thread(keep_image, body, request.workdir / output,
                                           where(answer.url), doing)
            return Done({output: str(path)}, note=note)
        return Done({output: {"url": str(entry["url"])}}, note=note)

    async def _download(self, url: str, request: Request, name: str) -> Path:
        doing = f"download the image of `{request.step}`"
        # The bearer key goes to the API's own host only: a storage URL is signed already.
        same_host = urlsplit(url)[:2] == urlsplit(self.base_url)[:2]
        r = await self.http.send("GET", url, doing,
                                 headers=self._headers() if same_host else None)
        key = self.setup.secret("api_key") if same_host else ""
        # Its body may echo what it was sent, the key included.
        downloaded(r, doing, "the image's URL has expired or is gone; the step must be made "
                             "again", refused=lambda r: redact(r.error(doing), key))
        return await asyncio.to_thread(keep_image, r.body, request.workdir / name,
                                       where(url), doing)

    # -- speech ---------------------------------------------------------------------------

    async def _speech(self, request: Request) -> Done:
        f = request.fields
        doing = f"speak the line `{request.step}`"
        if not f.text.strip():
            raise ServiceError(FailureKind.INVALID, f"cannot {doing}: the line has no words")
        body: dict[str, Any] = {
            "model": str(self.settings.get("speech_model") or DEFAULT_SPEECH_MODEL),
            "input": f.text, "voice": self.voice_of(f.speaker), "response_format": "wav"}
        if self.settings.get("instructions", True) is not False:
            said = [f.voice.strip()] + ([f"Language: {f.language}."] if f.language else [])
            if any(said):
                body["instructions"] = "\n".join(s for s in said if s)
        if "speed" in self.settings:
            body["speed"] = self.settings["speed"]
        r = await self._post("audio/speech", doing, json=body)
        if not (r.body[:4] == b"RIFF" and r.body[8:12] == b"WAVE"):
            raise ServiceError(FailureKind.FAILED,
                               f"cannot {doing}: {where(r.url)} sent audio that is not a WAV "
                               f"file ({len(r.body)} bytes)", status=r.status)
        path = request.workdir / f"{request.outputs[0].name}.wav"
        await asyncio.to_thread(path.write_bytes, r.body)
        return Done({request.outputs[0].name: str(path)})

    def voice_of(self, speaker: str | None) -> str:
        return voice_for(self.settings, speaker)

    # -- HTTP -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.setup.secret('api_key')}"}
        if self.settings.get("organization"):
            headers["OpenAI-Organization"] = str(self.settings["organization"])
        if self.settings.get("project"):
            headers["OpenAI-Project"] = str(self.settings["project"])
        return headers

    async def _post(self, route: str, doing: str, **body: Any) -> Response:
        """One POST; a failure is classified and never carries the key."""
        headers = self._headers()
        key = headers["Authorization"].removeprefix("Bearer ")
        r = await self.http.send("POST", f"{self.base_url}/{route}", doing, key, headers=headers,
                                 **body)
        if not r.ok:
            raise redact(classify(r, doing), key)
        return r


# -- requests, as data --------------------------------------------------------------------


def nearest_size(request: Request) -> str:
    """The supported size nearest the film's aspect; the shot step conforms it later."""
    w, h = request.fields.width, request.fields.height
    size = SQUARE if not w or not h or w == h else LANDSCAPE if w > h else PORTRAIT
    return "{}x{}".format(*size)


def voice_for(settings: Mapping[str, Any], speaker: str | None) -> str:
    """The service's voice for a character: `voices.CHEN`, else `voice`, else alloy."""
    voices = settings.get("voices") or {}
    if speaker is not None and isinstance(voices, Mapping) and speaker in voices:
        return str(voices[speaker])
    return str(settings.get("voice") or DEFAULT_VOICE)


def _edit_form(fields: Mapping[str, Any], refs: Sequence[Input]) -> aiohttp.FormData:
    import aiohttp

    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, str(value))
    part = "image" if len(refs) == 1 else "image[]"
    for i, ref in enumerate(refs, 1):
        body, media = as_sent(ref.path.read_bytes())
        ext = media.mime.removeprefix("image/")
        form.add_field(part, body, filename=f"ref{i}.{ext}", content_type=media.mime)
    return form


def _first_image(answer: Any, url: str, doing: str) -> Mapping[str, Any]:
    data = answer.get("data") if isinstance(answer, dict) else None
    entry = data[0] if isinstance(data, list) and data else None
    if not isinstance(entry, dict) or not (entry.get("b64_json") or entry.get("url")):
        raise ServiceError(FailureKind.FAILED, f"cannot {doing}: {where(url)} answered without "
                           f"an image (no `data[0].b64_json` or `url`)")
    return entry


# -- settings -----------------------------------------------------------------------------


def _parse_size(value: Any) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)x(\d+)", value) if isinstance(value, str) else None
    return (int(m[1]), int(m[2])) if m else None


def _check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problem = Problems()
    problem.strings(settings, TEXT_SETTINGS)
    problem.http_url(settings, "base_url",
                     f"for OpenAI itself leave it out (it is `{DEFAULT_BASE_URL}`)")
    size = settings.get("size")
    listed = ", ".join(f"`{s}`" for s in (*SIZE_NAMES, "auto"))
    if size is not None and size != "auto" and _parse_size(size) is None:
        problem("size", f"`size` must be `WIDTHxHEIGHT` or `auto`, not `{size}`",
                f"OpenAI's image models make {listed}; leave `size` out to take the one "
                f"nearest the film's aspect")
    elif isinstance(size, str) and size not in (*SIZE_NAMES, *OTHER_SIZES, "auto"):
        problem("size", f"OpenAI's image models do not make `{size}`",
                f"use one of {listed}; an OpenAI-compatible server may take other sizes",
                warning=True)
    fmt = settings.get("output_format")
    if fmt is not None and fmt not in ("png", "jpeg", "webp"):
        problem("output_format", f"`output_format` must be `png`, `jpeg` or `webp`, not `{fmt}`")
    for name, allowed in CHOICES.items():
        if name in settings and settings[name] not in allowed:
            problem(name, f"`{name}` = `{settings[name]}` is not a value OpenAI documents",
                    "it takes " + ", ".join(f"`{a}`" for a in allowed), warning=True)
    if "speed" in settings and not number(settings["speed"], 0.25, 4.0):
        problem("speed", f"`speed` must be a number from 0.25 to 4.0, not `{settings['speed']}`")
    if "timeout_s" in settings and not number(settings["timeout_s"], 1, 86400):
        problem("timeout_s", "`timeout_s` must be a number of seconds from 1 to 86400, not "
                f"`{settings['timeout_s']}`", "how long one request may take; 300 by default")
    if "instructions" in settings and not isinstance(settings["instructions"], bool):
        problem("instructions", "`instructions` must be `true` or `false`",
                "`false` for speech models that take no instructions, such as `tts-1`")
    voices = settings.get("voices")
    if voices is not None and not (isinstance(voices, Mapping) and all(
            isinstance(v, str) and v for v in voices.values())):
        problem("voices", "`voices` must be a table of character → voice name",
                'for example `voices = { CHEN = "onyx", MEI = "coral" }`')
    named = [("voice", settings.get("voice"))] + [
        ("voices", v) for v in (voices.values() if isinstance(voices, Mapping) else ())]
    for setting, voice in named:
        if isinstance(voice, str) and voice and voice not in VOICES:
            problem(setting, f"`{voice}` is not one of OpenAI's voices",
                    "they are " + ", ".join(f"`{v}`" for v in VOICES)
                    + "; an OpenAI-compatible server may have others", warning=True)
    problem.near_misses(settings, KNOWN, "openai")
    return problem
