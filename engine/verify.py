"""What a step made, checked before it enters the store.

Every step kind declares its outputs (lang/steps.py).  A backend returns its
files by output name; `collect` checks that every declared output is there
(one file, or at least one for `many` outputs such as storyboard pages), that
nothing undeclared came back and nothing was left behind in the work folder
(a page a renderer wrote beside its output would otherwise be lost).

`check_media` then opens each file a service sent as a person would: an image
must decode and have a size, a video or a sound must have a stream of that
kind and a length, a text must be UTF-8.  A service that answers "succeeded"
with a truncated PNG or an HTML error page must not put it in the store: the
step fails and says so.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..backends.protocol import BackendError
from ..lang.steps import Output

_STREAM = {"video": re.compile(r"Stream #\S+: Video: "), "audio": re.compile(r"Stream #\S+: Audio: ")}
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


def collect(declared: Sequence[Output], got: Mapping[str, Path | Sequence[Path]],
            workdir: Path) -> list[tuple[Output, Path]]:
    """The files of each declared output, in declared order; BackendError when what came
    back does not match the declaration."""
    names = {o.name for o in declared}
    extra = sorted(set(got) - names)
    if extra:
        raise BackendError(f"the backend returned outputs this step does not make: "
                           f"{', '.join(extra)} (it makes {', '.join(sorted(names))})")
    out: list[tuple[Output, Path]] = []
    for o in declared:
        value = got.get(o.name)
        files = [Path(value)] if isinstance(value, (str, os.PathLike)) else \
            [Path(v) for v in (value or ())]
        if not files:
            raise BackendError(f"the backend returned no `{o.name}`")
        if len(files) > 1 and not o.many:
            raise BackendError(f"the backend returned {len(files)} files for `{o.name}`, "
                               f"which is one file")
        for f in files:
            try:
                if f.stat().st_size == 0 and not o.empty:
                    raise BackendError(f"the backend's `{o.name}` is an empty file")
            except FileNotFoundError:
                raise BackendError(f"the backend's `{o.name}` file `{f.name}` does not "
                                   f"exist") from None
            out.append((o, f))
    kept = {f.name for _o, f in out if f.parent == workdir} | {"in"}
    left = sorted(name for name in os.listdir(workdir) if name not in kept)
    if left:
        raise BackendError(f"the backend left files it did not declare: {', '.join(left)}")
    return out


def check_media(output: Output, path: Path) -> None:
    """Raise BackendError when `path` is not a readable file of `output`'s media type."""
    what = f"`{output.name}` ({output.media})"
    if output.media == "image":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                w, h = img.size
                if img.format == "PNG":
                    img.verify()  # every chunk's CRC: a truncated or altered file fails
                else:
                    img.draft("RGB", (64, 64))  # JPEG: decode at a fraction of the size
                    img.load()
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise BackendError(f"the service sent an image that does not decode ({e})") from None
        if not (w and h):
            raise BackendError(f"the service sent an empty image ({w}x{h})")
    elif output.media in ("video", "audio"):
        seconds = _stream_seconds(path, output.media)
        if seconds is None:
            raise BackendError(f"the service sent a file with no {output.media} in it as {what}")
        if seconds <= 0:
            raise BackendError(f"the service sent {what} with no length")
    elif output.media == "text":
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise BackendError(f"the service sent {what} that is not UTF-8 text") from None


def _stream_seconds(path: Path, media: str) -> float | None:
    """The length of a media file if it has a stream of `media`, read from ffmpeg's
    description of it and one pass over its packets (no decoding)."""
    from ..backends.ffmpeg import ffmpeg_exe

    try:
        proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path),
                               "-map", f"0:{media[0]}:0", "-c", "copy", "-f", "null", "-"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=300)
    except subprocess.TimeoutExpired:
        raise BackendError(f"reading the {media} the service sent took over 5 minutes") from None
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0 or not _STREAM[media].search(err):
        return None
    m = _DURATION.search(err)
    if m is None:
        return None
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])


_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"),
          (b"\x1a\x45\xdf\xa3", ".webm"), (b"RIFF", ".wav"), (b"ID3", ".mp3"))


def sniff_ext(path: Path) -> str:
    """A file name extension for an object, from its first bytes (an object is named by
    its digest alone); "" when nothing is recognised."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head[4:8] == b"ftyp":
        return ".mov" if head[8:10] == b"qt" else ".mp4"
    return next((ext for magic, ext in _MAGIC if head.startswith(magic)), "")
