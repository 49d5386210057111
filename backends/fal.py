"""The `fal` backend: any model on fal.ai, through its queue, under one key.

    [backends.fal_flux]
    type = "fal"
    api_key_env = "FAL_KEY"
    kinds = ["sheet", "plate", "keyframe"]
    model = "fal-ai/flux-pro/kontext/max/multi"
    inputs = { prompt = "prompt", references = "image_urls", seed = "seed",
               aspect_ratio = "aspect_ratio" }
    aspect_ratios = ["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"]

Which model makes each kind, and what it is given, is filmc.toml's mapping
(model_inputs.py; what fal and Replicate share besides, hosted.py).  A step runs
through fal's queue:

    POST {base_url}/{model}                  the model's input; `Authorization: Key …`
        → {request_id, status_url, response_url, cancel_url}   journaled as the handle
    GET  status_url        202 IN_QUEUE (queue_position) | IN_PROGRESS;  200 COMPLETED
    GET  response_url      the model's result: `images[0].url`, `video.url`… or its error
    GET  the media URL     at once (the result is kept an hour, less when it is large)

The status, result and cancel URLs come from fal's answer and are used as given
(they drop the model's `/path`).  The queue is durable: a build killed while it
waits polls the same request again.  Images go to fal's storage once (cached by
content: `POST {storage_url}/storage/upload/initiate`, then `PUT` the bytes to
the signed URL it returns), or inline as data URIs with `upload = "data_uri"`.

fal does not charge for server errors (5xx), but may charge for an input the
model refused (422): such a step fails, saying why, and is never sent again by
the same build.  A model's own error comes back as its result; it is read here
into the right kind (content policy, bad input, a failure at fal).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from ..lang.steps import KINDS
from .hosted import (
    HostedModel,
    answer_text,
    data_uri,
    find_output,
    json_or_none,
    origin,
    sendable,
)
from .http import Response, retry_after, unbilled, where
from .model_inputs import ModelSpec, model_input
from .protocol import (
    Done,
    FailureKind,
    Handle,
    Input,
    Pending,
    Request,
    ServiceError,
    SettingProblem,
    Setup,
)

DEFAULT_BASE_URL = "https://queue.fal.run"
DEFAULT_STORAGE_URL = "https://rest.alpha.fal.ai"
UPLOADS = ("storage", "data_uri")
UPLOAD_KEEP = 6 * 86400.0  # seconds an upload is reused: fal keeps media a week at least
# Where a model's result keeps its output, most models' way, by media.
OUTPUTS = {"image": ("images.0.url", "image.url", "images.0", "image"),
           "video": ("video.url", "videos.0.url", "video", "videos.0")}
POLICY_TYPES = frozenset({"content_policy_violation", "content_moderation", "nsfw",
                          "safety_violation"})


class Fal(HostedModel):
    """Any fal.ai model, mapped in filmc.toml."""

    type = "fal"
    version = "1"
    service = "fal"
    own_settings = ("base_url", "storage_url", "upload")
    url_settings = ("base_url", "storage_url")
    url_help = "leave it out for fal itself"
    model_help = ("it is the part of the model's URL after fal.ai/models/, e.g. "
                  "`fal-ai/kling-video/v2.1/pro/image-to-video`")
    kept = "an hour, its media a week"

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.base_url = str(self.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self.storage_url = str(self.settings.get("storage_url")
                               or DEFAULT_STORAGE_URL).rstrip("/")

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        problems = super().check_settings(settings)
        if settings.get("upload", "storage") not in UPLOADS:
            problems.append(SettingProblem("upload", "`upload` must be `\"storage\"` (fal's "
                                                     "storage, once per image) or "
                                                     "`\"data_uri\"` (inline, every time)"))
        return problems + cls.model_problems(settings)

    @classmethod
    def model_id(cls, model: str) -> bool:
        return not model.startswith(("http:", "https:", "/")) and "/" in model

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        spec = self.spec(request)
        doing = f"send `{request.step}` to fal's `{spec.model}`"
        body = await model_input(spec, request, self._place)
        r = await self.call("POST", f"{self.base_url}/{spec.model}", doing, json=body)
        if not r.ok:
            raise self.redact(submit_error(r, doing, spec))
        data = r.json()
        urls = {k: data.get(k) for k in ("status_url", "response_url", "cancel_url")} \
            if isinstance(data, dict) else {}
        if not (isinstance(data, dict) and isinstance(data.get("request_id"), str)
                and all(isinstance(u, str) for u in urls.values())):
            raise ServiceError(FailureKind.FAILED,
                               f"cannot {doing}: {where(r.url)} answered without a request "
                               f"id and its URLs; it may have queued the request: see fal's "
                               f"dashboard before building again", status=r.status)
        return Handle(data["request_id"], {**urls, "kind": request.kind, "model": spec.model})

    async def poll(self, handle: Handle) -> Pending | Done:
        doing = f"follow fal request {handle.id}"
        r = await self.call("GET", str(handle.data["status_url"]), doing)
        if r.status == 404:
            raise ServiceError(FailureKind.NOT_FOUND,
                               f"fal does not know request {handle.id} any more", status=404)
        if not r.ok:
            raise self.redact(submit_error(r, doing, None) if r.status in (401, 403)
                              else r.error(doing, _detail(json_or_none(r.body)) or None))
        data = r.json()
        status = str(data.get("status") if isinstance(data, dict) else "")
        if status == "IN_QUEUE":
            place = data.get("queue_position")
            return Pending("in queue" + (f" (position {place})" if isinstance(place, int)
                                         else ""))
        if status == "IN_PROGRESS":
            return Pending("in progress")
        if status != "COMPLETED":
            error = data.get("error") if isinstance(data, dict) else None
            raise ServiceError(FailureKind.FAILED,
                               f"cannot {doing}: fal says the request is `{status or data}`"
                               + (f": {error}" if error else ""))
        return await self._result(handle, data)

    async def cancel(self, handle: Handle) -> None:
        """Take the request off fal's queue (fal cancels only what has not started)."""
        with contextlib.suppress(ServiceError):
            await self.call("PUT", str(handle.data["cancel_url"]), "cancel", timeout=30)

    # -- the parts ------------------------------------------------------------------------

    async def _result(self, handle: Handle, status: Mapping[str, Any]) -> Done:
        kind = str(handle.data.get("kind", "keyframe"))
        model = str(handle.data.get("model", ""))
        doing = f"get the result of fal request {handle.id} ({model})"
        r = await self.call("GET", str(status.get("response_url")
                                       or handle.data["response_url"]), doing)
        data = json_or_none(r.body)
        if r.status == 404 and not _error_body(data):
            raise ServiceError(FailureKind.EXPIRED,
                               f"cannot {doing}: fal no longer keeps the result (an hour, "
                               f"less for a large one); the next build makes it again",
                               status=404)
        if not r.ok or _error_body(data) and not _has_media(data):
            raise self.redact(model_error(r, data, doing))
        spec = self.specs.get(kind) or ModelSpec(kind, model)
        media = KINDS[kind].outputs[0].media
        found = find_output(data, spec, OUTPUTS[media], doing, f"fal's `{model}`")
        metrics = status.get("metrics")
        took = metrics.get("inference_time") if isinstance(metrics, Mapping) else None
        return self.made(kind, found, f"fal `{model}`" + (
            f", {took:.1f} s" if isinstance(took, (int, float)) else ""))

    async def _place(self, item: Input) -> str:
        """An image as the model input holds it: fal storage's URL, or a data URI."""
        if self.settings.get("upload", "storage") == "data_uri":
            return await asyncio.to_thread(data_uri, item.path)
        scope = f"fal:{self.storage_url}"
        cached = self.setup.uploads.get(scope, item.digest)
        if isinstance(cached, Mapping) and time.time() - float(cached.get("at", 0)) < UPLOAD_KEEP:
            return str(cached["url"])
        url: str = await self.once(item.digest, lambda: self._upload(item))
        self.setup.uploads.put(scope, item.digest, {"url": url, "at": time.time()})
        return url

    async def _upload(self, item: Input) -> str:
        """`POST /storage/upload/initiate` for a signed URL, then `PUT` the bytes there."""
        doing = f"upload `{item.path.name}` to fal's storage"
        body, media = await asyncio.to_thread(sendable, item.path)
        try:
            r = await self.call("POST", f"{self.storage_url}/storage/upload/initiate", doing,
                                params={"storage_type": "fal-cdn-v3"},
                                json={"file_name": f"filmc-{item.digest[:20]}.{media.ext}",
                                      "content_type": media.mime})
            if not r.ok:
                raise self.redact(submit_error(r, doing, None))
            target = r.json()
            if not (isinstance(target, dict) and isinstance(target.get("upload_url"), str)
                    and isinstance(target.get("file_url"), str)):
                raise ServiceError(FailureKind.TRANSIENT, f"cannot {doing}: {where(r.url)} "
                                                          f"answered without an upload URL")
            # The upload URL is signed: the key does not go with the bytes.
            put = await self.http.request("PUT", target["upload_url"], data=body,
                                          headers={"Content-Type": media.mime})
            put.raise_for_status(doing)
        except ServiceError as e:
            raise unbilled(e) from None
        return str(target["file_url"])

    async def call(self, method: str, url: str, doing: str, **kwargs: Any) -> Response:
        """One request; the key goes to fal's own queue and storage hosts only, never to
        a media URL (signed already) or anywhere else an answer points."""
        ours = {origin(self.base_url), origin(self.storage_url)}
        headers = {"Authorization": f"Key {self.key()}"} if origin(url) in ours else None
        try:
            return await self.http.request(method, url, headers=headers, **kwargs)
        except ServiceError as e:
            raise self.redact(e, doing) from None


# -- fal's answers, read --------------------------------------------------------------------


def submit_error(r: Response, doing: str, spec: ModelSpec | None) -> ServiceError:
    """What a refused submission (or storage request) means."""
    data = json_or_none(r.body)
    detail = _detail(data) or answer_text(r)
    if r.status == 401:
        return ServiceError(FailureKind.AUTH, f"cannot {doing}: fal refused the key ({detail}); "
                            f"check that the variable named by `api_key_env` holds a current "
                            f"fal key", status=401)
    if r.status == 403:
        if "balance" in detail.lower() or "top_up" in detail.lower():
            return ServiceError(FailureKind.CREDIT, f"cannot {doing}: {detail}; top up at "
                                f"fal.ai/dashboard/billing, then build again", status=403)
        return ServiceError(FailureKind.AUTH, f"cannot {doing}: fal answered 403: {detail}",
                            status=403)
    if r.status == 404 and spec is not None:
        return ServiceError(FailureKind.INVALID, f"cannot {doing}: fal has no model "
                            f"`{spec.model}` ({detail}); check `model` of `{spec.kind}`",
                            status=404)
    if r.status in (400, 422):
        return model_error(r, data, doing)
    if r.status == 429:
        return ServiceError(FailureKind.RATE_LIMITED, f"cannot {doing}: fal is throttling "
                            f"requests ({detail})", retry_after=retry_after(r.headers),
                            unbilled=True, status=429)
    # A 5xx before the queue took the request: nothing was queued, nothing charged; a
    # gateway timeout (504) is the exception: the request may be queued behind it.
    return r.error(doing, detail, unbilled=r.status in (500, 502, 503))




def model_error(r: Response, data: Any, doing: str) -> ServiceError:
    """A model's error, as fal's result (or a refused submission) carries it: `detail` a
    list of `{loc, msg, type}` for input and content errors, a text with `error_type` for a
    failure at fal."""
    detail = data.get("detail") if isinstance(data, dict) else None
    error = data.get("error") if isinstance(data, dict) else None
    error_type = (data.get("error_type") if isinstance(data, dict) else None) \
        or r.headers.get("X-Fal-Error-Type") or r.headers.get("x-fal-error-type")
    items = [d for d in detail if isinstance(d, dict)] if isinstance(detail, list) else []
    said = "; ".join(_item(d) for d in items) or str(detail or error or answer_text(r))
    if any(str(d.get("type")) in POLICY_TYPES for d in items) \
            or str(error_type or "") in POLICY_TYPES:
        return ServiceError(FailureKind.POLICY, f"cannot {doing}: fal's content checker "
                            f"refused it: {said}; reword the shot's prompt, use other "
                            f"reference images, or make this step with another backend",
                            status=r.status)
    if error_type == "client_cancelled":
        return ServiceError(FailureKind.FAILED, f"cannot {doing}: the request was cancelled "
                            f"at fal ({said}); the next build sends it again", status=r.status)
    if (r.status in (400, 422) and error_type in (None, "bad_request")) or items:
        return ServiceError(FailureKind.INVALID, f"cannot {doing}: the model refused its "
                            f"input: {said}; check the model's inputs and their mapping in "
                            f"filmc.toml (fal may have charged for this request, so it is not "
                            f"sent again)", status=r.status)
    kind = f" ({error_type})" if error_type else ""
    return ServiceError(FailureKind.FAILED, f"cannot {doing}: the model failed at fal{kind}: "
                        f"{said}; fal does not charge for its failures, and the next build "
                        f"sends it again", status=r.status)


def _item(d: Mapping[str, Any]) -> str:
    loc = [str(p) for p in d.get("loc", []) if p != "body"] if isinstance(d.get("loc"),
                                                                         list) else []
    where_ = f"`{'.'.join(loc)}`: " if loc else ""
    extra = d.get("categories") or (d.get("ctx") if isinstance(d.get("ctx"), dict) else None)
    more = f" {extra}" if extra else ""
    return f"{where_}{d.get('msg', 'refused')} ({d.get('type', 'error')}){more}"


def _detail(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    detail = data.get("detail") or data.get("error") or data.get("message")
    if isinstance(detail, list):
        return "; ".join(_item(d) for d in detail if isinstance(d, dict))
    return str(detail) if detail else ""


def _error_body(data: Any) -> bool:
    return isinstance(data, dict) and bool(data.get("detail") or data.get("error"))


def _has_media(data: Any) -> bool:
    return isinstance(data, dict) and any(k in data for k in ("images", "image", "video",
                                                              "videos"))
