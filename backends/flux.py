"""The `flux` backend: sheets, plates and keyframes from Black Forest Labs' FLUX API.

    POST {base}/v1/{model}   x-key: <key>   → {id, polling_url}
    GET  {polling_url}                       → {status: Pending | Ready | Error |
                                                 Request Moderated | Content Moderated |
                                                 Task not found, result: {sample: URL}}
    GET  {result.sample}                     the image: a signed URL that lives 10 minutes

The handle the engine journals holds the task id *and* the `polling_url` BFL
answered (which may name another host than the one submitted to: a region's
cluster), so a build killed mid-poll polls the same URL again.  BFL has no
idempotency key: a submit is sent again only when its answer proves nothing
was started (429: too many tasks running; 500/502/503; a connection that never
opened).  The key goes to BFL's own hosts only, never to the image's URL.

References (the cast's sheets, then the location plate, then the user's own
images) go inline as base64, as `input_image`, `input_image_2`…; how many a
model takes is declared per model family (FLUX.2: 8, Kontext: 4, FLUX 1.1: 0)
and `max_references` overrides it.  FLUX.2 and FLUX 1.1 [pro] are given a
`width` and `height` (the film's frame, in multiples of 32, at most 4 MP);
Kontext and 1.1 [pro] Ultra an `aspect_ratio`.  Moderation arrives as a
status, not an HTTP error, and is never retried.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from ..lang.steps import KINDS
from .fit import aspect_ratio
from .http import Http, Response, kind_of_status, masked, retry_after, snippet, where
from .inputs import describe, references
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
from .results import downloaded, keep_image
from .settings import ENGINE, Problems, service_url

DEFAULT_MODEL = "flux-2-pro"
REGIONS = {"global": "https://api.bfl.ai", "eu": "https://api.eu.bfl.ai",
           "us": "https://api.us.bfl.ai"}
BFL_HOSTS = ("bfl.ai", "bfl.ml")  # where the key may go: BFL's own API hosts
IMAGE_KINDS = ("sheet", "plate", "keyframe")
ASPECT_RATIOS = ("21:9", "16:9", "3:2", "4:3", "1:1", "3:4", "2:3", "9:16", "9:21")
REFERENCE_MAX = 20 << 20  # bytes of one reference image sent inline
REQUEST_TIMEOUT = 120.0


@attrs.frozen
class Family:
    """How a family of FLUX models is asked for a picture."""

    references: int  # input_image, input_image_2, ...
    sized: bool  # width/height (else aspect_ratio)
    side: tuple[int, int] = (64, 2048)  # the least and most pixels a side may have
    megapixels: float = 4.0
    multiple: int = 16  # of which every side must be a multiple


# Longest prefix first: `flux-pro-1.1-ultra` before `flux-pro-1.1`.
FAMILIES = (
    ("flux-2-", Family(8, True)),
    ("flux-kontext-", Family(4, False)),
    ("flux-pro-1.1-ultra", Family(0, False)),
    ("flux-pro-1.1", Family(0, True, (256, 1440), 1440 * 1440 / 1e6, 32)),
    ("flux-dev", Family(0, True, (256, 1440), 1440 * 1440 / 1e6, 32)),
    ("flux-pro", Family(0, True, (256, 1440), 1440 * 1440 / 1e6, 32)),
)

IMAGE_SETTINGS = frozenset({"model", "max_references", "size", "safety_tolerance",
                            "output_format", "prompt_upsampling"})
SENT_AS_WRITTEN = ("safety_tolerance", "output_format", "prompt_upsampling")
KNOWN = IMAGE_SETTINGS | {*ENGINE, "region", "base_url"}


class Flux(Adapter):
    """Black Forest Labs' FLUX API: images from text and several reference images."""

    type = "flux"
    version = "1"
    runs_here = False
    secrets = ("api_key",)
    kinds = IMAGE_KINDS

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.base_url = base_url(self.settings)
        self.http = Http(setup.name, timeout=REQUEST_TIMEOUT)

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any], root: Path) -> Capabilities | None:
        if kind not in cls.kinds:
            return None
        fam = family(settings)
        size = _parse_size(settings.get("size"))
        return Capabilities(seed=True, negative=False, references=references_of(settings),
                            first_frame=False, sizes=(size,) if size else None,
                            aspect_ratios=None if fam.sized else ASPECT_RATIOS)

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        if _parse_size(settings.get("size")) and family(settings).sized:
            return frozenset({"prompt", "seed", "take"})  # the film's frame picks nothing
        return frozenset({"prompt", "seed", "width", "height", "take"})

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        return {k: v for k, v in settings.items() if k in IMAGE_SETTINGS}

    @classmethod
    def key_extra(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Json]:
        return {} if "model" in settings else {"model": DEFAULT_MODEL}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check(settings)

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        if request.kind not in self.kinds:
            return await super().submit(request, handle)
        model = str(self.settings.get("model") or DEFAULT_MODEL)
        doing = f"make `{request.step}` with FLUX (`{model}`)"
        body = await asyncio.to_thread(self._body, request, doing)
        r = await self._call("POST", f"{self.base_url}/v1/{model}", doing, json=body)
        if not r.ok:
            raise classify(r, doing, self._key(), submitting=True)
        answer = r.json()
        task = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(task, str) or not task:
            raise ServiceError(FailureKind.TRANSIENT, f"cannot {doing}: {where(r.url)} answered "
                               f"without a task id")
        polling = answer.get("polling_url")
        if not isinstance(polling, str) or not re.match(r"https?://", polling):
            polling = f"{self.base_url}/v1/get_result?id={task}"
        return Handle(task, {"polling_url": polling, "kind": request.kind})

    async def poll(self, handle: Handle) -> Pending | Done:
        url = str(handle.data.get("polling_url")
                  or f"{self.base_url}/v1/get_result?id={handle.id}")
        doing = f"follow FLUX task {handle.id}"
        r = await self._call("GET", url, doing, key=self._trusted(url))
        if r.status == 404:
            raise lost(handle.id)
        if not r.ok:
            raise classify(r, doing, self._key(), submitting=False)
        data = r.json()
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise ServiceError(FailureKind.TRANSIENT, f"cannot {doing}: {where(r.url)} "
                               f"answered without a task status")
        status = data["status"]
        if status == "Ready":
            result = data.get("result")
            sample = result.get("sample") if isinstance(result, dict) else None
            if not isinstance(sample, str):
                raise ServiceError(FailureKind.FAILED, f"FLUX task {handle.id} is ready "
                                   f"without `result.sample`")
            output = KINDS[str(handle.data.get("kind", "keyframe"))].outputs[0].name
            return Done({output: {"url": sample}}, note=f"FLUX task {handle.id}")
        if status == "Task not found":
            raise lost(handle.id)
        if status in ("Request Moderated", "Content Moderated", "Error"):
            raise task_failure(handle.id, status, data)
        progress = data.get("progress")
        return Pending(status.lower() or "pending",
                       float(progress) if isinstance(progress, (int, float)) else None)

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        files: dict[str, Path | Sequence[Path]] = {}
        for name, place in done.outputs.items():
            url = str(place["url"]) if isinstance(place, Mapping) else str(place)
            doing = f"download the image of `{request.step}`"
            r = await self.http.request("GET", url, timeout=300)  # signed: no key goes along
            downloaded(r, doing, "the image's URL has expired (FLUX keeps a result for 10 "
                                 "minutes): `filmc build` makes the step anew",
                       gone=(401, 403, 404, 410))
            files[name] = await asyncio.to_thread(keep_image, r.body, request.workdir / name,
                                                  where(url), doing)
        return files

    async def close(self) -> None:
        await self.http.close()

    # -- requests -------------------------------------------------------------------------

    def _body(self, request: Request, doing: str) -> dict[str, Any]:
        f = request.fields
        refs = references(request)[:references_of(self.settings)]
        body: dict[str, Any] = {"prompt": describe(refs, end="\n") + f.prompt}
        for i, ref in enumerate(refs, 1):
            body["input_image" if i == 1 else f"input_image_{i}"] = _inline(ref, doing)
        fam = family(self.settings)
        w, h = f.width or 1024, f.height or 1024
        if fam.sized:
            body["width"], body["height"] = _parse_size(self.settings.get("size")) or \
                frame_size(w, h, fam)
        else:
            body["aspect_ratio"] = aspect_ratio(w, h, ASPECT_RATIOS)
        if f.seed is not None:
            body["seed"] = (f.seed + (f.take or 1) - 1) % (1 << 32)
        for name in SENT_AS_WRITTEN:
            if name in self.settings:
                body[name] = self.settings[name]
        return body

    # -- HTTP -----------------------------------------------------------------------------

    def _key(self) -> str:
        return self.setup.secret("api_key")

    def _trusted(self, url: str) -> bool:
        """Whether `url` is BFL's (or the configured `base_url`'s) host: the key goes there
        and nowhere else."""
        host = urlsplit(url).hostname or ""
        return (urlsplit(url)[:2] == urlsplit(self.base_url)[:2]
                or any(host == h or host.endswith(f".{h}") for h in BFL_HOSTS))

    async def _call(self, method: str, url: str, doing: str, key: bool = True,
                    **kwargs: Any) -> Response:
        headers = {"x-key": self._key(), "accept": "application/json"} if key else None
        try:
            return await self.http.request(method, url, headers=headers, **kwargs)
        except ServiceError as e:
            raise ServiceError(e.kind, f"cannot {doing}: {masked(e.message, self._key())}",
                               retry_after=e.retry_after, unbilled=e.unbilled,
                               status=e.status) from None


# -- models, sizes, references --------------------------------------------------------------


def base_url(settings: Mapping[str, Any]) -> str:
    return service_url(settings, REGIONS, "global")


def family(settings: Mapping[str, Any]) -> Family:
    model = str(settings.get("model") or DEFAULT_MODEL)
    return next((fam for prefix, fam in FAMILIES if model.startswith(prefix)), FAMILIES[0][1])


def references_of(settings: Mapping[str, Any]) -> int:
    given = settings.get("max_references")
    if isinstance(given, int) and not isinstance(given, bool) and given >= 0:
        return given
    return family(settings).references


def frame_size(width: int, height: int, fam: Family) -> tuple[int, int]:
    """The film's frame as FLUX takes it: each side a multiple of 32 (which every family
    takes) within the family's range, the area at most its megapixels, the shape kept."""
    scale = min(1.0, math.sqrt(fam.megapixels * 1e6 / (width * height)),
                fam.side[1] / max(width, height))
    low, high = fam.side

    def side(v: float) -> int:
        return int(min(high, max(low, 32 * math.floor(v / 32 + 0.5))))

    return side(width * scale), side(height * scale)


def _inline(ref: Input, doing: str) -> str:
    try:
        body = ref.path.read_bytes()
    except OSError as e:
        raise ServiceError(FailureKind.INVALID, f"cannot {doing}: cannot read the input "
                           f"`{ref.path}` (from `{ref.step}`): {e.strerror}") from None
    if len(body) > REFERENCE_MAX:
        raise ServiceError(FailureKind.INVALID, f"cannot {doing}: the reference `{ref.path.name}` "
                           f"is {len(body) >> 20} MB; FLUX takes at most 20 MB an image")
    return base64.b64encode(body).decode()


def _parse_size(value: Any) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)x(\d+)", value) if isinstance(value, str) else None
    return (int(m[1]), int(m[2])) if m else None


# -- what FLUX's answers mean ---------------------------------------------------------------


def reason(r: Response) -> str:
    """BFL's error body (`{"detail": "..."}` or a list of field errors), as one line."""
    try:
        data = json.loads(r.body)
    except ValueError:
        data = None
    detail = data.get("detail", data.get("message")) if isinstance(data, dict) else None
    if isinstance(detail, list):
        parts = []
        for d in detail[:5]:
            if isinstance(d, dict):
                loc = ".".join(str(p) for p in d.get("loc") or () if p != "body")
                parts.append(f"`{loc}`: {d.get('msg')}" if loc else str(d.get("msg")))
        return "; ".join(parts) or "no reason given"
    if detail:
        return str(detail)
    return snippet(r.body) or "no reason given"


def classify(r: Response, doing: str, key: str, submitting: bool) -> ServiceError:
    """The ServiceError a non-2xx answer means (BFL's status codes), key masked."""
    said, status = reason(r), r.status
    kind, unbilled = kind_of_status(status), False
    if status in (401, 403):
        kind = FailureKind.AUTH
        said = (f"the API key was refused: check that the environment variable named by "
                f"`api_key_env` holds a current BFL key for this region ({said})")
    elif status == 402:
        kind = FailureKind.CREDIT
        said += "; the account is out of credits: add credits at BFL, then build again"
    elif status == 429:
        kind, unbilled = FailureKind.RATE_LIMITED, True
        if submitting:
            said += ("; too many tasks are running on this account: filmc waits and sends it "
                     "again (a lower `concurrency` avoids this)")
    elif status == 404 and submitting:
        kind = FailureKind.INVALID
        said += "; check `model` (FLUX models are named like `flux-2-pro`)"
    elif status in (500, 502, 503):  # BFL: nothing was started, send it again
        kind, unbilled = FailureKind.TRANSIENT, True
    return ServiceError(kind, masked(f"cannot {doing}: {where(r.url)} answered {status}: {said}",
                                     key),
                        retry_after=retry_after(r.headers), unbilled=unbilled, status=status)


def task_failure(task_id: str, status: str, data: Mapping[str, Any]) -> ServiceError:
    details = data.get("details") or (data.get("result") if status == "Error" else None)
    extra = f" ({json.dumps(details, ensure_ascii=False)[:300]})" if details else ""
    if status == "Request Moderated":
        return ServiceError(FailureKind.POLICY, f"FLUX refused the request before making it "
                            f"(Request Moderated{extra}); nothing was charged: reword the "
                            f"shot's prompt or change its reference images, or give this step "
                            f"another backend")
    if status == "Content Moderated":
        return ServiceError(FailureKind.POLICY, f"FLUX made the image and its moderation "
                            f"withheld it (Content Moderated{extra}); nothing was charged: "
                            f"reword the shot's prompt, raise `safety_tolerance` (up to 6 is "
                            f"the most permissive), or give this step another backend")
    return ServiceError(FailureKind.FAILED, f"FLUX task {task_id} failed (Error{extra}); "
                        f"`filmc build` tries again")


def lost(task_id: str) -> ServiceError:
    return ServiceError(FailureKind.NOT_FOUND, f"FLUX does not know task {task_id} (Task not "
                        f"found): BFL keeps a task only for a short while")


# -- settings -------------------------------------------------------------------------------


def _check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problem = Problems()
    model = settings.get("model")
    if model is not None and not (isinstance(model, str) and re.fullmatch(r"[a-z0-9][a-z0-9.\-]*",
                                                                          model)):
        problem("model", f"`model` must be a FLUX model's name, such as `{DEFAULT_MODEL}`")
    elif isinstance(model, str) and not any(model.startswith(p) for p, _ in FAMILIES):
        problem("model", f"filmc does not know the FLUX model `{model}`",
                "it is asked as FLUX.2 is (width and height, 8 references); set "
                "`max_references` as its API reference says", warning=True)
    region = settings.get("region")
    if region is not None and region not in REGIONS:
        problem("region", f"`region` must be one of {', '.join(f'`{r}`' for r in REGIONS)}, "
                f"not `{region}`", "`eu` and `us` keep the data in that region")
    base = settings.get("base_url")
    if base is not None and not (isinstance(base, str) and re.match(r"https?://[^/]", base)):
        problem("base_url", f"`base_url` must be an http(s) URL, not `{base}`",
                "leave it out and set `region` to reach BFL itself")
    refs = settings.get("max_references")
    if refs is not None and not (isinstance(refs, int) and not isinstance(refs, bool)
                                 and 0 <= refs <= 10):
        problem("max_references", "`max_references` must be a whole number from 0 to 10")
    size = settings.get("size")
    if size is not None:
        parsed = _parse_size(size)
        fam = family(settings)
        if parsed is None or not fam.sized:
            problem("size", f"`size` must be `WIDTHxHEIGHT`, for a model that takes a width "
                    f"and height, not `{size}`",
                    "Kontext and Ultra models take an aspect ratio, chosen from the film's")
        elif any(v % fam.multiple or not fam.side[0] <= v <= fam.side[1] for v in parsed):
            problem("size", f"this FLUX model takes sides in multiples of {fam.multiple} from "
                    f"{fam.side[0]} to {fam.side[1]}, not `{size}`")
    tolerance = settings.get("safety_tolerance")
    if tolerance is not None and not (isinstance(tolerance, int)
                                      and not isinstance(tolerance, bool) and 0 <= tolerance <= 6):
        problem("safety_tolerance", "`safety_tolerance` must be a whole number from 0 (strictest) "
                "to 6 (most permissive)")
    fmt = settings.get("output_format")
    if fmt is not None and fmt not in ("png", "jpeg"):
        problem("output_format", f"`output_format` must be `png` or `jpeg`, not `{fmt}`")
    if "prompt_upsampling" in settings and not isinstance(settings["prompt_upsampling"], bool):
        problem("prompt_upsampling", "`prompt_upsampling` must be `true` or `false`")
    problem.near_misses(settings, KNOWN, "flux")
    return problem
