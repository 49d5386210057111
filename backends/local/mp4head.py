"""What an MP4's video track says about itself, read from its header (no ffmpeg run).

The shot step (`media.conform_shot`) copies a clip's video instead of encoding it
again when the clip already is what the shot needs; deciding that must cost far less
than an encode, so it reads the few boxes that say so: the sample description (codec,
size and the `avcC` with the stream's SPS and PPS), the sample tables (how many frames,
how long each is, which are keyframes, whether any is reordered), the edit list and
x264's own note of its version and settings, which it writes into the first frame.

    track = video_track(path)   # VideoTrack, or None: not an MP4 this can read

The boxes are read by mp4read.py, the reader the film's join uses (`read_tracks`), so
that one walker decides what an MP4's header says: a clip this step copies is then
read by the same code that later joins the shot made from it.  This module only
turns a `Track`'s tables into the answers `media.copyable` compares.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

import attrs

from .mp4read import Track, be_ints, codec_config, read_tracks

_X264 = b"x264 - core "
_SEI = 4096  # bytes of the first frame to look in: the SEI comes before its slices


@attrs.frozen
class VideoTrack:
    """An MP4's first video track, as its header describes it.

    codec: the sample entry's type (`avc1` for H.264); config: the codec's
    configuration record (`avcC`: profile, level, SPS and PPS, with the frame size,
    pixel format, aspect ratio and colour description in them); timescale: ticks a
    second; durations: each distinct sample duration, in ticks; frames: the number
    of samples; sync: the 1-based numbers of the keyframes (None: every frame is
    one); reordered: whether frames are shown in another order than stored
    (B-frames); shifted: whether an edit list starts the track anywhere but at its
    first frame; encoder: x264's note of its version and options from the first
    frame (empty when there is none); compressor: the sample entry's compressor
    name (ffmpeg writes its encoder's, `Lavc libx264`, when it encodes, and none when
    it copies).
    """

    codec: bytes
    width: int
    height: int
    compressor: str
    config: bytes
    timescale: int
    durations: tuple[int, ...]
    frames: int
    sync: tuple[int, ...] | None
    reordered: bool
    shifted: bool
    encoder: bytes


def video_track(path: os.PathLike | str) -> VideoTrack | None:
    """The first video track of the MP4 at `path`, or None: no such track, a fragmented
    file or one whose header this reader does not understand (the caller then treats
    the file as one that has to be encoded anew)."""
    for track in read_tracks(path, b"vide"):
        runs = be_ints(track.stts, 4)  # (count, duration) pairs
        frames = sum(runs[0::2])
        if track.samples != frames:
            continue  # its tables disagree: not one to read
        try:
            return _video(path, track, runs, frames)
        except (OSError, OverflowError, ValueError, struct.error, IndexError):
            return None
    return None


def _video(path: os.PathLike | str, track: Track, runs: Sequence[int],
           frames: int) -> VideoTrack:
    entry = track.entry  # a visual sample entry: its box header, then the fields
    width, height = struct.unpack_from(">HH", entry, 32)
    named = min(entry[50], 31)  # the compressor's name: a Pascal string in 32 bytes
    return VideoTrack(
        codec=entry[4:8], width=width, height=height,
        compressor=entry[51:51 + named].decode("latin-1"), config=codec_config(entry),
        timescale=track.timescale,
        durations=tuple(sorted({d for c, d in zip(runs[0::2], runs[1::2]) if c})),
        frames=frames, sync=None if track.stss is None else tuple(be_ints(track.stss, 4)),
        reordered=track.ctts is not None,
        shifted=bool(track.edits) and [m for _, m in track.edits] != [0],
        encoder=_encoder_note(path, track))


def _encoder_note(path: os.PathLike | str, track: Track) -> bytes:
    """x264's `x264 - core ... options: ...` text from the first frame's SEI, or b""."""
    if not track.chunks or not track.samples:
        return b""
    offset = int.from_bytes(track.stco[:8 if track.wide else 4], "big")  # the first chunk's
    size = int.from_bytes(track.stsz[:4], "big")  # the first sample's
    if not size:
        return b""
    with open(path, "rb") as f:
        f.seek(offset)
        sample = f.read(min(size, _SEI))
    at = sample.find(_X264)
    if at < 0:
        return b""
    end = sample.find(b"\x00", at)
    return sample[at:end] if end > 0 else b""
