"""The `seedance` backend: ByteDance's Seedance clips and Seedream images, from BytePlus
ModelArk (international) or Volcengine Ark (China): one protocol, two regions.

    [backends.seedance]
    type = "seedance"
    api_key_env = "ARK_API_KEY"
    region = "ap-southeast"                # BytePlus ModelArk; "cn-beijing": Volcengine Ark
    model = "seedance-1-0-pro-250528"      # clips: a model id of that region
    image_model = "seedream-4-0-250828"    # sheets, plates, keyframes (Seedream)

A clip is a task.  `submit` posts it to `/contents/generations/tasks`: the prompt,
then the keyframe as `first_frame` and, when the shot ends on the next one, that
shot's keyframe as `last_frame`, both as base64 data URLs; the task's id (`cgt-…`)
is the handle the engine journals.  `poll` reads the task until it is `succeeded`,
and `fetch` downloads `content.video_url` at once (it lives 24 hours).  Ark takes
first/last frames or reference images, never both in one task (400): a clip here
always has its keyframe, so it is made from frames, and the clip kind declares no
references (`plan` warns when a clip has some).  Images are one synchronous call to
`/images/generations` with the step's references (up to 14), answered in base64.

Seedance takes a seed and no negative prompt; Seedream 4 images take neither.  An
image sent as a frame must be 300 px or more on each side and between 2:5 and 5:2:
a smaller one is scaled up first, one of another shape is refused before sending.

Failures (`classify`): a content-safety refusal (`…SensitiveContentDetected…`, 422)
fails the step and is never retried — a recognisable face in a keyframe is refused
every time, so the message sends the user to another backend; an overdue account
or an exhausted quota stops the backend; a throttle (429) waits; 5xx are sent again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..lang.steps import FIRST_FRAME, LAST_FRAME, Fields
from .fit import aspect_ratio, clip_length
from .http import Http, Response, kind_of_status, redact, retry_after, where
from .inputs import describe, image_url, references
from .protocol import (
    Adapter,
    Capabilities,
    Done,
    FailureKind,
    Handle,
    Input,
    Json,
    Pending,
    Request,
    ServiceError,
    SettingProblem,
    Setup,
)
from .results import downloaded, keep_image, keep_mp4
from .settings import ENGINE, Problems, seconds, service_url

REGIONS = {"ap-southeast": "https://ark.ap-southeast.bytepluses.com/api/v3",  # BytePlus
           "cn-beijing": "https://ark.cn-beijing.volces.com/api/v3"}  # Volcengine
DEFAULT_REGION = "ap-southeast"
IMAGE_KINDS = ("sheet", "plate", "keyframe")
RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
RESOLUTIONS = ("480p", "720p", "1080p")
DURATIONS = tuple(range(4, 13))  # seconds every Seedance model makes (1.0: 2–12, 2.0: 4–15)
MAX_IMAGE_REFERENCES = 14  # Seedream 4
MAX_SEED = 2**32 - 1
FRAME_MIN_SIDE = 300  # px, each side of an image sent as a frame
FRAME_RATIOS = (0.4, 2.5)  # width / height of an image sent as a frame
IMAGE_AREA = 2048 * 2048  # pixels of a Seedream image made at the film's aspect ("2K")
PENDING = ("queued", "running")

VIDEO_SETTINGS = frozenset({"model", "resolution", "ratio", "durations", "camera_fixed",
                            "watermark", "generate_audio", "last_frame"})
IMAGE_SETTINGS = frozenset({"image_model", "image_size", "watermark"})
KNOWN = VIDEO_SETTINGS | IMAGE_SETTINGS | {*ENGINE, "region", "base_url"}
REQUEST_TIMEOUT = 300.0  # seconds one request may take (a Seedream image is made within it)

# Error codes (prefixes) that say what the account cannot do: retrying does not help.
CREDIT_CODES = ("AccountOverdueError", "OperationDenied.ServiceOverdue", "ModelQuotaExhausted",
                "SetLimitExceeded", "QuotaExceeded")


class Seedance(Adapter):
    """Seedance (clips) and Seedream (images) on BytePlus ModelArk or Volcengine Ark."""

    type = "seedance"
    version = "1"
    runs_here = False
    secrets = ("api_key",)
    kinds = (*IMAGE_KINDS, "clip")

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.base_url = base_url(self.settings)
        self.http = Http(setup.name, timeout=REQUEST_TIMEOUT)

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any],
                     root: Path) -> Capabilities | None:
        if kind == "clip":
            if not settings.get("model"):
                return None  # check_settings says what to set
            ratio = settings.get("ratio")
            return Capabilities(
                seed=True, negative=False, references=0, first_frame=True,
                last_frame=settings.get("last_frame", True) is not False,
                durations=tuple(Fraction(d) for d in durations(settings)),
                aspect_ratios=(ratio,) if isinstance(ratio, str) and ratio != "adaptive"
                else RATIOS)
        if kind in IMAGE_KINDS and settings.get("image_model"):
            return Capabilities(seed=False, negative=False, references=MAX_IMAGE_REFERENCES,
                                first_frame=False)
        return None

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        if kind == "clip":  # the film's shape picks a ratio only when `ratio` does not
            fields = {"prompt", "seed", "duration", "take"}
            return frozenset(fields if settings.get("ratio") else fields | {"width", "height"})
        if settings.get("image_size"):
            return frozenset({"prompt", "take"})  # the film's frame size picks nothing
        return frozenset({"prompt", "width", "height", "take"})

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        mine = VIDEO_SETTINGS if kind == "clip" else IMAGE_SETTINGS
        return {k: v for k, v in settings.items() if k in mine}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check(settings)

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        if request.kind == "clip":
            return await self._clip(request)
        if request.kind in IMAGE_KINDS:
            return await self._image(request)
        return await super().submit(request, handle)

    async def poll(self, handle: Handle) -> Pending | Done:
        base = str(handle.data.get("base") or self.base_url)
        doing = f"follow Seedance task `{handle.id}`"
        r = await self._send("GET", f"{base}/contents/generations/tasks/{handle.id}", doing)
        if r.status == 404:
            raise ServiceError(FailureKind.NOT_FOUND,
                               f"cannot {doing}: {where(r.url)} does not know it (Ark keeps "
                               f"tasks for 7 days)", status=404)
        if not r.ok:
            raise self._refused(r, doing)
        task = r.json()
        status = str(task.get("status") or "") if isinstance(task, dict) else ""
        if status in PENDING:
            return Pending(status)
        if status == "succeeded":
            content = task.get("content") or {}
            url = content.get("video_url") if isinstance(content, dict) else None
            if not isinstance(url, str) or not url:
                raise ServiceError(FailureKind.FAILED, f"cannot {doing}: it succeeded without a "
                                                       f"`content.video_url`")
            usage = task.get("usage") or {}
            tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
            note = f"Seedance task {handle.id}" + (f", {tokens} tokens" if tokens else "")
            if handle.data.get("dropped"):
                note += f"; made without its {handle.data['dropped']}"
            return Done({"video": {"url": url}}, note=note)
        if status == "failed":
            raise task_failure(task.get("error"), handle.id)
        if status == "cancelled":
            raise ServiceError(FailureKind.FAILED, f"Seedance task `{handle.id}` was cancelled "
                                                   f"at the service; build again to make it anew")
        if status == "expired":
            raise ServiceError(FailureKind.FAILED, f"Seedance gave up on task `{handle.id}` "
                                                   f"(expired: it waited too long to run); build "
                                                   f"again to submit it anew")
        return Pending(status or "unknown")

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        files: dict[str, Path | Sequence[Path]] = {}
        for name, place in done.outputs.items():
            if isinstance(place, Mapping) and "url" in place:
                files[name] = await self._download(str(place["url"]), request, name)
            else:
                files[name] = Path(place)
        return files

    async def cancel(self, handle: Handle) -> None:
        """Take a queued task off Ark's queue (a running one cannot be: best effort)."""
        base = str(handle.data.get("base") or self.base_url)
        with contextlib.suppress(ServiceError):
            await self._send("DELETE", f"{base}/contents/generations/tasks/{handle.id}",
                             f"cancel Seedance task `{handle.id}`", timeout=30)

    async def close(self) -> None:
        await self.http.close()

    # -- clips ----------------------------------------------------------------------------

    async def _clip(self, request: Request) -> Handle:
        f = request.fields
        doing = f"make the clip `{request.step}`"
        model = self._model("model", "Seedance", doing)
        first, last = request.of(FIRST_FRAME), request.of(LAST_FRAME)
        content: list[dict[str, Any]] = [{"type": "text", "text": f.prompt}] if f.prompt else []
        dropped = ""
        if first:
            # Frames, never reference images: Ark refuses the two together.
            content.append(await _image_part(first[0], "first_frame", doing))
            if last and self.settings.get("last_frame", True) is not False:
                content.append(await _image_part(last[0], "last_frame", doing))
            elif last:
                dropped = "last frame (`last_frame = false`)"
        body: dict[str, Any] = {"model": model, "content": content,
                                "ratio": self._ratio(f, bool(first)),
                                "watermark": bool(self.settings.get("watermark", False))}
        if f.duration is not None:
            body["duration"] = int(clip_length(f.duration, durations(self.settings)))
        if f.seed is not None:
            body["seed"] = f.seed % (MAX_SEED + 1)
        for name in ("resolution", "camera_fixed", "generate_audio"):
            if name in self.settings:
                body[name] = self.settings[name]
        r = await self._send("POST", f"{self.base_url}/contents/generations/tasks", doing,
                             json=body)
        if not r.ok:
            raise self._refused(r, doing)
        answer = r.json()
        task = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(task, str) or not task:
            raise ServiceError(FailureKind.FAILED, f"cannot {doing}: {where(r.url)} accepted "
                                                   f"the task without naming it (no `id`)")
        data: dict[str, Json] = {"base": self.base_url}
        if dropped:
            data["dropped"] = dropped
        return Handle(task, data)

    def _ratio(self, f: Fields, has_first: bool) -> str:
        """The setting; else `adaptive` (the first frame's shape) or the nearest ratio."""
        ratio = self.settings.get("ratio")
        if isinstance(ratio, str):
            return ratio
        if has_first:
            return "adaptive"
        return aspect_ratio(f.width, f.height, RATIOS) if f.width and f.height else "16:9"

    async def _download(self, url: str, request: Request, name: str) -> Path:
        doing = f"download the clip of `{request.step}`"
        same_host = urlsplit(url)[:2] == urlsplit(self.base_url)[:2]  # the key goes home only
        r = await self._send("GET", url, doing, auth=same_host)
        downloaded(r, doing, "the video's URL has expired or is gone (Ark keeps results for "
                             "24 hours)", refused=lambda r: self._refused(r, doing))
        return await asyncio.to_thread(keep_mp4, r.body, request.workdir / name, where(url),
                                       doing, r.status)

    # -- images ---------------------------------------------------------------------------

    async def _image(self, request: Request) -> Done:
        doing = f"make the image for `{request.step}`"
        model = self._model("image_model", "Seedream", doing)
        refs = references(request)
        if len(refs) > MAX_IMAGE_REFERENCES:
            raise ServiceError(FailureKind.INVALID,
                               f"cannot {doing}: it has {len(refs)} reference images and "
                               f"Seedream takes at most {MAX_IMAGE_REFERENCES}; cast fewer "
                               f"characters or use another backend for this step", unbilled=True)
        body: dict[str, Any] = {
            "model": model, "prompt": describe(refs) + request.fields.prompt,
            "size": str(self.settings.get("image_size") or image_size(request.fields)),
            "sequential_image_generation": "disabled", "response_format": "b64_json",
            "watermark": bool(self.settings.get("watermark", False))}
        if refs:
            urls = [await asyncio.to_thread(image_url, ref, doing) for ref in refs]
            body["image"] = urls[0] if len(urls) == 1 else urls
        r = await self._send("POST", f"{self.base_url}/images/generations", doing, json=body)
        if not r.ok:
            raise self._refused(r, doing, request.kind)
        answer = r.json()
        data = answer.get("data") if isinstance(answer, dict) else None
        entry = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        if isinstance(entry.get("error"), dict):  # one image of the answer was refused
            raise task_failure(entry["error"], None, doing, request.kind)
        try:
            png = base64.b64decode(str(entry.get("b64_json") or ""), validate=True)
        except (binascii.Error, ValueError):
            png = b""
        output = request.outputs[0].name
        path = await asyncio.to_thread(keep_image, png, request.workdir / output,
                                       where(r.url), doing)
        size = entry.get("size")
        return Done({output: str(path)}, note=f"Seedream {model}" + (f", {size}" if size else ""))

    def _model(self, setting: str, family: str, doing: str) -> str:
        """The model id `setting` names (a model of `family`); refused before sending when
        there is none."""
        model = self.settings.get(setting)
        if not model:
            raise ServiceError(FailureKind.INVALID, f"cannot {doing}: the backend `{self.name}` "
                               f"has no `{setting}` (a {family} model id of its region)",
                               unbilled=True)
        return str(model)

    # -- HTTP -----------------------------------------------------------------------------

    async def _send(self, method: str, url: str, doing: str, *, auth: bool = True,
                    json: Any = None, timeout: float | None = None) -> Response:
        key = self.setup.secret("api_key") if auth else ""
        return await self.http.send(method, url, doing, key, json=json, timeout=timeout,
                                    headers={"Authorization": f"Bearer {key}"} if auth else None)

    def _refused(self, r: Response, doing: str, kind: str = "clip") -> ServiceError:
        return redact(classify(r, doing, kind), self.setup.secret("api_key"))


# -- what Ark's answers mean ---------------------------------------------------------------


def _error(body: bytes) -> Mapping[str, Any]:
    """The `error` object of an Ark answer (`{"error": {"code", "message", "type"}}`)."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def _policy(code: str, message: str, kind: str) -> str | None:
    """What to do about a content-safety refusal of a `kind` step; None when it is not one."""
    if "SensitiveContentDetected" not in code and "RiskDetection" not in code:
        return None
    elsewhere = (f"make this step with another backend (`fallback = {{ {kind} = \"NAME\" }}` "
                 f"in this backend's table of filmc.toml, or `backend {kind} NAME` in the shot)")
    if code.startswith("Input") and "Image" in code or "real person" in message:
        return ("Seedance refuses this input image every time (a recognisable face or a real "
                f"person is enough), so retrying will not help: {elsewhere}, or use an image "
                "that shows no real person")
    if code.startswith("Output"):
        return ("Seedance's safety check withheld the result: reword the shot's prompt, or "
                + elsewhere)
    return f"reword the shot's prompt, or {elsewhere}"


def classify(r: Response, doing: str, kind: str = "clip") -> ServiceError:
    """The ServiceError an Ark error answer means to a `kind` step, for a message
    `cannot {doing}: ...`."""
    err = _error(r.body)
    code, message = str(err.get("code") or ""), str(err.get("message") or "").strip()
    reason = (f"{message} ({code})" if code and message else message or code
              or r.body.decode("utf-8", "replace").strip()[:300] or "no reason given")
    status, unbilled, failure = r.status, False, kind_of_status(r.status)
    what = _policy(code, message, kind)
    if what is not None or status == 422:  # 422: content safety, says the issue
        failure = FailureKind.POLICY
        reason += "; " + (what or _policy("InputImageSensitiveContentDetected", "", kind) or "")
    elif code.startswith(CREDIT_CODES):
        failure = FailureKind.CREDIT
        reason += "; top up the account or raise its limit in the Ark console, then build again"
    elif status == 401:
        failure = FailureKind.AUTH
        reason = ("the API key was refused: check that the environment variable named by "
                  f"`api_key_env` holds a current key of this region ({reason})")
    elif status == 403:
        failure = FailureKind.AUTH
        reason += "; the key may not be allowed this model, or this region"
    elif status == 429:
        failure, unbilled = FailureKind.RATE_LIMITED, True
    elif status == 404:
        failure = FailureKind.INVALID
        reason += ("; check `model` and `image_model`: ids differ between regions, and a "
                   "model must be activated in the Ark console")
    elif status in (502, 504):
        failure = FailureKind.TRANSIENT  # a gateway gave up: the task may exist behind it
    elif status >= 500:
        failure, unbilled = FailureKind.TRANSIENT, True
    return ServiceError(failure, f"cannot {doing}: {where(r.url)} answered {status}: {reason}",
                        retry_after=retry_after(r.headers), unbilled=unbilled, status=status)


def task_failure(error: Any, task: str | None, doing: str | None = None,
                 kind: str = "clip") -> ServiceError:
    """A task (or one image) that Ark ran and failed: refused content, or another reason."""
    err = error if isinstance(error, dict) else {}
    code, message = str(err.get("code") or ""), str(err.get("message") or "").strip()
    reason = f"{message} ({code})" if code and message else message or code or "no reason given"
    head = f"cannot {doing}" if doing else f"Seedance task `{task}` failed"
    what = _policy(code, message, kind)
    if what is not None:
        return ServiceError(FailureKind.POLICY, f"{head}: {reason}; {what}")
    return ServiceError(FailureKind.FAILED, f"{head}: {reason}")


# -- requests, as data ---------------------------------------------------------------------


def base_url(settings: Mapping[str, Any]) -> str:
    """Where the API lives: `base_url`, else the region's."""
    return service_url(settings, REGIONS, DEFAULT_REGION)


def durations(settings: Mapping[str, Any]) -> tuple[int, ...]:
    """The clip lengths the model makes: `durations`, else 4 to 12 seconds."""
    return seconds(settings.get("durations")) or DURATIONS


def image_size(f: Fields) -> str:
    """A Seedream size of about 4 megapixels at the film's aspect (`2K` without one)."""
    if not f.width or not f.height:
        return "2K"
    ratio = min(16.0, max(1 / 16, f.width / f.height))
    w, h = math.sqrt(IMAGE_AREA * ratio), math.sqrt(IMAGE_AREA / ratio)
    return f"{round(w / 16) * 16}x{round(h / 16) * 16}"


async def _image_part(item: Input, role: str, doing: str) -> dict[str, Any]:
    url = await asyncio.to_thread(image_url, item, doing, FRAME_MIN_SIDE, FRAME_RATIOS,
                                  "Seedance")
    return {"type": "image_url", "image_url": {"url": url}, "role": role}


# -- settings ------------------------------------------------------------------------------


def _check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problem = Problems()
    if not settings.get("model") and not settings.get("image_model"):
        problem("model", "the `seedance` adapter needs `model` (for clips) or `image_model` "
                "(for sheets, plates and keyframes)",
                "a model id of the backend's region, e.g. `model = \"seedance-1-0-pro-250528\"`; "
                "ids differ between BytePlus and Volcengine")
    problem.strings(settings, ("model", "image_model", "base_url", "image_size"))
    problem.region(settings, REGIONS, "an Ark region")
    problem.one_of(settings, "resolution", RESOLUTIONS, "Seedance")
    if "ratio" in settings and settings["ratio"] not in (*RATIOS, "adaptive"):
        problem("ratio", f"`ratio` = `{settings['ratio']}` is not one Seedance makes",
                "it is `adaptive` (the first frame's shape) or one of "
                + ", ".join(f"`{r}`" for r in RATIOS))
    problem.durations(settings, "the lengths your model makes, e.g. `durations = [5, 10]`; 4 "
                                "to 12 by default")
    problem.flags(settings, ("camera_fixed", "watermark", "generate_audio", "last_frame"))
    size = settings.get("image_size")
    if isinstance(size, str) and size and not re.fullmatch(r"[124]K|\d+x\d+", size):
        problem("image_size", f"`image_size` must be `1K`, `2K`, `4K` or `WIDTHxHEIGHT`, "
                f"not `{size}`", "leave it out for about 4 megapixels at the film's aspect")
    problem.near_misses(settings, KNOWN, "seedance")
    return problem
