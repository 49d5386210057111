"""Find ffmpeg and run it, for any backend's media work and for checking results.

Which ffmpeg runs, first match wins:

1. `FILMC_FFMPEG` in the environment: the path of an ffmpeg binary, used as it is;
2. an `ffmpeg` on `PATH` whose version is at least 6.0 (older ones lack options
   the media steps use, such as `-fps_mode`);
3. the ffmpeg that the `imageio-ffmpeg` package ships (a static build with
   libx264, installed with filmc, so no system ffmpeg is needed).

Every run adds `-nostdin -hide_banner -loglevel error`; a run that fails raises
`MediaError` carrying the end of the command and the end of ffmpeg's own message.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from fractions import Fraction

ENV = "FILMC_FFMPEG"
# Run in each ffmpeg child before it starts: the local backend's workers, which are
# single-threaded, set it so that an ffmpeg dies with the worker that started it.
PREEXEC: Callable[[], None] | None = None
MIN_SYSTEM_VERSION = (6, 0)
_VERSION = re.compile(r"ffmpeg version n?(\d+)\.(\d+)")


class MediaError(Exception):
    """A media step failed: `message` for people, `command_tail` with ffmpeg's own words."""

    def __init__(self, message: str, command_tail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.command_tail = command_tail

    def __str__(self) -> str:
        return f"{self.message}\n{self.command_tail}" if self.command_tail else self.message


def version_of(exe: str) -> tuple[int, int] | None:
    """`(major, minor)` of the ffmpeg at `exe`, or None if it does not run or says no number."""
    m = _VERSION.search(version_line(exe))
    return (int(m.group(1)), int(m.group(2))) if m else None


def version_line(exe: str) -> str:
    """The first line of `exe -version` ("unknown" when it says nothing, "none (why)" when
    it does not run), remembered while the binary is the same file (backends/facts.py):
    running the static ffmpeg takes a few tenths of a second, on every command."""
    from .facts import remembered

    def ask() -> str:
        try:
            out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True,
                                 text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as e:
            return f"none ({e})"
        return out.stdout.splitlines()[0].strip() if out.stdout.strip() else "unknown"

    return remembered(f"ffmpeg-version {exe}", [shutil.which(exe) or exe], ask)


@functools.cache
def ffmpeg_exe() -> str:
    """The ffmpeg binary the media steps run (see the module docstring for the order)."""
    chosen = os.environ.get(ENV)
    if chosen:
        if shutil.which(chosen) is None and not os.path.isfile(chosen):
            raise MediaError(f"`{ENV}` names `{chosen}`, which is not a file or a command; "
                             f"unset it to use the ffmpeg that comes with filmc")
        return chosen
    system = shutil.which("ffmpeg")
    if system:
        v = version_of(system)
        if v is not None and v >= MIN_SYSTEM_VERSION:
            return system
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - it is a dependency of filmc
        raise MediaError("no ffmpeg found: install ffmpeg 6 or later, or "
                         "`pip install imageio-ffmpeg`") from e
    return imageio_ffmpeg.get_ffmpeg_exe()


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run(args: Sequence[object], what: str, *, capture_stdout: bool = False,
        loglevel: str = "error", timeout: float | None = None,
        fixed_addresses: bool = False) -> subprocess.CompletedProcess:
    """Run ffmpeg with `args`; raise MediaError("could not <what>: ...") if it fails.

    `fixed_addresses`: run it without address space randomisation (Linux), for an
    encode whose bits depend on where its buffers lie: ffmpeg's AAC encoder, given the
    same samples, writes one of two streams from run to run (a few frames differ,
    inaudibly; with the addresses fixed, always the same one, whatever the paths, the
    environment or the threads).  Only for runs that read filmc's own PCM, never a file
    from elsewhere: randomised addresses are a defence for a program parsing untrusted
    media."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", loglevel, *map(str, args)]
    preexec = PREEXEC
    if fixed_addresses and (persona := _personality()) is not None:
        preexec = functools.partial(_fixed_addresses, persona, PREEXEC)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout, preexec_fn=preexec)
    except OSError as e:
        raise MediaError(f"could not {what}: cannot run ffmpeg at `{cmd[0]}` ({e.strerror})",
                         "") from e
    except subprocess.TimeoutExpired as e:
        raise MediaError(f"could not {what}: ffmpeg took longer than {timeout:g} s",
                         _command_tail(cmd)) from e
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        first = _tail(err, 1) or f"ffmpeg exited with status {proc.returncode}"
        raise MediaError(f"could not {what}: {first}", _command_tail(cmd) + "\n" + _tail(err))
    return proc


_ADDR_NO_RANDOMIZE = 0x0040000  # linux/personality.h


@functools.cache
def _personality() -> Callable[[int], int] | None:
    """libc's personality(2), looked up once in this process; None where there is none
    (not Linux, a libc without it): the run then keeps its randomised addresses."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).personality
    except (OSError, AttributeError):
        return None


def _fixed_addresses(persona: Callable[[int], int], then: Callable[[], None] | None) -> None:
    """In the child, before exec: turn off address randomisation for the program it
    runs; then `then`.  A kernel or a container that refuses (a seccomp profile that
    allows personality(2) only to read it, as Docker's default does) leaves them
    randomised: the run goes on, as it would without the flag."""
    try:
        current = persona(0xFFFFFFFF)  # the current one
        if current != -1:
            persona(current | _ADDR_NO_RANDOMIZE)
    except Exception:  # nothing may stop the exec
        pass
    if then is not None:
        then()


def _command_tail(cmd: Sequence[str], chars: int = 400) -> str:
    line = " ".join(cmd)
    return "$ " + (line if len(line) <= chars else "…" + line[-chars:])


# -- reading media back ------------------------------------------------------------

_VIDEO = re.compile(r"Stream #0:(\d+)\S*: Video: (?P<codec>\w+)(?: \((?P<profile>[^)]+)\))?.*?, "
                    r"(?P<pix>[a-z0-9_]+)(?:\([^)]*\))?, (?P<w>\d+)x(?P<h>\d+)")
_AUDIO = re.compile(r"Stream #0:(\d+)\S*: Audio: (?P<codec>\w+).*?, (?P<rate>\d+) Hz, (?P<layout>[^,]+),")
_CHAPTER = re.compile(r"Chapter #0:\d+: start (-?[\d.]+), end (-?[\d.]+)")
_TITLE = re.compile(r"^\s+title\s+: (.*)$")
_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "7.1": 8}


def probe(path: os.PathLike | str, packets: bool = False) -> dict:
    """What a user would check about a media file, read without decoding a frame.

    One ffmpeg run (there is no ffprobe in imageio-ffmpeg): `-c copy -f framemd5`
    lists every audio and video packet with its time stamp, duration and MD5, while
    the input's description on stderr gives codec, profile, pixel format and the
    chapters.  Returns duration (s, float: the end of the last packet of any stream),
    video_duration / audio_duration, frames (video packets = frames: the media steps
    never write B-frames or packed frames), fps (`"24"`, `"24000/1001"`: from the
    packets' durations), cfr (all frames equally long), width, height, codec,
    profile, pix_fmt, audio_codec, sample_rate, channels, chapters [(title, start,
    end)], and with `packets=True` video_md5 / audio_md5 (one hash per packet).
    """
    proc = run(["-i", path, "-map", "0:v?", "-map", "0:a?", "-c", "copy", "-f", "framemd5", "-"],
               f"read `{os.fspath(path)}`", capture_stdout=True, loglevel="info")
    err = proc.stderr.decode("utf-8", "replace")
    info: dict = {"duration": 0.0, "frames": 0, "chapters": []}
    tb: dict[int, Fraction] = {}
    kind: dict[int, str] = {}
    ends: dict[str, Fraction] = {}
    starts: dict[str, Fraction] = {}
    durations: set[int] = set()
    hashes: dict[str, list[str]] = {"video": [], "audio": []}
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb "):
            i, v = line[4:].split(":", 1)
            tb[int(i)] = Fraction(v.strip())
        elif line.startswith("#media_type "):
            i, v = line[12:].split(":", 1)
            kind[int(i)] = v.strip()
        elif line and not line.startswith("#"):
            f = [x.strip() for x in line.split(",")]
            i, pts, dur = int(f[0]), int(f[2]), int(f[3])
            k = kind.get(i, "")
            if k not in hashes:
                continue
            start, end = max(pts * tb[i], Fraction(0)), (pts + dur) * tb[i]
            starts[k] = min(starts.get(k, start), start)
            ends[k] = max(ends.get(k, end), end)
            hashes[k].append(f[5])
            if k == "video":
                durations.add(dur)
                info["frames"] += 1
                frame_tb = tb[i]
    for k in ends:
        info[f"{k}_duration"] = float(ends[k] - starts[k])
    if ends:
        info["duration"] = float(max(ends.values()) - min(starts.values()))
    if durations:
        info["fps"] = str(1 / (min(durations) * frame_tb))
        info["cfr"] = len(durations) == 1
    if m := _VIDEO.search(err):
        info.update(codec=m["codec"], profile=m["profile"], pix_fmt=m["pix"],
                    width=int(m["w"]), height=int(m["h"]))
    if m := _AUDIO.search(err):
        layout = m["layout"].strip()
        info.update(audio_codec=m["codec"], sample_rate=int(m["rate"]),
                    channels=_CHANNELS.get(layout.split("(")[0], 0), channel_layout=layout)
    lines = err.split("Output #0")[0].splitlines()
    for n, line in enumerate(lines):
        if c := _CHAPTER.search(line):
            title = ""
            for nxt in lines[n + 1:n + 4]:
                if t := _TITLE.match(nxt):
                    title = t.group(1)
                    break
            info["chapters"].append((title, float(c.group(1)), float(c.group(2))))
    if packets:
        info["video_md5"], info["audio_md5"] = hashes["video"], hashes["audio"]
    return info


def _boxes(f, start: int, end: int):
    """(type, payload start, payload end) of each ISO-BMFF box in [start, end)."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            return
        size, kind = int.from_bytes(head[:4], "big"), head[4:8]
        body = pos + 8
        if size == 1:
            size, body = int.from_bytes(head[8:16], "big"), pos + 16
        elif size == 0:
            size = end - pos
        if size < 8:
            return
        yield kind, body, pos + size
        pos += size


def video_duration(path: os.PathLike | str) -> Fraction:
    """The exact length of an MP4's video track, from its header (no ffmpeg run).

    Reads moov/trak/mdia/mdhd of the first track whose handler is `vide`; the film
    step calls it once per shot, so it has to be cheap.  Other files fall back to
    `probe`.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            for kind, a, b in _boxes(f, 0, size):
                if kind != b"moov":
                    continue
                for tk, ta, tb_ in _boxes(f, a, b):
                    if tk != b"trak":
                        continue
                    for mk, ma, mb in _boxes(f, ta, tb_):
                        if mk != b"mdia":
                            continue
                        found: dict[bytes, tuple[int, int]] = {
                            k: (x, y) for k, x, y in _boxes(f, ma, mb)}
                        if b"hdlr" not in found or b"mdhd" not in found:
                            continue
                        f.seek(found[b"hdlr"][0] + 8)
                        if f.read(4) != b"vide":
                            continue
                        f.seek(found[b"mdhd"][0])
                        head = f.read(36)
                        if head[0] == 1:
                            scale = int.from_bytes(head[20:24], "big")
                            dur = int.from_bytes(head[24:32], "big")
                        else:
                            scale = int.from_bytes(head[12:16], "big")
                            dur = int.from_bytes(head[16:20], "big")
                        if scale:
                            return Fraction(dur, scale)
    except OSError as e:
        raise MediaError(f"cannot read `{os.fspath(path)}`: {e.strerror}") from e
    return Fraction(probe(path).get("video_duration", 0.0))
