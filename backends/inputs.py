"""What a step sends a service besides its words: its reference images in the order its
prompt describes them, each image in a format and at a size the service takes, and a
seed when the shot names none.

    refs = references(request)              # characters, then the location, then the user's
    prompt = describe(refs) + fields.prompt  # "Image 1 shows CHEN (winter outfit). ..."
    body, media = as_sent(path.read_bytes())         # PNG, JPEG, WebP as they are; else PNG
    url = image_url(item, doing, min_side=300, ratios=(0.4, 2.5), service="MiniMax")

A model sees pictures in order, not the names filmc gives them, so the prompt
opens by saying what each one shows.  An image a service would refuse for its
shape is refused here, before anything is sent (and paid); one smaller than a
service takes is scaled up (the service would scale it anyway, or refuse it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import math
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..lang.steps import CHARACTER, LOCATION, REFERENCE
from .protocol import FailureKind, Input, Request, ServiceError
from .results import IMAGES, PNG, Media, image_type, sniff

if TYPE_CHECKING:
    from PIL import Image

T = TypeVar("T")


def references(request: Request) -> tuple[Input, ...]:
    """The images a model is shown, in the order its prompt describes them."""
    return request.of(CHARACTER) + request.of(LOCATION) + request.of(REFERENCE)


def describe(refs: Sequence[Input], end: str = "\n\n") -> str:
    """What each reference image shows, as the prompt's opening sentences."""
    said = []
    for i, ref in enumerate(refs, 1):
        t = ref.tags
        if ref.role == CHARACTER and t.character:
            said.append(f"Image {i} shows {t.character}"
                        + (f" ({t.outfit} outfit)." if t.outfit else "."))
        elif ref.role == LOCATION and t.location:
            said.append(f"Image {i} shows the location {t.location}"
                        + (f" ({t.time})." if t.time else "."))
        else:
            subject = t.character or t.location
            said.append(f"Image {i} is a reference image" + (f" of {subject}." if subject else "."))
    return " ".join(said) + end if said else ""


def key_seed(key: str) -> int:
    """A seed from the step's key: the same step, the same picture; each take its own."""
    try:
        return int(key[:8], 16)
    except ValueError:
        return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def data_url(body: bytes, mime: str) -> str:
    """A file inline: `data:image/png;base64,...`."""
    return f"data:{mime};base64,{base64.b64encode(body).decode()}"


def as_sent(body: bytes, rgb: bool = False) -> tuple[bytes, Media]:
    """An image as services take it: PNG, JPEG or WebP as it is, anything else converted
    to PNG (its colours as RGB with `rgb`)."""
    found = sniff(body)
    if found is not None and found.ext in IMAGES:
        return body, found
    from PIL import Image

    out = io.BytesIO()
    with Image.open(io.BytesIO(body)) as img:
        (img.convert("RGB") if rgb else img).save(out, "PNG")
    return out.getvalue(), PNG


def enlarged(img: Image.Image, min_side: int,
             rounding: Callable[[float], int] = math.ceil) -> Image.Image:
    """`img` in RGB, scaled up (never down) until its short side is `min_side`."""
    from PIL import Image

    w, h = img.size
    scale = max(1.0, min_side / min(w, h))
    return img.convert("RGB").resize((rounding(w * scale), rounding(h * scale)),
                                     Image.Resampling.LANCZOS)


def image_url(item: Input, doing: str, min_side: int = 0,
              ratios: tuple[float, float] | None = None, service: str = "") -> str:
    """An input image as a base64 data URL: PNG, JPEG or WebP as they are; another format,
    or an image with a side under `min_side`, as a PNG (scaled up to it).  An image whose
    width / height is outside `ratios` is refused before anything is sent."""
    from PIL import Image

    try:
        body = item.path.read_bytes()
        with Image.open(io.BytesIO(body)) as img:
            w, h = img.size
            if ratios is not None and not ratios[0] <= w / h <= ratios[1]:
                raise ServiceError(
                    FailureKind.INVALID,
                    f"cannot {doing}: its {item.role.replace('_', ' ')} is {w}x{h} "
                    f"({w / h:.2f}:1), and {service} takes images from 2:5 to 5:2; "
                    f"make this step with another backend, or frame the film nearer 16:9",
                    unbilled=True)
            kind = image_type(body)
            if kind is None or min(w, h) < min_side:
                out = io.BytesIO()
                enlarged(img, min_side).save(out, "PNG")
                body, kind = out.getvalue(), "png"
    except ServiceError:
        raise
    except OSError as e:
        raise ServiceError(FailureKind.INVALID, f"cannot {doing}: cannot read the image "
                           f"`{item.path.name}` (from `{item.step}`): {e}", unbilled=True) from None
    return data_url(body, f"image/{kind}")


class Once:
    """Uploads shared by the steps of one build that send the same image: the first step
    to need one starts it, the others wait for it."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[Any]] = {}

    async def once(self, digest: str, upload: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """`upload()` of the image whose content is `digest`, unless one is under way."""
        task = self._running.get(digest)
        if task is None:
            task = asyncio.get_running_loop().create_task(upload())
            self._running[digest] = task
            task.add_done_callback(lambda _: self._running.pop(digest, None))
        got: T = await asyncio.shield(task)
        return got

    def cancel(self) -> None:
        for task in self._running.values():
            task.cancel()
