"""The `minimax` backend: MiniMax Hailuo clips, from MiniMax's international or China API.

    [backends.minimax]
    type = "minimax"
    api_key_env = "MINIMAX_API_KEY"
    region = "international"          # api.minimax.io; "china": api.minimaxi.com
    model = "MiniMax-Hailuo-02"       # the default: the model that takes a last frame too

A clip is a task in three steps.  `submit` posts `/v1/video_generation` (the prompt,
the keyframe as `first_frame_image` and, when the shot ends on the next one and the
model takes it, that keyframe as `last_frame_image`, both as base64 data URLs) and
returns the `task_id`, which the engine journals.  `poll` asks
`/v1/query/video_generation?task_id=` until the status is `Success` (it is
`Preparing`, `Queueing`, `Processing` before) and keeps the `file_id`; `fetch` asks
`/v1/files/retrieve?file_id=` for a `download_url` (it lives about 9 hours, so a
fresh one is asked for each download) and downloads the MP4 at once.

MiniMax answers HTTP 200 to almost everything: a failure is in
`base_resp.status_code` (0: success).  `classify` sorts the documented codes:
1002, 1039, 2045 are throttles (wait, send again: nothing was made), 1004 and
2049 a refused key, 1008 an empty account and 2056 a used-up plan (the backend
stops), 1026 and 1027 a content-safety refusal of the input or the output (the
step fails, not retried), 2013 a wrong request.

No seed, no negative prompt (plan warns).  The video follows the first frame's shape;
durations are 6 s, and 10 s below 1080P.  A frame must be over 300 px on its short
side and between 2:5 and 5:2: a smaller one is scaled up before sending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..lang.steps import FIRST_FRAME, LAST_FRAME
from .fit import clip_length
from .http import Http, Response, kind_of_status, redact, retry_after, where
from .inputs import image_url
from .protocol import (
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
from .results import downloaded, keep_mp4
from .settings import ENGINE, Problems, seconds, service_url

REGIONS = {"international": "https://api.minimax.io", "china": "https://api.minimaxi.com"}
DEFAULT_REGION = "international"
DEFAULT_MODEL = "MiniMax-Hailuo-02"
# The models MiniMax documents as taking a last frame (first & last frame to video).
LAST_FRAME_MODELS = frozenset({"MiniMax-Hailuo-02"})
RESOLUTIONS = ("512P", "720P", "768P", "1080P")
MAX_PROMPT = 2000  # characters
FRAME_MIN_SIDE = 301  # px: the short side must be over 300
FRAME_RATIOS = (0.4, 2.5)  # width / height: 2:5 to 5:2
PENDING = {"Preparing": "preparing", "Queueing": "queued", "Processing": "processing"}

VIDEO_SETTINGS = frozenset({"model", "resolution", "durations", "last_frame", "prompt_optimizer",
                            "fast_pretreatment", "aigc_watermark"})
KNOWN = VIDEO_SETTINGS | {*ENGINE, "region", "base_url"}
REQUEST_TIMEOUT = 120.0  # seconds one request may take

# base_resp codes, as MiniMax's error code reference lists them.
RATE = frozenset({1002, 1039, 1041, 2045})
AUTH = frozenset({1004, 2049})
CREDIT = frozenset({1008, 2056})
POLICY = frozenset({1026, 1027})
SERVER = frozenset({1000, 1013, 1024, 1033})  # nothing was made: may be sent again
INVALID = frozenset({1042, 2013})


class MiniMax(Adapter):
    """MiniMax's Hailuo video models (image to video, first and last frame to video)."""

    type = "minimax"
    version = "1"
    runs_here = False
    secrets = ("api_key",)
    kinds = ("clip",)

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.base_url = base_url(self.settings)
        self.model = str(self.settings.get("model") or DEFAULT_MODEL)
        self.http = Http(setup.name, timeout=REQUEST_TIMEOUT)

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any],
                     root: Path) -> Capabilities | None:
        if kind != "clip":
            return None
        return Capabilities(seed=False, negative=False, references=0, first_frame=True,
                            last_frame=takes_last_frame(settings),
                            durations=tuple(Fraction(d) for d in durations(settings)))

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        # The video follows the first frame's shape and MiniMax's fps: no size, no seed.
        return frozenset({"prompt", "duration", "take"})

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        return {k: v for k, v in settings.items() if k in VIDEO_SETTINGS}

    @classmethod
    def key_extra(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Json]:
        # A default model is part of what is made: were it changed here, keys must change.
        return {} if "model" in settings else {"model": DEFAULT_MODEL}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check(settings)

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        if request.kind != "clip":
            return await super().submit(request, handle)
        f = request.fields
        doing = f"make the clip `{request.step}`"
        if len(f.prompt) > MAX_PROMPT:
            raise ServiceError(FailureKind.INVALID,
                               f"cannot {doing}: its prompt is {len(f.prompt)} characters, and "
                               f"MiniMax takes {MAX_PROMPT}; shorten the shot's action or "
                               f"template", unbilled=True)
        body: dict[str, Any] = {"model": self.model, "prompt": f.prompt}
        first, last = request.of(FIRST_FRAME), request.of(LAST_FRAME)
        dropped = ""
        if first:
            body["first_frame_image"] = await self._frame(first[0], doing)
        if last and takes_last_frame(self.settings):
            body["last_frame_image"] = await self._frame(last[0], doing)
        elif last:
            dropped = f"last frame ({self.model} takes none)"
        if f.duration is not None:
            body["duration"] = int(clip_length(f.duration, durations(self.settings)))
        for name in ("resolution", "prompt_optimizer", "fast_pretreatment", "aigc_watermark"):
            if name in self.settings:
                body[name] = self.settings[name]
        answer = await self._call("POST", "/v1/video_generation", doing, json=body)
        task = answer.get("task_id")
        if not isinstance(task, (str, int)) or not str(task):
            raise ServiceError(FailureKind.FAILED, f"cannot {doing}: MiniMax accepted the task "
                                                   f"without naming it (no `task_id`)")
        data: dict[str, Json] = {"base": self.base_url}
        if dropped:
            data["dropped"] = dropped
        return Handle(str(task), data)

    async def poll(self, handle: Handle) -> Pending | Done:
        doing = f"follow MiniMax task `{handle.id}`"
        answer = await self._call("GET", "/v1/query/video_generation", doing,
                                  params={"task_id": handle.id}, base=handle.data.get("base"),
                                  lookup=True)
        status = str(answer.get("status") or "")
        if status in PENDING:
            return Pending(PENDING[status])
        if status == "Success":
            file_id = answer.get("file_id")
            if not isinstance(file_id, (str, int)) or not str(file_id):
                raise ServiceError(FailureKind.FAILED, f"cannot {doing}: it succeeded without "
                                                       f"a `file_id`")
            size = (answer.get("video_width"), answer.get("video_height"))
            note = f"MiniMax task {handle.id}" + (f", {size[0]}x{size[1]}" if all(size) else "")
            if handle.data.get("dropped"):
                note += f"; made without its {handle.data['dropped']}"
            return Done({"video": {"file_id": str(file_id),
                                   "base": str(handle.data.get("base") or self.base_url)}},
                        note=note)
        if status == "Fail":
            raise task_failure(answer, handle.id)
        return Pending(status.lower() or "unknown")

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        files: dict[str, Path | Sequence[Path]] = {}
        for name, place in done.outputs.items():
            if isinstance(place, Mapping) and "file_id" in place:
                files[name] = await self._download(place, request, name)
            else:
                files[name] = Path(place)
        return files

    async def close(self) -> None:
        await self.http.close()

    # -- the parts ------------------------------------------------------------------------

    async def _frame(self, item: Any, doing: str) -> str:
        return await asyncio.to_thread(image_url, item, doing, FRAME_MIN_SIDE, FRAME_RATIOS,
                                       "MiniMax")

    async def _download(self, place: Mapping[str, Any], request: Request, name: str) -> Path:
        doing = f"download the clip of `{request.step}`"
        answer = await self._call("GET", "/v1/files/retrieve", doing,
                                  params={"file_id": str(place["file_id"])},
                                  base=place.get("base"))
        file = answer.get("file")
        url = file.get("download_url") if isinstance(file, dict) else None
        if not isinstance(url, str) or not url:
            raise ServiceError(FailureKind.FAILED, f"cannot {doing}: MiniMax named no "
                                                   f"`download_url` for file {place['file_id']}")
        same_host = urlsplit(url)[:2] == urlsplit(self.base_url)[:2]  # the key goes home only
        r = await self._send("GET", url, doing, auth=same_host)
        downloaded(r, doing, "the video's download URL has expired or is gone",
                   refused=lambda r: redact(r.error(doing), self.setup.secret("api_key")))
        return await asyncio.to_thread(keep_mp4, r.body, request.workdir / name, where(url),
                                       doing, r.status)

    async def _call(self, method: str, route: str, doing: str, *, json: Any = None,
                    params: Mapping[str, str] | None = None, base: Any = None,
                    lookup: bool = False) -> dict[str, Any]:
        """One API request; its answer once `base_resp` says success.  `lookup` (a task's
        status): a task that ended `Fail` is answered (its `base_resp` says why it failed,
        not that the query did), and a task MiniMax does not know is NOT_FOUND."""
        url = f"{str(base or self.base_url).rstrip('/')}{route}"
        r = await self._send(method, url, doing, json=json, params=params)
        key = self.setup.secret("api_key")
        if not r.ok:
            raise redact(classify_http(r, doing), key)
        answer = r.json()
        if not isinstance(answer, dict):
            raise ServiceError(FailureKind.TRANSIENT, f"cannot {doing}: {where(r.url)} answered "
                                                      f"{r.status} with no JSON object")
        code, message = _base_resp(answer)
        if code == 0 or (lookup and answer.get("status") == "Fail"):
            return answer
        if lookup and code == 2013 and not answer.get("status"):
            raise ServiceError(FailureKind.NOT_FOUND, f"cannot {doing}: MiniMax does not know "
                                                      f"it ({message})")
        e = classify(code, message, doing, r.headers)
        if lookup and e.kind is FailureKind.FAILED:
            # A code this adapter does not know, about a task that may be running (and paid
            # for): asked again, and failing that kept journaled for the next build.
            e = ServiceError(FailureKind.TRANSIENT, e.message, retry_after=e.retry_after)
        raise redact(e, key)

    async def _send(self, method: str, url: str, doing: str, *, auth: bool = True,
                    json: Any = None, params: Mapping[str, str] | None = None) -> Response:
        key = self.setup.secret("api_key") if auth else ""
        return await self.http.send(method, url, doing, key, json=json, params=params,
                                    headers={"Authorization": f"Bearer {key}"} if auth else None)


# -- what MiniMax's answers mean -----------------------------------------------------------


def _base_resp(answer: Mapping[str, Any]) -> tuple[int, str]:
    base = answer.get("base_resp")
    if not isinstance(base, dict):
        return 0, ""  # no verdict: the fields decide
    try:
        code = int(base.get("status_code") or 0)
    except (TypeError, ValueError):
        code = -1
    return code, str(base.get("status_msg") or "").strip()


def classify(code: int, message: str, doing: str,
             headers: Mapping[str, str] | None = None) -> ServiceError:
    """The ServiceError a non-zero `base_resp.status_code` means."""
    said = f"MiniMax answered {code}" + (f" ({message})" if message else "")
    kind, unbilled, help = FailureKind.FAILED, False, ""
    if code in RATE:
        kind, unbilled = FailureKind.RATE_LIMITED, True
    elif code in AUTH:
        kind = FailureKind.AUTH
        help = ("the API key was refused: check that the environment variable named by "
                "`api_key_env` holds a current key of this region (`region`)")
    elif code == 1008:
        kind = FailureKind.CREDIT
        help = "the account's balance is used up: top it up, then build again"
    elif code == 2056:
        kind = FailureKind.CREDIT
        help = "the plan's usage limit is reached: build again in its next 5-hour window"
    elif code in POLICY:
        kind = FailureKind.POLICY
        help = _policy_help(code)
    elif code in SERVER:
        kind, unbilled = FailureKind.TRANSIENT, True
    elif code == 1001:
        kind = FailureKind.TRANSIENT  # timed out: the task may exist behind it
    elif code in INVALID:
        kind = FailureKind.INVALID
        help = ("the request is not one MiniMax takes: check `model`, `resolution` and "
                "`durations`")
    return ServiceError(kind, f"cannot {doing}: {said}" + (f"; {help}" if help else ""),
                        retry_after=retry_after(headers or {}), unbilled=unbilled)


def _policy_help(code: int) -> str:
    what = "the prompt or a frame" if code == 1026 else "the video it made"
    return (f"MiniMax's safety check refused {what}: reword the shot's prompt or change its "
            f"keyframe, or make this clip with another backend")


def classify_http(r: Response, doing: str) -> ServiceError:
    """A non-2xx answer (a gateway's, usually): by its status."""
    status = r.status
    # A throttle or a server error made nothing; a gateway that gave up (502, 504) may have
    # left a task behind it.
    unbilled = status == 429 or (status >= 500 and status not in (502, 504))
    if status in (401, 403):
        return r.error(doing, "the API key was refused: check that the environment variable "
                              "named by `api_key_env` holds a current key", kind=FailureKind.AUTH)
    return r.error(doing, kind=kind_of_status(status), unbilled=unbilled)


def task_failure(answer: Mapping[str, Any], task: str) -> ServiceError:
    """A task whose status is `Fail`: refused content, or another reason."""
    code, message = _base_resp(answer)
    detail = str(answer.get("error_message") or "").strip()
    reason = ", ".join(x for x in (f"{code}" if code else "", message if code else "",
                                   detail) if x) or "no reason given"
    head = f"MiniMax task `{task}` failed ({reason})"
    if code in POLICY:
        return ServiceError(FailureKind.POLICY, f"{head}; {_policy_help(code)}")
    return ServiceError(FailureKind.FAILED, f"{head}; build again to submit it anew")


# -- settings ------------------------------------------------------------------------------


def base_url(settings: Mapping[str, Any]) -> str:
    return service_url(settings, REGIONS, DEFAULT_REGION)


def takes_last_frame(settings: Mapping[str, Any]) -> bool:
    given = settings.get("last_frame")
    if isinstance(given, bool):
        return given
    return str(settings.get("model") or DEFAULT_MODEL) in LAST_FRAME_MODELS


def durations(settings: Mapping[str, Any]) -> tuple[int, ...]:
    """The clip lengths it makes: `durations`, else 6 s, and 10 s below 1080P (Hailuo 02 and
    2.3; the older models make 6 s only: set `durations = [6]`)."""
    return seconds(settings.get("durations")) or (
        (6,) if settings.get("resolution") in ("720P", "1080P") else (6, 10))


def _check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problem = Problems()
    problem.strings(settings, ("model", "base_url"))
    problem.region(settings, REGIONS, "a MiniMax region")
    problem.one_of(settings, "resolution", RESOLUTIONS, "MiniMax")
    problem.durations(settings, "the lengths your model makes, e.g. `durations = [6, 10]`")
    problem.flags(settings, ("last_frame", "prompt_optimizer", "fast_pretreatment",
                             "aigc_watermark"))
    if settings.get("last_frame") is True and str(settings.get("model") or DEFAULT_MODEL) \
            not in LAST_FRAME_MODELS:
        problem("last_frame", f"MiniMax documents a last frame for "
                f"{', '.join(f'`{m}`' for m in sorted(LAST_FRAME_MODELS))} only",
                "it may refuse the clips that end on the next shot", warning=True)
    problem.near_misses(settings, KNOWN, "minimax")
    return problem
