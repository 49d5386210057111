"""The `replicate` backend: any model on Replicate, as a prediction.

    [backends.replicate_kling]
    type = "replicate"
    api_key_env = "REPLICATE_API_TOKEN"
    [backends.replicate_kling.clip]
    model = "kwaivgi/kling-v2.1"              # or "owner/name:version" for a pinned version
    inputs = { prompt = "prompt", first_frame = "start_image", negative = "negative_prompt",
               duration = "duration" }
    durations = [5, 10]

Which model makes each kind, and what it is given, is filmc.toml's mapping
(model_inputs.py; what fal and Replicate share besides, hosted.py).  A step is one
prediction:

    POST {base_url}/models/{owner}/{name}/predictions   {"input": {...}}    (official models)
    POST {base_url}/predictions   {"version", "input"}   (`model = "owner/name:version"`)
        → {id, status: starting, urls: {get, cancel}}   the id is journaled as the handle
    GET  {base_url}/predictions/{id}   starting | processing → succeeded | failed |
                                       canceled | aborted
    GET  the output URL(s)             at once: Replicate deletes outputs after an hour

`wait_s` (1–60) asks for a synchronous answer (`Prefer: wait=N`), which may still
come back unfinished; `cancel_after` (`"30m"`) sets Replicate's deadline, after
which a prediction not yet started is `aborted` (not charged) and one running is
`canceled`.  Images go inline as data URIs, or through Replicate's files API
(`POST /files`, cached by content until they expire) when larger than 1 MB or
with `upload = "files"`.

A throttled request (429) waits as Replicate says; a prediction that fails says
why (a safety refusal is its own kind: reword, or use another backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import time
from collections.abc import Mapping
from typing import Any

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

DEFAULT_BASE_URL = "https://api.replicate.com/v1"
UPLOADS = ("auto", "data_uri", "files")
INLINE_LIMIT = 1 << 20  # bytes: Replicate suggests data URIs for files under 1 MB
UPLOAD_MARGIN = 3600.0  # seconds an uploaded file must still live to be reused
RUNNING = ("starting", "processing")
# Words of a failed prediction's error that mean a safety refusal (NSFW checkers, E005).
POLICY_WORDS = re.compile(r"\bnsfw\b|flagged as sensitive|\bE005\b|safety|content polic",
                          re.IGNORECASE)
_DEADLINE = re.compile(r"\d+(\.\d+)?(ms|s|m|h)")
_VERSION = re.compile(r"[0-9a-f]{64}")


class Replicate(HostedModel):
    """Any Replicate model, mapped in filmc.toml."""

    type = "replicate"
    version = "1"
    service = "Replicate"
    own_settings = ("base_url", "upload", "wait_s", "cancel_after")
    url_settings = ("base_url",)
    url_help = f"leave it out for Replicate (`{DEFAULT_BASE_URL}`)"
    model_help = ("write `owner/name` (an official model, its latest version) or "
                  "`owner/name:VERSION` (a version's 64-character id)")
    kept = "an hour"

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.base_url = str(self.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        problems = super().check_settings(settings)
        if settings.get("upload", "auto") not in UPLOADS:
            problems.append(SettingProblem(
                "upload", "`upload` must be `\"auto\"`, `\"data_uri\"` or `\"files\"`",
                "auto: images under 1 MB inline, larger ones through Replicate's files API"))
        wait = settings.get("wait_s")
        if wait is not None and not (isinstance(wait, int) and not isinstance(wait, bool)
                                     and 1 <= wait <= 60):
            problems.append(SettingProblem("wait_s", "`wait_s` must be a whole number of "
                                                     "seconds from 1 to 60",
                                           "how long Replicate holds the request open for a "
                                           "finished prediction; leave it out to poll"))
        deadline = settings.get("cancel_after")
        if deadline is not None and not (isinstance(deadline, str)
                                         and _DEADLINE.fullmatch(deadline)):
            problems.append(SettingProblem("cancel_after", "`cancel_after` must be a duration "
                                                           "such as `\"30m\"` or `\"90s\"`",
                                           "Replicate aborts a prediction not started by then "
                                           "(not charged), and cancels one still running"))
        return problems + cls.model_problems(settings)

    @classmethod
    def model_id(cls, model: str) -> bool:
        name, sep, version = model.partition(":")
        parts = name.split("/")
        return len(parts) == 2 and all(parts) and (not sep or bool(_VERSION.fullmatch(version)))

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        spec = self.spec(request)
        doing = f"send `{request.step}` to Replicate's `{spec.model}`"
        body: dict[str, Any] = {"input": await model_input(spec, request, self._place)}
        owner_name, _, version = spec.model.partition(":")
        if version:
            body["version"] = version
            url = f"{self.base_url}/predictions"
        else:
            url = f"{self.base_url}/models/{owner_name}/predictions"
        headers = {}
        wait = self.settings.get("wait_s")
        if wait:
            headers["Prefer"] = f"wait={int(wait)}"
        if self.settings.get("cancel_after"):
            headers["Cancel-After"] = str(self.settings["cancel_after"])
        r = await self.call("POST", url, doing, json=body, headers=headers,
                            timeout=120.0 + float(wait or 0))
        if not r.ok:
            raise self.redact(api_error(r, doing, spec))
        prediction = r.json()
        if not (isinstance(prediction, dict) and isinstance(prediction.get("id"), str)):
            raise ServiceError(FailureKind.FAILED,
                               f"cannot {doing}: {where(r.url)} answered without a prediction "
                               f"id; it may have started one: see replicate.com/predictions "
                               f"before building again", status=r.status)
        got = self._read(prediction, request.kind)
        return Handle(prediction["id"], {"kind": request.kind}) if isinstance(got, Pending) \
            else got

    async def poll(self, handle: Handle) -> Pending | Done:
        doing = f"follow Replicate prediction {handle.id}"
        r = await self.call("GET", f"{self.base_url}/predictions/{handle.id}", doing)
        if r.status == 404:
            raise ServiceError(FailureKind.NOT_FOUND,
                               f"Replicate does not know prediction {handle.id}", status=404)
        if not r.ok:
            raise self.redact(api_error(r, doing, None))
        return self._read(r.json(), str(handle.data.get("kind", "keyframe")))

    async def cancel(self, handle: Handle) -> None:
        with contextlib.suppress(ServiceError):
            await self.call("POST", f"{self.base_url}/predictions/{handle.id}/cancel",
                            "cancel", timeout=30)

    # -- the parts ------------------------------------------------------------------------

    def _read(self, prediction: Any, kind: str) -> Pending | Done:
        """A prediction: still running, its result, or why it ended without one."""
        if not isinstance(prediction, dict):
            raise ServiceError(FailureKind.TRANSIENT, "Replicate answered with something "
                                                      "that is not a prediction")
        pid, status = prediction.get("id"), str(prediction.get("status"))
        doing = f"make prediction {pid}"
        if status in RUNNING:
            return Pending(status)
        if status == "succeeded":
            if prediction.get("data_removed"):
                raise ServiceError(FailureKind.EXPIRED,
                                   f"cannot {doing}: Replicate has deleted its output (it "
                                   f"keeps outputs an hour); the next build makes it again")
            spec = self.specs.get(kind) or ModelSpec(kind, str(prediction.get("model")))
            output = prediction.get("output")
            url = find_output(output, spec, ("",) if isinstance(output, str) else (
                "0", "video", "image", "output", "0.url"), doing, "the prediction")
            metrics = prediction.get("metrics")
            took = metrics.get("predict_time") if isinstance(metrics, Mapping) else None
            return self.made(kind, url, f"Replicate `{prediction.get('model') or spec.model}`"
                             + (f", {took:.1f} s" if isinstance(took, (int, float)) else ""))
        error = str(prediction.get("error") or "no reason given").strip()
        if status == "failed":
            if POLICY_WORDS.search(error):
                raise ServiceError(FailureKind.POLICY,
                                   f"cannot {doing}: the model refused it: {error}; reword the "
                                   f"shot's prompt, or make this step with another backend")
            raise ServiceError(FailureKind.FAILED, f"cannot {doing}: the model failed: {error}")
        if status == "canceled":
            raise ServiceError(FailureKind.FAILED,
                               f"cannot {doing}: the prediction was canceled at Replicate (on "
                               f"its website or API, or its `cancel_after` deadline passed "
                               f"while it ran); it is charged for the time it ran; the next "
                               f"build sends it again")
        if status == "aborted":
            raise ServiceError(FailureKind.FAILED,
                               f"cannot {doing}: Replicate aborted the prediction before it "
                               f"started (its `cancel_after` deadline passed in the queue); "
                               f"nothing was charged; the next build sends it again")
        raise ServiceError(FailureKind.FAILED, f"cannot {doing}: Replicate says its status is "
                                               f"`{status}`: {error}")

    async def _place(self, item: Input) -> str:
        """An image as the model input holds it: a data URI, or a file uploaded once."""
        how = self.settings.get("upload", "auto")
        if how == "data_uri" or (how == "auto" and item.path.stat().st_size < INLINE_LIMIT):
            return await asyncio.to_thread(data_uri, item.path)
        scope = f"replicate:{self.base_url}"
        cached = self.setup.uploads.get(scope, item.digest)
        if isinstance(cached, Mapping) and float(cached.get("expires", 0)) > \
                time.time() + UPLOAD_MARGIN:
            return str(cached["url"])
        got: dict[str, Any] = await self.once(item.digest, lambda: self._upload(item))
        self.setup.uploads.put(scope, item.digest, got)
        return str(got["url"])

    async def _upload(self, item: Input) -> dict[str, Any]:
        """`POST /files` (multipart `content`): the file's URL, and when it expires."""
        import aiohttp

        doing = f"upload `{item.path.name}` to Replicate's files"
        body, media = await asyncio.to_thread(sendable, item.path)
        form = aiohttp.FormData()
        form.add_field("content", body, filename=f"filmc-{item.digest[:20]}.{media.ext}",
                       content_type=media.mime)
        try:
            r = await self.call("POST", f"{self.base_url}/files", doing, data=form)
            if not r.ok:
                raise self.redact(api_error(r, doing, None))
            data = r.json()
            urls = data.get("urls") if isinstance(data, dict) else None
            url = urls.get("get") if isinstance(urls, dict) else None
            if not isinstance(url, str):
                raise ServiceError(FailureKind.TRANSIENT, f"cannot {doing}: {where(r.url)} "
                                                          f"answered without the file's URL")
        except ServiceError as e:
            raise unbilled(e) from None
        return {"url": url, "expires": _epoch(data.get("expires_at"))}

    async def call(self, method: str, url: str, doing: str, *,
                   headers: Mapping[str, str] | None = None, **kwargs: Any) -> Response:
        """One request; the token goes to Replicate's API host only, never to an output's
        URL (replicate.delivery needs none)."""
        sent = dict(headers or {})
        if origin(url) == origin(self.base_url):
            sent["Authorization"] = f"Bearer {self.key()}"
        try:
            return await self.http.request(method, url, headers=sent, **kwargs)
        except ServiceError as e:
            raise self.redact(e, doing) from None


# -- Replicate's answers, read --------------------------------------------------------------


def api_error(r: Response, doing: str, spec: ModelSpec | None) -> ServiceError:
    """What a refused API request means.  Replicate answers problem details: `{title,
    detail, status}` (with `invalid_fields` for input it refuses)."""
    data = json_or_none(r.body)
    detail = str(data.get("detail") or data.get("title") or "") if isinstance(data, dict) else ""
    detail = detail.strip() or answer_text(r)
    status = r.status
    if status == 401:
        return ServiceError(FailureKind.AUTH, f"cannot {doing}: Replicate refused the token "
                            f"({detail}); check that the variable named by `api_key_env` holds "
                            f"a current API token", status=401)
    if status == 402:
        return ServiceError(FailureKind.CREDIT, f"cannot {doing}: {detail}; add credit at "
                            f"replicate.com/account/billing, then build again", status=402)
    if status == 403:
        return ServiceError(FailureKind.AUTH, f"cannot {doing}: Replicate answered 403: "
                            f"{detail}", status=403)
    if status == 404 and spec is not None:
        return ServiceError(FailureKind.INVALID, f"cannot {doing}: Replicate has no model "
                            f"`{spec.model}` ({detail}); check `model` of `{spec.kind}` (a "
                            f"community model needs `owner/name:VERSION`)", status=404)
    if status == 422:
        return ServiceError(FailureKind.INVALID, f"cannot {doing}: Replicate refused the "
                            f"input: {detail}; check the model's inputs and their mapping in "
                            f"filmc.toml", status=422)
    if status == 429:
        wait = retry_after(r.headers)
        if wait is None and isinstance(data, dict) and isinstance(data.get("retry_after"),
                                                                  (int, float)):
            wait = float(data["retry_after"])
        return ServiceError(FailureKind.RATE_LIMITED, f"cannot {doing}: Replicate is "
                            f"throttling requests ({detail})", retry_after=wait, unbilled=True,
                            status=429)
    # A 5xx: no prediction was made; a gateway timeout (504) may hide one.
    return r.error(doing, detail, unbilled=status in (500, 502, 503))


def _epoch(value: Any) -> float:
    """An ISO time (`expires_at`) as seconds since the epoch; a day from now if absent."""
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time() + 86400.0
