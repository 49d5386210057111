"""The `kling` backend: clips (and images) from Kling's API (Kuaishou, 可灵).

    [backends.kling]
    type = "kling"
    access_key_env = "KLING_ACCESS_KEY"
    secret_key_env = "KLING_SECRET_KEY"
    region = "international"          # api-singapore.klingai.com; "china": api-beijing
    model = "kling-v2-1"              # the video model: required
    mode = "pro"                      # std | pro (first-to-last-frame clips need pro)

A step runs like this.  `prepare` chooses the task's `external_task_id` (the
step's key and a nonce: Kling keeps it unique per account, so a step made
again after a failed task needs a fresh one) and the route (bodies.py); the
engine journals it before the submit.  `submit` posts the body with a fresh
bearer token (api.py) and returns a handle naming Kling's `task_id`; `poll`
asks for the task by it, or, for a submit whose answer was lost, by our
`external_task_id`, so that the engine sends it again only when Kling does
not know it.  `fetch` downloads the video (or image) at once: its URL lives
30 days, but the store keeps the bytes.

Kling has no seed, and reports cost in resource-pack units rather than money:
`Done.cost` is None (filmc.toml's prices stand), and the note says the units.
There is no API to cancel a task.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from ...lang.steps import KINDS
from ..http import Http, Response, where
from ..protocol import (
    Adapter,
    Capabilities,
    Done,
    FailureKind,
    Handle,
    Json,
    Pending,
    Request,
    ServiceError,
    SettingProblem,
    Setup,
)
from ..results import downloaded, keep_as
from ..settings import ENGINE, Problems, number, service_url
from .api import Tokens, accepted, classify, error_body, outcome, task_of
from .bodies import (
    CLIP_ROUTE,
    DURATIONS,
    IMAGE_KINDS,
    IMAGE_RATIOS,
    IMAGE_ROUTE,
    MAX_REFERENCES,
    MULTI_CLIP_ROUTE,
    MULTI_IMAGE_ROUTE,
    body,
    route_for,
)

REGIONS = {"international": "https://api-singapore.klingai.com",
           "china": "https://api-beijing.klingai.com"}
DEFAULT_REGION = "international"
DEFAULT_IMAGE_MODEL = "kling-v2-1"  # images/generations and multi-image2image both take it
DEFAULT_MULTI_IMAGE_MODEL = "kling-v1-6"  # the one model multi-image2video documents
REQUEST_TIMEOUT = 120.0  # seconds for one API request (bodies carry base64 images)
DOWNLOAD_TIMEOUT = 600.0

CLIP_SETTINGS = frozenset({"model", "mode", "cfg_scale", "multi_image_model"})
IMAGE_SETTINGS = frozenset({"image_model", "resolution"})
KNOWN = {"region", "base_url", *CLIP_SETTINGS, *IMAGE_SETTINGS, *ENGINE}
# What Kling makes, by what its first bytes say: MP4 videos, PNG and JPEG images.
KEPT = {"video": {"mp4": "mp4", "mov": "mp4"}, "image": {"png": "png", "jpg": "jpg"}}


class Kling(Adapter):
    """Kling's image-to-video (and image) API, in either region, or a server that speaks it."""

    type = "kling"
    version = "1"
    runs_here = False
    secrets = ("access_key", "secret_key")
    kinds = (*IMAGE_KINDS, "clip")

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.base_url = base_url(self.settings)
        self.http = Http(setup.name, timeout=REQUEST_TIMEOUT)
        self.tokens = Tokens(setup.secret)

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any],
                     root: Path) -> Capabilities | None:
        if kind == "clip":
            # multi-image2video's list holds the first frame and three characters.
            return Capabilities(seed=False, negative=True, references=MAX_REFERENCES - 1,
                                first_frame=True, last_frame=settings.get("mode") == "pro",
                                durations=tuple(Fraction(d) for d in DURATIONS))
        if kind in IMAGE_KINDS:
            # Most of these steps have references, and the multi-image route takes no
            # negative prompt: promise none.
            return Capabilities(seed=False, negative=False, references=MAX_REFERENCES,
                                first_frame=False, aspect_ratios=IMAGE_RATIOS)
        return None

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        if kind == "clip":  # the frame's shape picks multi-image2video's aspect ratio
            return frozenset({"prompt", "negative", "duration", "width", "height", "take"})
        return frozenset({"prompt", "negative", "width", "height", "take"})

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        mine = CLIP_SETTINGS if kind == "clip" else IMAGE_SETTINGS
        return {k: v for k, v in settings.items() if k in mine}

    @classmethod
    def key_extra(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Json]:
        # A default model is part of what is made: were it changed here, keys must change.
        if kind == "clip":
            return {} if "multi_image_model" in settings else {
                "multi_image_model": DEFAULT_MULTI_IMAGE_MODEL}
        return {} if "image_model" in settings else {"image_model": DEFAULT_IMAGE_MODEL}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check(settings)

    # -- one build ------------------------------------------------------------------------

    def prepare(self, request: Request) -> Handle:
        external = f"{request.key[:32]}-{uuid.uuid4().hex[:12]}"
        return Handle(external, {"route": route_for(request), "external": external,
                                 "base": self.base_url, "kind": request.kind})

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        if request.kind not in self.kinds:
            return await super().submit(request, handle)
        handle = handle or self.prepare(request)
        route, external = str(handle.data["route"]), str(handle.data["external"])
        doing = f"submit `{request.step}` to Kling"
        payload = await asyncio.to_thread(body, request, route, external, self.settings,
                                          self._models())
        r, e = await self._send("POST", f"{self._base(handle)}/v1/{route}", doing,
                                json=payload)
        if e is not None:
            if e.kind is FailureKind.INVALID and "external_task_id" in e.message.lower():
                # Kling has a task by our id already (an earlier try did reach it): follow it.
                found = await self._ask(handle, missing_ok=True)
                if found is not None:
                    return Handle(str(found.get("task_id")),
                                  {**handle.data, "task": str(found.get("task_id"))})
            raise e
        task = accepted(r, doing)
        return Handle(task, {**handle.data, "task": task})

    async def poll(self, handle: Handle) -> Pending | Done:
        record = await self._ask(handle, missing_ok=False)
        assert record is not None
        return outcome(record, _output(handle), self._base(handle))

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        files: dict[str, Path | Sequence[Path]] = {}
        for name, place in done.outputs.items():
            url = str(place["url"])
            doing = f"download the {name} of Kling's task {place.get('task', '')}".rstrip()
            # No token: Kling's file URLs are public (its CDN), and a token is a key.
            r = await self.http.request("GET", url, timeout=DOWNLOAD_TIMEOUT)
            downloaded(r, doing, "the file's URL has expired or is gone")
            media = "video" if name == "video" else "image"
            files[name] = await asyncio.to_thread(
                keep_as, r.body, request.workdir / name, where(url), doing, KEPT[media],
                "an MP4 video" if media == "video" else "an image")
        return files

    async def close(self) -> None:
        await self.http.close()

    # -- HTTP -----------------------------------------------------------------------------

    async def _ask(self, handle: Handle, missing_ok: bool) -> Mapping[str, Any] | None:
        """The task record, by Kling's task id when we have it, else by our external id."""
        route, task = str(handle.data["route"]), handle.data.get("task")
        external = str(handle.data["external"])
        base = f"{self._base(handle)}/v1/{route}"
        doing = f"ask Kling for task {task or external}"
        if task:
            r, e = await self._send("GET", f"{base}/{task}", doing, query=True)
        else:
            r, e = await self._send("GET", base, doing, query=True,
                                    params={"external_task_id": external})
        if e is not None:
            if e.kind is FailureKind.NOT_FOUND and missing_ok:
                return None
            raise e
        record = task_of(r, None if task else external)
        if record is None and not missing_ok:
            raise ServiceError(FailureKind.NOT_FOUND, f"cannot {doing}: Kling does not know it "
                               f"(it never reached Kling, or it is older than Kling keeps)")
        return record

    async def _send(self, method: str, url: str, doing: str, query: bool = False,
                    **kwargs: Any) -> tuple[Response, ServiceError | None]:
        """One request with a current token: the answer, and what it means when Kling
        refused it (`query`: it asked for a task).  A failure to send is raised, and
        never carries a key."""
        token, sent_at = self.tokens.get(), time.monotonic()
        r = await self.http.send(method, url, doing, self.tokens.keys(), (),
                                 headers={"Authorization": f"Bearer {token}"}, **kwargs)
        if not _refused(r):
            self.tokens.taken()
            return r, None
        return r, classify(r, doing, self.tokens, token, sent_at, query)

    def _base(self, handle: Handle) -> str:
        """The server a job went to (a later build may have another `region`)."""
        return str(handle.data.get("base") or self.base_url).rstrip("/")

    def _models(self) -> dict[str, str]:
        image = str(self.settings.get("image_model") or DEFAULT_IMAGE_MODEL)
        return {CLIP_ROUTE: str(self.settings.get("model") or ""),
                MULTI_CLIP_ROUTE: str(self.settings.get("multi_image_model")
                                      or DEFAULT_MULTI_IMAGE_MODEL),
                IMAGE_ROUTE: image, MULTI_IMAGE_ROUTE: image}


def base_url(settings: Mapping[str, Any]) -> str:
    return service_url(settings, REGIONS, DEFAULT_REGION)


def _refused(r: Response) -> bool:
    """Not ok: a non-2xx status, or a 2xx whose `code` is not 0."""
    if not r.ok:
        return True
    code = error_body(r.body).get("code")
    return isinstance(code, int) and code != 0


def _output(handle: Handle) -> str:
    return KINDS[str(handle.data.get("kind", "clip"))].outputs[0].name


# -- settings -----------------------------------------------------------------------------


def _check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problem = Problems()
    model = settings.get("model")
    if model is None:
        problem("model", "the `kling` adapter needs `model`: the video model clips are made with",
                'e.g. `model = "kling-v2-1"`; Kling\'s documentation lists its models')
    problem.strings(settings, ("model", "image_model", "multi_image_model", "base_url"))
    region = settings.get("region")
    if region is not None and region not in REGIONS:
        problem("region", f"`region` must be `international` or `china`, not `{region}`",
                f"`international` is {REGIONS['international']}, `china` "
                f"{REGIONS['china']}; an account's keys work in its own region only")
    problem.http_url(settings, "base_url", "leave it out to use `region`")
    if "mode" in settings and settings["mode"] not in ("std", "pro"):
        problem("mode", f"`mode` must be `std` or `pro`, not `{settings['mode']}`",
                "`pro` makes better clips, and is needed for clips that end on a last frame")
    if "cfg_scale" in settings:
        if not number(settings["cfg_scale"], 0, 1):
            problem("cfg_scale", f"`cfg_scale` must be a number from 0 to 1, not "
                    f"`{settings['cfg_scale']}`")
        elif isinstance(model, str) and model.startswith("kling-v2"):
            problem("cfg_scale", f"Kling's {model} takes no `cfg_scale`",
                    "leave it out for v2 models", warning=True)
    if "resolution" in settings and settings["resolution"] not in ("1k", "2k"):
        problem("resolution", f"`resolution` must be `1k` or `2k`, not "
                f"`{settings['resolution']}`", "it sets the size of images without references")
    if "timeout_s" in settings and not number(settings["timeout_s"], 1, 7 * 86400):
        problem("timeout_s", "`timeout_s` must be a number of seconds", "how long one job may "
                "take before filmc leaves it for the next build; 3600 for clips by default")
    problem.near_misses(settings, KNOWN, "kling")
    return problem
