"""The `runway` adapter: clips (image_to_video) and images (text_to_image) from Runway's API.

    clip                  → POST /v1/image_to_video   promptImage: the first frame (and the
                                                      last, on models that take one)
    sheet, plate, keyframe → POST /v1/text_to_image   referenceImages [{uri, tag}], each
                                                      named `@TAG` in the prompt
    either                → GET /v1/tasks/{id} until SUCCEEDED, then the first output URL

Every request carries `Authorization: Bearer <key>` and `X-Runway-Version`.
Runway has no idempotency key and no client-chosen task id: a submit is sent
again only when Runway's answer proves nothing was made (502, 503 or 504, or a
connection that never opened); a task's id is journaled by the engine before
the first poll, so a killed build polls it again.

Images go to Runway through its own upload route (`POST /v1/uploads` → a
presigned form and a `runway://` URI, valid 24 hours), once per file: the URI
is remembered by content digest (`setup.uploads`) and reused for 20 hours.  A
file under Runway's 512-byte upload minimum goes inline as a data URI.  A
request refused because a remembered upload is gone is sent once more with
fresh uploads (a 400 made nothing).

What a model honours (ratios, lengths, seed, negative prompt, last frame,
references, prompt length) is a table of the models Runway documents
(models.py); a prompt over the limit loses its last lines (style, light,
camera) first.  Failures are sorted by answers.py; 429 on a submit means the
daily generation quota is spent, which stops the backend like an empty account.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from ...lang.steps import FIRST_FRAME, KINDS, LAST_FRAME
from ..fit import aspect_ratio, clip_length
from ..http import Http, Response, masked, unbilled, where
from ..inputs import Once, data_url, references
from ..protocol import (
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
from ..results import IMAGES, VIDEOS, downloaded, keep_as
from .answers import about_inputs, classify, task_failure
from .models import (
    CLIP_SETTINGS,
    DEFAULT_BASE_URL,
    DEFAULT_CLIP_MODEL,
    DEFAULT_IMAGE_MODEL,
    IMAGE_SETTINGS,
    check,
    describe,
    durations_of,
    fit_prompt,
    model_name,
    model_of,
    ratio_size,
    ratios_of,
    references_of,
    tag_all,
)

API_VERSION = "2024-11-06"
IMAGE_KINDS = ("sheet", "plate", "keyframe")
UPLOAD_REUSE_S = 20 * 3600  # runway:// URIs live 24 h: reuse one for 20
UPLOAD_MIN, UPLOAD_MAX = 512, 200 << 20  # bytes Runway's upload route takes
REQUEST_TIMEOUT = 120.0  # seconds one API request may take (`timeout_s` is the job's)
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


class Runway(Adapter):
    """Runway's API: image-to-video clips and reference-tagged images."""

    type = "runway"
    version = "1"
    runs_here = False
    secrets = ("api_key",)
    kinds = (*IMAGE_KINDS, "clip")

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.base_url = str(self.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self.http = Http(setup.name, timeout=REQUEST_TIMEOUT)
        self.uploads = Once()  # concurrent steps with the same image share one upload

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any], root: Path) -> Capabilities | None:
        if kind not in cls.kinds:
            return None
        m = model_of(kind, settings)
        ratios = ratios_of(kind, settings)
        sizes = tuple(size for r in ratios if (size := ratio_size(r)) is not None)
        if kind == "clip":
            return Capabilities(seed=m.seed, negative=m.negative, references=0, first_frame=True,
                                last_frame=m.last_frame,
                                durations=tuple(Fraction(d) for d in durations_of(settings)),
                                sizes=sizes, aspect_ratios=ratios, prompt_chars=m.prompt_limit)
        return Capabilities(seed=m.seed, negative=False, references=references_of(settings),
                            first_frame=False, sizes=sizes, aspect_ratios=ratios,
                            prompt_chars=m.prompt_limit)

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        m = model_of(kind, settings)
        fields = {"prompt", "take"}
        if len(ratios_of(kind, settings)) > 1:  # the film's shape picks the resolution
            fields |= {"width", "height"}
        if m.seed:
            fields.add("seed")
        if kind == "clip":
            fields.add("duration")
            if m.negative:
                fields.add("negative")
        return frozenset(fields)

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        mine = CLIP_SETTINGS if kind == "clip" else IMAGE_SETTINGS
        return {k: v for k, v in settings.items() if k in mine}

    @classmethod
    def key_extra(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Json]:
        # A default model is part of what is made: were it changed here, keys must change.
        setting = "model" if kind == "clip" else "image_model"
        default = DEFAULT_CLIP_MODEL if kind == "clip" else DEFAULT_IMAGE_MODEL
        return {} if setting in settings else {setting: default}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return check(settings)

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        if request.kind not in self.kinds:
            return await super().submit(request, handle)
        route = "image_to_video" if request.kind == "clip" else "text_to_image"
        doing = f"make `{request.step}` at Runway"
        body, reused = await self._body(request, force=False)
        r = await self._call("POST", f"/v1/{route}", doing, json=body)
        if r.status == 400 and reused and about_inputs(r):
            # A remembered upload may have expired: Runway made nothing, so send it again
            # with every image uploaded anew.
            body, _ = await self._body(request, force=True)
            r = await self._call("POST", f"/v1/{route}", doing, json=body)
        if not r.ok:
            raise await self._refusal(r, doing, body)
        answer = r.json()
        task = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(task, str) or not task:
            raise ServiceError(FailureKind.TRANSIENT, f"cannot {doing}: {where(r.url)} answered "
                               f"without a task id ({r.body[:200]!r})")
        return Handle(task, {"kind": request.kind})

    async def poll(self, handle: Handle) -> Pending | Done:
        doing = f"follow Runway task {handle.id}"
        r = await self._call("GET", f"/v1/tasks/{handle.id}", doing)
        if r.status == 404:
            raise ServiceError(FailureKind.NOT_FOUND, f"Runway does not know task {handle.id}: "
                               f"it was deleted, or is older than Runway keeps tasks",
                               status=404)
        if not r.ok:
            raise classify(r, doing, self._key(), submitting=False)
        task = r.json()
        if not isinstance(task, dict) or not isinstance(task.get("status"), str):
            raise ServiceError(FailureKind.TRANSIENT, f"cannot {doing}: {where(r.url)} "
                               f"answered without a task status")
        status = task["status"]
        if status == "SUCCEEDED":
            urls = task.get("output")
            if not isinstance(urls, list) or not urls or not isinstance(urls[0], str):
                raise ServiceError(FailureKind.FAILED, f"Runway task {handle.id} succeeded "
                                   f"without an output URL")
            kind = str(handle.data.get("kind", "clip"))
            return Done({KINDS[kind].outputs[0].name: {"url": urls[0]}},
                        note=f"Runway task {handle.id}")
        if status == "FAILED":
            raise task_failure(handle.id, task)
        if status == "CANCELLED":
            raise ServiceError(FailureKind.FAILED, f"Runway task {handle.id} was cancelled (in "
                               f"Runway's developer portal, or by another client): "
                               f"`filmc build` submits it anew")
        progress = task.get("progress")
        said = {"THROTTLED": "throttled: queued behind your other Runway tasks"}
        return Pending(said.get(status, status.lower() or "queued"),
                       float(progress) if isinstance(progress, (int, float)) else None)

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        files: dict[str, Path | Sequence[Path]] = {}
        for name, place in done.outputs.items():
            url = str(place["url"]) if isinstance(place, Mapping) else str(place)
            doing = f"download the output of `{request.step}`"
            # A signed URL: no key goes with it.
            r = await self.http.request("GET", url, timeout=600)
            downloaded(r, doing, "Runway's output URL has expired (they last 24 to 48 hours); "
                                 "the task is asked again for a fresh one",
                       gone=(401, 403, 404, 410))
            video = next(o.media for o in request.outputs if o.name == name) == "video"
            files[name] = await asyncio.to_thread(
                keep_as, r.body, request.workdir / name, where(url), doing,
                VIDEOS if video else IMAGES, "a video" if video else "an image")
        return files

    async def cancel(self, handle: Handle) -> None:
        """Cancel a running task, or delete a finished one (best effort)."""
        with contextlib.suppress(ServiceError):
            await self._call("DELETE", f"/v1/tasks/{handle.id}", "cancel a Runway task",
                             timeout=15)

    async def close(self) -> None:
        self.uploads.cancel()
        await self.http.close()

    # -- requests -------------------------------------------------------------------------

    async def _body(self, request: Request, force: bool) -> tuple[dict[str, Any], bool]:
        """The JSON a request sends, and whether it names an upload remembered from before."""
        f = request.fields
        kind = request.kind
        m = model_of(kind, self.settings)
        w, h = f.width or 1280, f.height or 720
        body: dict[str, Any] = {"model": model_name(kind, self.settings),
                                "ratio": aspect_ratio(w, h, ratios_of(kind, self.settings))}
        reused = False
        if kind == "clip":
            first, last = request.of(FIRST_FRAME), request.of(LAST_FRAME)
            if not first:
                raise ServiceError(FailureKind.INVALID, f"cannot make `{request.step}` at Runway: "
                                   f"its image_to_video needs a first frame, and the clip has none")
            uri, old = await self._uri(first[0], force)
            reused |= old
            if last and m.last_frame:
                end, old = await self._uri(last[0], force)
                reused |= old
                body["promptImage"] = [{"uri": uri, "position": "first"},
                                       {"uri": end, "position": "last"}]
            else:
                body["promptImage"] = uri
            seconds = f.duration if f.duration is not None else Fraction(5)
            body["duration"] = int(clip_length(seconds, durations_of(self.settings)))
            text = fit_prompt(f.prompt, m.prompt_limit)
            if m.negative and f.negative:
                body["negativePrompt"] = f.negative
        else:
            refs = references(request)[:references_of(self.settings)]
            if not refs and m.needs_reference:
                raise ServiceError(FailureKind.INVALID, f"cannot make `{request.step}` at Runway: "
                                   f"`{body['model']}` needs at least one reference image; set "
                                   f"`image_model = \"{DEFAULT_IMAGE_MODEL}\"` for steps without")
            tags = tag_all(refs)
            images = []
            for ref, tag in zip(refs, tags):
                uri, old = await self._uri(ref, force)
                reused |= old
                images.append({"uri": uri, "tag": tag})
            if images:
                body["referenceImages"] = images
            text = fit_prompt(describe(refs, tags) + f.prompt, m.prompt_limit)
        if text:
            body["promptText"] = text
        if m.seed and f.seed is not None:
            body["seed"] = (f.seed + (f.take or 1) - 1) % (1 << 32)
        if self.settings.get("public_figure_threshold"):
            body["contentModeration"] = {
                "publicFigureThreshold": str(self.settings["public_figure_threshold"])}
        return body, reused

    # -- uploads --------------------------------------------------------------------------

    async def _uri(self, item: Input, force: bool) -> tuple[str, bool]:
        """A URI Runway can read `item` from, and whether it is an upload made earlier."""
        try:
            size = item.path.stat().st_size
        except OSError as e:
            raise ServiceError(FailureKind.INVALID, f"cannot read the input `{item.path}` "
                               f"(from `{item.step}`): {e.strerror}") from None
        if size < UPLOAD_MIN:  # under the upload route's minimum: inline
            body = await asyncio.to_thread(item.path.read_bytes)
            mime = _MIME.get(item.path.suffix.lower(), "image/png")
            return data_url(body, mime), False
        if size > UPLOAD_MAX:
            raise ServiceError(FailureKind.INVALID, f"the input `{item.path.name}` (from "
                               f"`{item.step}`) is {size >> 20} MB: Runway takes at most 200 MB")
        scope = f"runway:{self.base_url}"
        cached = None if force else self.setup.uploads.get(scope, item.digest)
        if (isinstance(cached, dict) and isinstance(cached.get("uri"), str)
                and time.time() - float(cached.get("at", 0)) < UPLOAD_REUSE_S):
            return str(cached["uri"]), True
        uri = await self.uploads.once(item.digest, lambda: self._upload(item))
        self.setup.uploads.put(scope, item.digest, {"uri": uri, "at": time.time()})
        return uri, False

    async def _upload(self, item: Input) -> str:
        """POST /v1/uploads for a presigned form, then the file to it; the runway:// URI."""
        import aiohttp

        suffix = item.path.suffix.lower() or ".png"
        filename = f"filmc-{item.digest[:20]}{suffix}"
        doing = f"upload `{item.path.name}` to Runway"
        try:
            r = await self._call("POST", "/v1/uploads", doing,
                                 json={"filename": filename, "type": "ephemeral"})
            if not r.ok:
                raise classify(r, doing, self._key(), submitting=False)
            slot = r.json()
            if not (isinstance(slot, dict) and isinstance(slot.get("uploadUrl"), str)
                    and isinstance(slot.get("runwayUri"), str)):
                raise ServiceError(FailureKind.TRANSIENT, f"cannot {doing}: {where(r.url)} "
                                   f"answered without `uploadUrl` and `runwayUri`")
            body = await asyncio.to_thread(item.path.read_bytes)
            form = aiohttp.FormData()
            for name, value in (slot.get("fields") or {}).items():
                form.add_field(str(name), str(value))
            form.add_field("file", body, filename=filename,
                           content_type=_MIME.get(suffix, "application/octet-stream"))
            # A presigned form: the key must not go with it.
            sent = await self.http.request("POST", str(slot["uploadUrl"]), data=form,
                                           timeout=600)
            sent.raise_for_status(doing)
        except ServiceError as e:  # an upload costs nothing: it may always be sent again
            raise unbilled(e) from None
        return str(slot["runwayUri"])

    # -- HTTP -----------------------------------------------------------------------------

    def _key(self) -> str:
        return self.setup.secret("api_key")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key()}",
                "X-Runway-Version": str(self.settings.get("api_version") or API_VERSION)}

    async def _call(self, method: str, route: str, doing: str, **kwargs: Any) -> Response:
        """One request to Runway's API; a failure to reach it never carries the key."""
        try:
            return await self.http.request(method, f"{self.base_url}{route}",
                                           headers=self._headers(), **kwargs)
        except ServiceError as e:
            raise ServiceError(e.kind, f"cannot {doing}: {masked(e.message, self._key())}",
                               retry_after=e.retry_after, unbilled=e.unbilled,
                               status=e.status) from None

    async def _refusal(self, r: Response, doing: str, body: Mapping[str, Any]) -> ServiceError:
        """A refused submit; for the daily quota, with what Runway says of today's usage."""
        e = classify(r, doing, self._key(), submitting=True)
        if r.status == 429:
            usage = await self._usage(str(body.get("model", "")))
            if usage:
                e = ServiceError(e.kind, e.message + f" ({usage})", status=e.status)
        return e

    async def _usage(self, model: str) -> str:
        """`40 of 40 generations of gen4_turbo in the last day`, from GET /v1/organization."""
        try:
            r = await self._call("GET", "/v1/organization", "read the organization", timeout=10)
            org: Any = r.json() if r.ok else None
            limit = org["tier"]["models"][model]["maxDailyGenerations"]
            used = org["usage"]["models"][model]["dailyGenerations"]
        except (ServiceError, KeyError, TypeError):
            return ""
        return f"{used} of {limit} generations of `{model}` in the last day"


