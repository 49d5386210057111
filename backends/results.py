"""The files a service sends back: what they are, checked by their first bytes, and kept
under their real extension in the step's work folder.

    r = downloaded(await http.request("GET", url), doing, "the URL lives an hour: ...")
    path = keep_image(r.body, request.workdir / name, where(url), doing)   # → name.png
    path = keep_mp4(r.body, request.workdir / name, where(url), doing)     # → name.mp4
    path = keep_as(r.body, request.workdir / name, where(url), doing, VIDEOS, "a video")

An answer that a result's URL is gone (403, 404 or 410 from a signed storage URL)
is `EXPIRED`: the engine asks the service for the job again, for a fresh link.
A file is checked before it is kept, so that a service's HTML error page never
reaches the store under a video's name; the engine then decodes it in full.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import attrs

from .http import Response
from .protocol import FailureKind, ServiceError

GONE = (403, 404, 410)  # what a storage host answers for a URL that has expired


@attrs.frozen
class Media:
    media: str  # image | video
    ext: str
    mime: str


PNG = Media("image", "png", "image/png")
# What `keep_as` keeps, by what `sniff` finds: the extension each is kept under.
IMAGES = {"png": "png", "jpg": "jpg", "webp": "webp"}
VIDEOS = {"mp4": "mp4", "mov": "mp4", "webm": "webm"}


def sniff(body: bytes) -> Media | None:
    """What a file is, from its first bytes: the formats services take and make."""
    head = body[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return Media("image", "jpg", "image/jpeg")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Media("image", "webp", "image/webp")
    if head[4:8] == b"ftyp":
        return Media("video", "mov", "video/quicktime") if head[8:10] == b"qt" \
            else Media("video", "mp4", "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Media("video", "webm", "video/webm")
    if head.startswith(b"GIF8"):
        return Media("image", "gif", "image/gif")
    return None


def image_type(body: bytes) -> str | None:
    """`png`, `jpeg` or `webp`, the formats every image service takes; None for another."""
    found = sniff(body)
    return found.mime.removeprefix("image/") if found and found.ext in IMAGES else None


def downloaded(r: Response, doing: str, expired: str, gone: Collection[int] = GONE,
               refused: Callable[[Response], ServiceError] | None = None) -> Response:
    """`r` when a result's download succeeded, else the failure it means: an answer in
    `gone` says the result's URL has expired (`expired` says what happens now); another
    is said by `refused` (by its status where there is none)."""
    if r.status in gone:
        raise r.error(doing, expired, kind=FailureKind.EXPIRED)
    if not r.ok:
        raise refused(r) if refused is not None else r.error(doing)
    return r


def keep_image(body: bytes, stem: Path, source: str, doing: str) -> Path:
    """Write an image the service sent under its real extension, once it decodes."""
    from PIL import Image

    ext = image_type(body)
    try:
        if ext is None:
            raise ValueError("not PNG, JPEG or WebP")
        with Image.open(io.BytesIO(body)) as img:
            img.verify()
    except Exception:
        raise ServiceError(FailureKind.FAILED, f"cannot {doing}: {source} sent an image that "
                           f"does not decode ({len(body)} bytes)") from None
    return _write(body, stem, "jpg" if ext == "jpeg" else ext)


def keep_mp4(body: bytes, stem: Path, source: str, doing: str,
             status: int | None = None) -> Path:
    """Write a video the service sent as `STEM.mp4`, once its first bytes say it is one."""
    if len(body) < 12 or body[4:8] != b"ftyp":
        raise ServiceError(FailureKind.FAILED, f"cannot {doing}: {source} sent a file that is "
                                               f"not an MP4 video ({len(body)} bytes)",
                           status=status)
    return _write(body, stem, "mp4")


def keep_as(body: bytes, stem: Path, source: str, doing: str, kept: Mapping[str, str],
            what: str) -> Path:
    """Write a file under the extension `kept` gives what its first bytes say it is
    (`IMAGES`, `VIDEOS`); a file of another kind is not `what` the step makes."""
    found = sniff(body)
    ext = kept.get(found.ext) if found is not None else None
    if ext is None:
        raise ServiceError(FailureKind.FAILED, f"cannot {doing}: {source} sent {len(body)} "
                                               f"bytes that are not {what}")
    return _write(body, stem, ext)


def _write(body: bytes, stem: Path, ext: str) -> Path:
    path = stem.with_name(f"{stem.name}.{ext}")
    path.write_bytes(body)
    return path
