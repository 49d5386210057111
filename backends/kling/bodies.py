"""What filmc asks Kling for, as request bodies: the route each step takes and its fields.

    clip with a last frame, or with no reference   → videos/image2video
        image (the first frame), image_tail (the last, in `pro` mode), prompt,
        negative_prompt, mode, duration "5" | "10", cfg_scale
    clip with character references                 → videos/multi-image2video
        image_list: the first frame, then the characters' sheets (at most 4)
    sheet, plate, keyframe without references      → images/generations
        prompt, negative_prompt, aspect_ratio, resolution
    sheet, plate, keyframe with references         → images/multi-image2image
        subject_image_list: the characters' sheets and the user's own images (at
        most 4); scene_image: the location plate

Images go inline as raw base64 (no `data:` prefix), as Kling takes them: PNG or
JPEG, at least 300 px a side, at most 10 MB, between 1:2.5 and 2.5:1.  A smaller
image is scaled up, another format converted to PNG; one of another shape is
refused before anything is sent (Kling would refuse it too).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from ...lang.steps import CHARACTER, FIRST_FRAME, LAST_FRAME, LOCATION, REFERENCE
from ..fit import aspect_ratio, clip_length
from ..inputs import enlarged
from ..protocol import FailureKind, Input, Request, ServiceError

CLIP_ROUTE = "videos/image2video"
MULTI_CLIP_ROUTE = "videos/multi-image2video"
IMAGE_ROUTE = "images/generations"
MULTI_IMAGE_ROUTE = "images/multi-image2image"
IMAGE_KINDS = ("sheet", "plate", "keyframe")

DURATIONS = (5, 10)  # seconds, sent as the strings "5" and "10"
MAX_REFERENCES = 4  # image_list, subject_image_list
IMAGE_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")
MULTI_CLIP_RATIOS = ("16:9", "9:16", "1:1")
MAX_TEXT = 2500  # characters of a prompt or a negative prompt
MIN_SIDE = 300
MAX_BYTES = 10 * 1024 * 1024
MAX_RATIO = 2.5


def route_for(request: Request) -> str:
    refs = references(request)
    if request.kind == "clip":
        return MULTI_CLIP_ROUTE if refs and not request.of(LAST_FRAME) else CLIP_ROUTE
    return MULTI_IMAGE_ROUTE if refs or request.of(LOCATION) else IMAGE_ROUTE


def references(request: Request) -> tuple[Input, ...]:
    """The subject images: the cast's sheets, then the user's own images."""
    return request.of(CHARACTER) + request.of(REFERENCE)


def clip_seconds(duration: Fraction | None) -> int:
    """The length to ask for: the shortest that covers the shot, else 10 s (the shot step
    cuts a longer clip, and holds the last frame of a shorter one)."""
    return int(clip_length(duration or Fraction(DURATIONS[0]), DURATIONS))


def body(request: Request, route: str, external: str, settings: Mapping[str, Any],
         models: Mapping[str, str]) -> dict[str, Any]:
    """The JSON body of one submission (reads and encodes the input images: run it off the
    event loop)."""
    f = request.fields
    doing = f"make `{request.step}` at Kling"
    out: dict[str, Any] = {"model_name": models[route]}
    prompt = _text(f.prompt, "prompt", doing)
    negative = _text(f.negative, "negative prompt", doing)
    if route == CLIP_ROUTE:
        first, last = request.of(FIRST_FRAME), request.of(LAST_FRAME)
        if not first:
            raise ServiceError(FailureKind.INVALID, f"cannot {doing}: Kling makes clips from a "
                               f"first frame, and this clip has none")
        out["image"] = encode(first[0], doing)
        if last and settings.get("mode") == "pro":  # std mode makes no first-to-last clips
            out["image_tail"] = encode(last[0], doing)
    elif route == MULTI_CLIP_ROUTE:
        images = request.of(FIRST_FRAME)[:1] + references(request)
        out["image_list"] = [{"image": encode(i, doing)} for i in _at_most(images)]
        out["aspect_ratio"] = _ratio(request, MULTI_CLIP_RATIOS)
    elif route == MULTI_IMAGE_ROUTE:
        subjects = references(request) or request.of(LOCATION)[:1]
        out["subject_image_list"] = [{"subject_image": encode(i, doing)}
                                     for i in _at_most(subjects)]
        if references(request) and request.of(LOCATION):
            out["scene_image"] = encode(request.of(LOCATION)[0], doing)
    if prompt or route != CLIP_ROUTE:
        out["prompt"] = prompt
    if negative and route != MULTI_IMAGE_ROUTE:  # the multi-image route takes none
        out["negative_prompt"] = negative
    if request.kind == "clip":
        out["duration"] = str(clip_seconds(f.duration))
        for name in ("mode", "cfg_scale"):
            if name in settings and not (name == "cfg_scale" and route == MULTI_CLIP_ROUTE):
                out[name] = settings[name]
    else:
        out["n"] = 1
        out["aspect_ratio"] = _ratio(request, IMAGE_RATIOS)
        if "resolution" in settings and route == IMAGE_ROUTE:
            out["resolution"] = settings["resolution"]
    out["external_task_id"] = external
    return out


def _text(value: str, what: str, doing: str) -> str:
    if len(value) > MAX_TEXT:
        raise ServiceError(FailureKind.INVALID, f"cannot {doing}: its {what} has {len(value)} "
                           f"characters and Kling takes at most {MAX_TEXT}; shorten the shot's "
                           f"action, style or negative words")
    return value


def _at_most(images: Sequence[Input]) -> Sequence[Input]:
    """The first four images: `filmc plan` warns about more (capabilities)."""
    return images[:MAX_REFERENCES]


def _ratio(request: Request, allowed: Sequence[str]) -> str:
    w, h = request.fields.width, request.fields.height
    return aspect_ratio(w, h, allowed) if w and h else allowed[0]


def encode(image: Input, doing: str) -> str:
    """An input image as Kling takes it: raw base64 of a PNG or JPEG of the right size."""
    return base64.b64encode(sendable(image, doing)).decode("ascii")


def sendable(image: Input, doing: str) -> bytes:
    from PIL import Image, UnidentifiedImageError

    try:
        raw = image.path.read_bytes()
    except OSError as e:
        raise ServiceError(FailureKind.INVALID, f"cannot {doing}: cannot read `{image.path}` "
                           f"(from `{image.step}`): {e.strerror}") from None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            w, h, fmt = img.width, img.height, img.format
            if max(w, h) / max(1, min(w, h)) > MAX_RATIO:
                raise ServiceError(FailureKind.INVALID,
                                   f"cannot {doing}: `{image.step}` is {w}x{h}, and Kling takes "
                                   f"images from 1:2.5 to 2.5:1 only; give this step another "
                                   f"backend")
            if fmt in ("PNG", "JPEG") and min(w, h) >= MIN_SIDE and len(raw) <= MAX_BYTES:
                return raw
            picture = enlarged(img, MIN_SIDE, round)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ServiceError(FailureKind.INVALID, f"cannot {doing}: `{image.step}` is not an "
                           f"image Kling can take ({e})") from None
    out = io.BytesIO()
    picture.save(out, "PNG")
    if out.tell() > MAX_BYTES:  # a huge frame: JPEG keeps it under Kling's 10 MB
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=92)
    return out.getvalue()
