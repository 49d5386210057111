"""The `veo` backend: clips from Google's Veo on the Gemini API, from the shot's keyframe
(and, where the shot says `last_frame next`, ending on the next shot's).

    [backends.veo]
    type = "veo"
    api_key_env = "GEMINI_API_KEY"
    model = "veo-3.1-generate-preview"

A clip is a long-running operation at the service:

    submit  POST {base_url}/models/{model}:predictLongRunning
            {"instances": [{"prompt", "image", "lastFrame"?, "referenceImages"?}],
             "parameters": {"aspectRatio", "durationSeconds", "negativePrompt"?, …}}
            → {"name": "models/{model}/operations/{id}"}: the handle, journaled
    poll    GET {base_url}/{name} → {"name"} while it runs, then {"done": true, and
            "response": {"generateVideoResponse": {"generatedSamples": [{"video": {"uri"}}]}}
            or "error": {"code", "message"}}
    fetch   GET the video's `uri`, with the key (to the API's own host only)

Images go inline, base64 (`bytesBase64Encoded` and `mimeType`).  Veo makes clips of
4, 6 or 8 s (8 s only at 1080p and 4k, and with reference images), 16:9 or 9:16, at
24 fps: a shot is generated at the shortest length that covers it
(`backends.fit.clip_length`: a 5 s shot at 6 s) in the ratio nearest the film's, and
the shot step cuts and fits it to the shot.  The Gemini API takes no seed (Vertex AI
does); a negative prompt goes as `negativePrompt`.  Reference images (at most 3, as
`referenceImages` of `referenceType: "asset"`) go with a clip step that carries
character or location images; such a clip is made at 8 s, the only length Veo makes
with them.

The service chooses the operation's name, so a submit whose answer was lost cannot be
asked about: the engine does not send it again.  A refusal comes back as a finished
operation: an `error` whose message gives "support codes", or a response whose videos
the safety filters removed (`raiMediaFilteredCount`, `raiMediaFilteredReasons`); both
fail the shot as a policy refusal.  Errors of the API itself are read by
google.classify (the two Google adapters share it).  Veo keeps a finished
operation and its video for two days: a build re-attaching later than that finds
neither, and the step is made anew.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..lang.steps import FIRST_FRAME, LAST_FRAME, Fields
from .fit import aspect_ratio, clip_length
from .google import POLICY_WORDS, GeminiAPI, check_common, classify, redact, sendable
from .http import Http, where
from .inputs import references
from .protocol import (
    Adapter,
    Capabilities,
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
from .results import downloaded, keep_mp4
from .settings import ENGINE

DURATIONS = (4, 6, 8)
LONG_ONLY = ("1080p", "4k")  # resolutions Veo makes at 8 s only
RATIOS = ("16:9", "9:16")
RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}
PERSON_GENERATION = ("allow_all", "allow_adult", "dont_allow")
MAX_REFERENCES = 3
WITH_REFERENCES = 8  # the one length Veo makes with reference images
SETTINGS = ("model", "base_url", "aspect_ratio", "resolution", "person_generation", *ENGINE)
REQUEST_TIMEOUT = 300.0  # seconds one request may take (a download of a long 4k clip)
KEYED = frozenset({"model", "aspect_ratio", "resolution", "person_generation"})
# An operation's name: a path under the API (`models/veo-…/operations/…`), nothing else.
_OPERATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9._\-]+)+")
_GRPC = {3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 7: "PERMISSION_DENIED",
         8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 13: "INTERNAL", 14: "UNAVAILABLE"}


class Veo(Adapter):
    """Veo on the Gemini API: image-to-video clips, as long-running operations."""

    type = "veo"
    version = "1"
    runs_here = False
    secrets = ("api_key",)
    kinds = ("clip",)

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        # Not `timeout_s`: that is how long the whole job may take (engine/retry.py).
        self.http = Http(setup.name, timeout=REQUEST_TIMEOUT)
        self.api = GeminiAPI(setup, self.http)

    # -- what the class declares ----------------------------------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any], root: Path) -> Capabilities | None:
        if kind != "clip":
            return None
        ratios = (settings["aspect_ratio"],) if settings.get("aspect_ratio") in RATIOS else RATIOS
        w, h = RESOLUTIONS.get(str(settings.get("resolution") or "720p"), RESOLUTIONS["720p"])
        sizes = tuple((w, h) if r == "16:9" else (h, w) for r in ratios)
        return Capabilities(seed=False, negative=True, references=MAX_REFERENCES,
                            first_frame=True, last_frame=True,
                            durations=tuple(Fraction(d) for d in durations(settings)),
                            sizes=sizes, aspect_ratios=ratios)

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        fields = {"prompt", "negative", "duration", "take"}
        if not settings.get("aspect_ratio"):
            fields |= {"width", "height"}  # they choose the ratio
        return frozenset(fields)

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        return {k: v for k, v in settings.items() if k in KEYED}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return _check(settings)

    # -- one build ------------------------------------------------------------------------

    async def submit(self, request: Request, handle: Handle | None) -> Handle:
        if request.kind != "clip":
            raise ServiceError(FailureKind.INVALID, f"the `{self.type}` adapter cannot make "
                                                    f"`{request.kind}` steps")
        doing = f"make the clip `{request.step}`"
        body = await asyncio.to_thread(self.body, request, doing)
        model = str(self.settings.get("model") or "")
        r = await self.api.call("POST", f"models/{model}:predictLongRunning", doing, json=body)
        answer = r.json()
        name = answer.get("name") if isinstance(answer, dict) else None
        if not isinstance(name, str) or not _OPERATION.fullmatch(name) or ".." in name:
            # Accepted, perhaps billed, but with nothing to follow: say so, do not resend.
            raise ServiceError(FailureKind.FAILED,
                               f"cannot {doing}: {where(r.url)} accepted the clip but named no "
                               f"operation to follow (it answered {str(answer)[:200]})")
        seconds = body["parameters"]["durationSeconds"]
        return Handle(name, {"base": self.api.base_url, "seconds": seconds})

    def body(self, request: Request, doing: str) -> dict[str, Any]:
        """The predictLongRunning request for a clip step (reads its images)."""
        f = request.fields
        first, last, refs = request.of(FIRST_FRAME), request.of(LAST_FRAME), references(request)
        if len(refs) > MAX_REFERENCES:
            raise ServiceError(FailureKind.INVALID,
                               f"cannot {doing}: it has {len(refs)} reference images and Veo "
                               f"takes at most {MAX_REFERENCES}; cast fewer characters, or make "
                               f"this clip with another backend")
        if last and not first:
            raise ServiceError(FailureKind.INVALID, f"cannot {doing}: Veo ends a clip on a last "
                                                    f"frame only when it starts from a first one")
        instance: dict[str, Any] = {"prompt": f.prompt}
        if first:
            instance["image"] = _image(first[0])
        if last:
            instance["lastFrame"] = _image(last[0])
        if refs:
            instance["referenceImages"] = [{"image": _image(ref), "referenceType": "asset"}
                                           for ref in refs]
        seconds = WITH_REFERENCES if refs else length(self.settings, f)
        parameters: dict[str, Any] = {"aspectRatio": ratio_for(self.settings, f),
                                      "durationSeconds": seconds}
        if f.negative:
            parameters["negativePrompt"] = f.negative
        if self.settings.get("resolution"):
            parameters["resolution"] = str(self.settings["resolution"])
        if self.settings.get("person_generation"):
            parameters["personGeneration"] = str(self.settings["person_generation"])
        return {"instances": [instance], "parameters": parameters}

    async def poll(self, handle: Handle) -> Pending | Done:
        doing = f"follow Veo's operation `{handle.id}`"
        try:
            r = await self.api.call("GET", handle.id, doing,
                                    base=str(handle.data.get("base") or self.api.base_url))
        except ServiceError as e:
            if e.status == 404:
                raise ServiceError(FailureKind.NOT_FOUND,
                                   f"cannot {doing}: Veo does not know it (it keeps an operation "
                                   f"for two days, and `base_url` may have moved)",
                                   status=404) from None
            raise
        op = r.json()
        op = op if isinstance(op, dict) else {}
        if not op.get("done"):
            return Pending("running")
        if isinstance(op.get("error"), dict):
            raise operation_error(op["error"], handle.id)
        response = op.get("response")
        made = response.get("generateVideoResponse") if isinstance(response, dict) else None
        made = made if isinstance(made, dict) else {}
        uri = _first_uri(made.get("generatedSamples"))
        if uri is None:
            reasons = made.get("raiMediaFilteredReasons")
            said = "; ".join(str(x) for x in reasons) if isinstance(reasons, list) else ""
            if said or made.get("raiMediaFilteredCount"):
                raise ServiceError(FailureKind.POLICY,
                                   f"Veo's safety filters removed the clip of operation "
                                   f"`{handle.id}`" + (f": {said}" if said else "")
                                   + "; reword the shot's prompt or change its keyframe, or "
                                     "make this clip with another backend")
            raise ServiceError(FailureKind.FAILED, f"Veo's operation `{handle.id}` finished "
                                                   f"without a video; `filmc build` submits the "
                                                   f"clip anew when you choose to")
        return Done({"video": {"uri": uri, "seconds": handle.data.get("seconds"),
                               "base": handle.data.get("base")}},
                    note=f"Veo operation {handle.id}")

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        place = done.outputs["video"]
        uri = str(place["uri"]) if isinstance(place, Mapping) else str(place)
        base = place.get("base") if isinstance(place, Mapping) else None
        doing = f"download the clip of `{request.step}`"
        r = await self.api.download(uri, doing, base=str(base) if base else None)
        downloaded(r, doing, "the video is gone (Veo keeps it for two days); the clip must be "
                             "made again", refused=lambda r: redact(classify(r, doing),
                                                                    self.api.key()))
        name = request.outputs[0].name
        return {name: await asyncio.to_thread(keep_mp4, r.body, request.workdir / name,
                                              where(r.url), doing)}

    async def close(self) -> None:
        await self.http.close()


# -- requests and answers, as data --------------------------------------------------------


def durations(settings: Mapping[str, Any]) -> tuple[int, ...]:
    """The clip lengths Veo makes at the configured resolution."""
    return (8,) if settings.get("resolution") in LONG_ONLY else DURATIONS


def length(settings: Mapping[str, Any], f: Fields) -> int:
    """The length to ask for: the shortest Veo makes that covers the shot."""
    if f.duration is None:
        return max(durations(settings))
    return int(clip_length(f.duration, durations(settings)))


def ratio_for(settings: Mapping[str, Any], f: Fields) -> str:
    if settings.get("aspect_ratio"):
        return str(settings["aspect_ratio"])
    if not f.width or not f.height:
        return RATIOS[0]
    return aspect_ratio(f.width, f.height, RATIOS)


def operation_error(error: Mapping[str, Any], name: str) -> ServiceError:
    """What a finished operation's `error` (a google.rpc.Status) means for the step."""
    message = " ".join(str(error.get("message") or "no reason given").split())
    code = error.get("code")
    word = _GRPC.get(code, str(code)) if isinstance(code, int) else str(code or "")
    said = f"{message}" + (f" ({word})" if word else "")
    if POLICY_WORDS.search(message):
        return ServiceError(FailureKind.POLICY, f"Veo refused the clip (operation `{name}`): "
                                                f"{said}; reword the shot's prompt or change "
                                                f"its keyframe, or make this clip with another "
                                                f"backend")
    said = f"Veo's operation `{name}` failed: {said}"
    if word == "INVALID_ARGUMENT":
        return ServiceError(FailureKind.INVALID, said)
    return ServiceError(FailureKind.FAILED, said + "; `filmc build` submits the clip anew "
                                                   "when you choose to")


def _first_uri(samples: Any) -> str | None:
    for sample in samples if isinstance(samples, list) else []:
        video = sample.get("video") if isinstance(sample, dict) else None
        if isinstance(video, dict) and isinstance(video.get("uri"), str) and video["uri"]:
            return str(video["uri"])
    return None


def _image(item: Input) -> dict[str, str]:
    body, mime = sendable(item)
    return {"bytesBase64Encoded": base64.b64encode(body).decode(), "mimeType": mime}


# -- settings -----------------------------------------------------------------------------


def _check(settings: Mapping[str, Any]) -> list[SettingProblem]:
    problem = check_common(settings, "veo", "veo-3.1-generate-preview")

    def choice(name: str, allowed: Sequence[str], help: str) -> None:
        value = settings.get(name)
        if value is not None and value not in allowed:
            listed = ", ".join(f"`{a}`" for a in allowed)
            problem(name, f"`{name}` must be one of {listed}, not `{value}`", help)

    choice("aspect_ratio", RATIOS, "leave it out to take the one nearest the film's frame")
    choice("resolution", tuple(RESOLUTIONS), "720p is the service's default; 1080p and 4k "
                                             "make 8 s clips only")
    choice("person_generation", PERSON_GENERATION,
           "Veo takes `allow_adult` for clips made from an image; leave it out for the "
           "service's default")
    problem.near_misses(settings, SETTINGS, "veo")
    return problem
