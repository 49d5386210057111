"""The `gemini_image` backend: sheets, plates and keyframes from Gemini's image models
("Nano Banana") on the Gemini API.

    [backends.gemini_image]
    type = "gemini_image"
    api_key_env = "GEMINI_API_KEY"
    model = "gemini-2.5-flash-image"

A step is one request, answered at once:
`POST {base_url}/models/{model}:generateContent` with the key in `x-goog-api-key`.
The prompt and the step's reference images are the parts of one user turn: the
text first, saying what each image shows ("Image 1 shows CHEN (winter outfit)."),
then the images, inline and base64 (`inlineData`), characters first, then the
location, then the user's own.  `generationConfig` asks for an image only
(`responseModalities: ["IMAGE"]`) in the aspect ratio nearest the film's
(`imageConfig.aspectRatio`); the image comes back inline, base64, in
`candidates[0].content.parts[].inlineData`, and is written to the step's folder
once it decodes.

A refusal is an answer, not an HTTP error: `promptFeedback.blockReason` (the
prompt was blocked), or a candidate whose `finishReason` is `SAFETY`,
`IMAGE_SAFETY`, `PROHIBITED_CONTENT`... with no image.  Both fail the shot as a
policy refusal; an answer with text and no image fails it too, quoting the text.

There is no seed and no negative prompt: neither enters the content keys, and
`plan` warns when a shot asks for either.  How many reference images a step may
carry depends on the model (3 for gemini-2.5-flash-image, 14 for the Gemini 3
image models): `max_references` says, defaulting by the model's name.

The end of the module speaks the Gemini API for both Google adapters (veo.py
uses it too): the key header, the key sent to the API's own host only, and what
an error answer (a google.rpc.Status) means for the build.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..lang.steps import Fields
from .fit import aspect_ratio
from .http import Http, Response, kind_of_status, retry_after, where
from .openai import describe, references
from .protocol import (
    Adapter,
    Capabilities,
    Done,
    FailureKind,
    Handle,
    Input,
    Request,
    ServiceError,
    SettingProblem,
    Setup,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
IMAGE_KINDS = ("sheet", "plate", "keyframe")
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_SIZES = ("1K", "2K", "4K")
MOST_REFERENCES = 14  # the Gemini 3 image models
FLASH_REFERENCES = 3  # gemini-2.5-flash-image
# Why a prompt or a candidate was refused (BlockedReason, FinishReason): a policy refusal.
REFUSALS = frozenset({"SAFETY", "PROHIBITED_CONTENT", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
                      "BLOCKLIST", "SPII", "RECITATION", "IMAGE_RECITATION", "JAILBREAK",
                      "MODEL_ARMOR"})
# Settings every backend has, read by the engine (engine/retry.py): known, for near misses.
ENGINE_SETTINGS = ("retries", "backoff_s", "backoff_cap_s", "poll_interval_s", "timeout_s")
SETTINGS = ("model", "base_url", "aspect_ratio", "image_size", "max_references",
            *ENGINE_SETTINGS)
KEYED = frozenset({"model", "aspect_ratio", "image_size"})  # what changes the picture
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))


class GeminiImage(Adapter):
    """Gemini's image models on the Gemini API (generativelanguage.googleapis.com)."""

    type = "gemini_image"
    version = "1"
    runs_here = False
    secrets = ("api_key",)
    kinds = IMAGE_KINDS

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.http = Http(setup.name, timeout=float(self.settings.get("timeout_s") or 300))
        self.api = GeminiAPI(setup, self.http)

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any], root: Path) -> Capabilities | None:
        if kind not in IMAGE_KINDS:
            return None
        ratio = settings.get("aspect_ratio")
        return Capabilities(seed=False, negative=False, references=max_references(settings),
                            first_frame=False,
                            aspect_ratios=(ratio,) if isinstance(ratio, str) else ASPECT_RATIOS)

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        if settings.get("aspect_ratio"):
            return frozenset({"prompt", "take"})  # the film's frame size picks nothing
        return frozenset({"prompt", "width", "height", "take"})

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        return {k: v for k, v in settings.items() if k in KEYED}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check(settings)

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Done:
        if request.kind not in IMAGE_KINDS:
            raise ServiceError(FailureKind.INVALID, f"the `{self.type}` adapter cannot make "
                                                    f"`{request.kind}` steps")
        refs = references(request)
        doing = f"make the image for `{request.step}`"
        model = str(self.settings.get("model") or "")
        most = max_references(self.settings)
        if len(refs) > most:
            raise ServiceError(FailureKind.INVALID,
                               f"cannot {doing}: it has {len(refs)} reference images and "
                               f"`{model}` takes {most} here; cast fewer characters, raise "
                               f"`max_references` if the model takes more, or make this step "
                               f"with another backend")
        parts: list[dict[str, Any]] = [{"text": describe(refs) + request.fields.prompt}]
        for ref in refs:
            body, mime = await asyncio.to_thread(sendable, ref)
            parts.append({"inlineData": {"mimeType": mime,
                                         "data": base64.b64encode(body).decode()}})
        image_config = {"aspectRatio": ratio_for(self.settings, request.fields)}
        if self.settings.get("image_size"):
            image_config["imageSize"] = str(self.settings["image_size"])
        r = await self.api.call("POST", f"models/{model}:generateContent", doing, json={
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": image_config}})
        data, note = read_image(r.json(), where(r.url), doing)
        output = request.outputs[0].name
        path = await asyncio.to_thread(keep_image, data, request.workdir / output,
                                       where(r.url), doing)
        return Done({output: str(path)}, note=note)

    async def close(self) -> None:
        await self.http.close()


# -- requests and answers, as data --------------------------------------------------------


def max_references(settings: Mapping[str, Any]) -> int:
    """How many reference images one request may carry: `max_references`, else 3 for the
    Gemini 2.x image models and 14 for later ones."""
    given = settings.get("max_references")
    if isinstance(given, int) and not isinstance(given, bool) and given > 0:
        return given
    model = str(settings.get("model") or "")
    return FLASH_REFERENCES if model.startswith("gemini-2") else MOST_REFERENCES


def ratio_for(settings: Mapping[str, Any], fields: Fields) -> str:
    """`aspect_ratio`, else the ratio the model makes nearest the film's frame."""
    if settings.get("aspect_ratio"):
        return str(settings["aspect_ratio"])
    if not fields.width or not fields.height:
        return "1:1"
    return aspect_ratio(fields.width, fields.height, ASPECT_RATIOS)


def sendable(ref: Input) -> tuple[bytes, str]:
    """A reference image as the API takes it inline: PNG, JPEG or WebP as it is, anything
    else converted to PNG."""
    try:
        body = ref.path.read_bytes()
    except OSError as e:
        raise ServiceError(FailureKind.INVALID, f"cannot read the input `{ref.path}` (from "
                                                f"`{ref.step}`): {e.strerror}") from None
    kind = image_type(body)
    if kind is not None:
        return body, f"image/{kind}"
    from PIL import Image

    out = io.BytesIO()
    try:
        with Image.open(io.BytesIO(body)) as img:
            img.convert("RGB").save(out, "PNG")
    except Exception:
        raise ServiceError(FailureKind.INVALID, f"the input `{ref.path}` (from `{ref.step}`) "
                                                f"is not an image") from None
    return out.getvalue(), "image/png"


def read_image(answer: Any, source: str, doing: str) -> tuple[bytes, str]:
    """The image of a generateContent answer and the model's words beside it; a refusal
    or an answer without an image is a ServiceError that says what the model said."""
    answer = answer if isinstance(answer, dict) else {}
    feedback = answer.get("promptFeedback") or {}
    blocked = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if blocked:
        said = str(feedback.get("blockReasonMessage") or "").strip()
        raise ServiceError(FailureKind.POLICY,
                           f"cannot {doing}: Gemini blocked the prompt ({blocked})"
                           + (f": {said}" if said else "")
                           + "; reword the shot's prompt, or make this step with another backend")
    candidates = answer.get("candidates") or []
    first = candidates[0] if isinstance(candidates, list) and candidates else {}
    first = first if isinstance(first, dict) else {}
    content = first.get("content") or {}
    parts = content.get("parts") if isinstance(content, dict) else None
    words, image = [], None
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict) or part.get("thought"):
            continue  # a Gemini 3 model's interim "thought" images are not the answer
        inline = part.get("inlineData") or part.get("inline_data")
        if isinstance(inline, dict) and str(inline.get("mimeType") or inline.get("mime_type")
                                            or "").startswith("image/") and image is None:
            image = inline
        elif isinstance(part.get("text"), str):
            words.append(part["text"].strip())
    said = " ".join(w for w in words if w)
    reason = str(first.get("finishReason") or "")
    if image is None:
        detail = str(first.get("finishMessage") or "").strip() or said
        if reason in REFUSALS:
            raise ServiceError(FailureKind.POLICY,
                               f"cannot {doing}: Gemini refused to make the image ({reason})"
                               + (f": {_short(detail)}" if detail else "")
                               + "; reword the shot's prompt or change its references, or "
                                 "make this step with another backend")
        raise ServiceError(FailureKind.FAILED,
                           f"cannot {doing}: {source} answered without an image"
                           + (f" (finishReason {reason})" if reason else "")
                           + (f": the model said “{_short(detail)}”" if detail else "")
                           + "; `filmc build` asks again when you choose to")
    try:
        data = base64.b64decode(str(image.get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    return data, _short(said)


def image_type(body: bytes) -> str | None:
    for signature, ext in _SIGNATURES:
        if body.startswith(signature):
            return ext
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "webp"
    return None


def keep_image(body: bytes, stem: Path, source: str, doing: str) -> Path:
    """Write an image the service sent under its real extension, once it decodes."""
    from PIL import Image

    ext = image_type(body)
    try:
        if ext is None:
            raise ValueError("not PNG, JPEG or WebP")
        with Image.open(io.BytesIO(body)) as img:
            img.verify()
    except Exception:
        raise ServiceError(FailureKind.FAILED, f"cannot {doing}: {source} sent an image that "
                           f"does not decode ({len(body)} bytes)") from None
    path = stem.with_name(f"{stem.name}.{'jpg' if ext == 'jpeg' else ext}")
    path.write_bytes(body)
    return path


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# -- settings -----------------------------------------------------------------------------


def check_common(settings: Mapping[str, Any], type_name: str, example: str) -> list[SettingProblem]:
    """The settings every Gemini API backend has: `model` (required) and `base_url`."""
    problems = []
    model = settings.get("model")
    if model is None:
        problems.append(SettingProblem(
            "model", f"the `{type_name}` backend needs `model`: the model to ask",
            f"for example `model = \"{example}\"`; Google renames its models every few "
            f"months, so filmc has no default"))
    elif not isinstance(model, str) or not model.strip() or "/" in model or ":" in model:
        problems.append(SettingProblem("model", f"`model` must be a model id such as "
                                                f"`{example}`, not `{model}`"))
    base = settings.get("base_url")
    if base is not None and not (isinstance(base, str) and re.match(r"https?://[^/]", base)):
        problems.append(SettingProblem("base_url", f"`base_url` must be an http(s) URL, not "
                                                   f"`{base}`",
                                       f"for the Gemini API leave it out (it is "
                                       f"`{DEFAULT_BASE_URL}`)"))
    return problems


def near_miss(settings: Mapping[str, Any], known: Sequence[str],
              type_name: str) -> list[SettingProblem]:
    """A warning for each setting that looks like a misspelt known one."""
    out = []
    for name in settings:
        near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        if name not in known and near:
            out.append(SettingProblem(name, f"the `{type_name}` adapter has no setting `{name}`",
                                      f"did you mean `{near[0]}`?", warning=True))
    return out


def _check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problems = check_common(settings, "gemini_image", "gemini-2.5-flash-image")
    listed = ", ".join(f"`{r}`" for r in ASPECT_RATIOS)
    ratio = settings.get("aspect_ratio")
    if ratio is not None and ratio not in ASPECT_RATIOS:
        problems.append(SettingProblem("aspect_ratio", f"Gemini's image models do not make "
                                                       f"`{ratio}`",
                                       f"they make {listed}; leave `aspect_ratio` out to take "
                                       f"the one nearest the film's"))
    size = settings.get("image_size")
    if size is not None and size not in IMAGE_SIZES:
        problems.append(SettingProblem("image_size", f"`image_size` must be `1K`, `2K` or `4K`, "
                                                     f"not `{size}`",
                                       "2K and 4K are for the Gemini 3 image models"))
    most = settings.get("max_references")
    if most is not None and not (isinstance(most, int) and not isinstance(most, bool)
                                 and most > 0):
        problems.append(SettingProblem("max_references", "`max_references` must be a whole "
                                                         f"number, 1 or more, not `{most}`",
                                       "3 for gemini-2.5-flash-image, 14 for the Gemini 3 "
                                       "image models"))
    elif isinstance(most, int) and most > MOST_REFERENCES:
        problems.append(SettingProblem("max_references", f"no Gemini image model takes more than "
                                                         f"{MOST_REFERENCES} reference images",
                                       "the service refuses a request with more", warning=True))
    return problems + near_miss(settings, SETTINGS, "gemini_image")


# -- the Gemini API, for both Google adapters ---------------------------------------------

_KEY_SHAPED = re.compile(r"AIza[0-9A-Za-z_\-]{8,}")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# What a Gemini API error message says when the content was refused ("Support codes: …").
POLICY_WORDS = re.compile(r"support codes?:|usage guidelines|prohibited use|responsible ai|"
                           r"safety (filter|polic)|violat\w* (our|the|google)", re.IGNORECASE)
_OUT_OF_CREDIT = re.compile(r"credits? (are|is) depleted|spending cap|prepay|billing (is )?not "
                            r"(enabled|active)|enable billing", re.IGNORECASE)


class GeminiAPI:
    """Requests to the Gemini API for one backend: the key goes in `x-goog-api-key`, to
    `base_url`'s host only, and no failure's message carries it."""

    def __init__(self, setup: Setup, http: Http) -> None:
        self.setup = setup
        self.http = http
        self.base_url = str(setup.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")

    def key(self) -> str:
        return self.setup.secret("api_key")

    def url(self, route: str, base: str | None = None) -> str:
        return route if "://" in route else f"{(base or self.base_url).rstrip('/')}/{route}"

    def own(self, url: str, base: str | None = None) -> bool:
        """Whether `url` is on the API's own host (the only one the key goes to): `base_url`'s,
        or `base`, where an earlier build's job was (and still is) followed."""
        return urlsplit(url)[:2] in {urlsplit(b)[:2] for b in (self.base_url, base) if b}

    async def call(self, method: str, route: str, doing: str, *, json: Any = None,
                   base: str | None = None) -> Response:
        """One request; a failure is classified, and never carries the key."""
        key = self.key()
        try:
            r = await self.http.request(method, self.url(route, base), json=json,
                                        headers={"x-goog-api-key": key})
        except ServiceError as e:
            raise redact(e, key, doing) from None
        if not r.ok:
            raise redact(classify(r, doing), key)
        return r

    async def download(self, url: str, doing: str, base: str | None = None) -> Response:
        """GET a file the API made.  The key goes along only to the API's own host (see
        `own`), and a redirect elsewhere (a storage host) is followed without it."""
        key = self.key()
        try:
            if not self.own(url, base):
                return await self.http.request("GET", url)
            r = await self._first_hop(url, {"x-goog-api-key": key})
            location = r.headers.get("Location") or r.headers.get("location")
            if r.status in _REDIRECTS and location:
                there = urljoin(url, location)
                mine = self.own(there, base)
                r = await self.http.request(
                    "GET", there, headers={"x-goog-api-key": key} if mine else None)
            return r
        except ServiceError as e:
            raise redact(e, key, doing) from None

    async def _first_hop(self, url: str, headers: Mapping[str, str]) -> Response:
        """GET without following a redirect (aiohttp would carry every header but
        `Authorization` to another host), failures said as backends/http.py says them."""
        import aiohttp

        try:
            async with self.http.session().get(url, headers=headers,
                                               allow_redirects=False) as r:
                return Response(r.status, dict(r.headers), await r.read(), str(r.url))
        except aiohttp.ClientConnectorError:
            raise ServiceError(FailureKind.TRANSIENT, f"cannot reach {self.http.backend} at "
                                                      f"{where(url)}", unbilled=True) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise ServiceError(FailureKind.TRANSIENT, f"the connection to {where(url)} broke "
                                                      f"({type(e).__name__})") from None


def error_body(body: bytes) -> Mapping[str, Any]:
    """The `error` object (a google.rpc.Status) of a Gemini API answer; empty when the body
    is something else."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # some Google front ends wrap the answer in a list
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def details(err: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    """The details of one `@type` (`ErrorInfo`, `QuotaFailure`, `RetryInfo`…) in an error."""
    found = err.get("details")
    return [d for d in (found if isinstance(found, list) else [])
            if isinstance(d, dict) and str(d.get("@type", "")).endswith(f".{kind}")]


def retry_delay(err: Mapping[str, Any]) -> float | None:
    """`RetryInfo.retryDelay` ("26s", "1.5s") in seconds."""
    for info in details(err, "RetryInfo"):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(info.get("retryDelay", "")).strip())
        if m:
            return float(m[1])
    return None


def out_of_quota(err: Mapping[str, Any]) -> str | None:
    """What to do when a RESOURCE_EXHAUSTED answer means waiting will not help this build:
    a per-day quota is used up, or the project's prepaid credit or spending cap is; None
    for a per-minute limit (wait, send again)."""
    quotas = [str(v.get("quotaId", "")) for q in details(err, "QuotaFailure")
              for v in (q.get("violations") or []) if isinstance(v, dict)]
    daily = [q for q in quotas if "PerDay" in q]
    if daily:
        return (f"the daily quota `{daily[0]}` is used up: it resets at midnight Pacific time, "
                f"or raise it in Google AI Studio, then build again")
    if not quotas and _OUT_OF_CREDIT.search(str(err.get("message") or "")):
        return ("the project's credit or spending cap is used up: add credit or raise the cap "
                "in Google AI Studio, then build again")
    return None


def classify(r: Response, doing: str) -> ServiceError:
    """The ServiceError a Gemini API error answer means, for a message `cannot {doing}: …`."""
    err = error_body(r.body)
    message = _short(str(err.get("message") or "")) or _short(
        r.body.decode("utf-8", errors="replace")) or "no reason given"
    status, word = r.status, str(err.get("status") or "")
    reason = message + (f" ({word})" if word else "")
    reasons = {str(d.get("reason")) for d in details(err, "ErrorInfo")}
    unbilled, wait = False, None
    if status == 429 or word == "RESOURCE_EXHAUSTED":
        todo = out_of_quota(err)
        if todo is not None:
            kind = FailureKind.CREDIT
            reason += f"; {todo}"
        else:
            kind, unbilled = FailureKind.RATE_LIMITED, True
            wait = retry_delay(err)
    elif "API_KEY_INVALID" in reasons or status == 401 or word == "UNAUTHENTICATED":
        kind = FailureKind.AUTH
        reason = ("the API key was refused: check that the environment variable named by "
                  f"`api_key_env` holds a current Gemini API key ({reason})")
    elif status == 403 or word == "PERMISSION_DENIED":
        kind = FailureKind.AUTH
        reason += ("; the key's project may not have the Gemini API enabled, or may not be "
                   "allowed this model")
    elif POLICY_WORDS.search(message):
        kind = FailureKind.POLICY
        reason += "; reword the shot's prompt, or make this step with another backend"
    elif status == 404:
        kind = FailureKind.INVALID
        reason += "; check `model`" if err else "; no Gemini API answers there: check `base_url`"
    elif word == "FAILED_PRECONDITION" and _OUT_OF_CREDIT.search(message):
        kind = FailureKind.CREDIT
    elif status == 504 or word == "DEADLINE_EXCEEDED":
        kind = FailureKind.TRANSIENT  # it may have been made, and billed, behind the deadline
    elif status >= 500:
        kind, unbilled = FailureKind.TRANSIENT, True  # an error answer: nothing was made
    else:
        kind = kind_of_status(status)
    return ServiceError(kind, f"cannot {doing}: {where(r.url)} answered {status}: {reason}",
                        retry_after=wait if wait is not None else retry_after(r.headers),
                        unbilled=unbilled, status=status)


def redact(e: ServiceError, key: str, doing: str | None = None) -> ServiceError:
    """`e` with the key, and anything shaped like a Google API key, masked out of its message;
    and, given `doing`, said as `cannot {doing}: …` when it does not say so yet."""
    message = e.message.replace(key, "***") if len(key) >= 4 else e.message
    message = _KEY_SHAPED.sub("AIza***", message)
    if doing and not message.startswith("cannot "):
        message = f"cannot {doing}: {message}"
    if message == e.message:
        return e
    return ServiceError(e.kind, message, retry_after=e.retry_after, unbilled=e.unbilled,
                        status=e.status)
