"""Join MP4 files as "cat plus one header": the film step's fast path.

The shots of a film are encoded with identical settings (x264 `stitchable=1`, the
same GOP shape, AAC at one rate: media.py's `VIDEO_ARGS`, `gop_args`, `AUDIO_ARGS`),
so their streams can be joined without decoding anything.  ffmpeg's concat demuxer
does that too, but it opens, parses and re-muxes every packet of every shot: 50-60
times the cost of `cat` on 3,000 shots.  This module does the I/O of `cat` plus one
header:

- it reads each input's `moov` (mp4read.py: the sample tables stsd, stts, ctts,
  stss, stsz, stsc, stco/co64, the timescales and edit lists) and checks that every input's
  streams match the first's (the same sample description, save its bit rates, the
  same timescale), raising `Unjoinable` naming the first file that differs, so that
  the caller can fall back to ffmpeg;
- it writes `ftyp`, then one `moov` built from the inputs' tables (durations
  concatenated, sync samples and chunk numbers shifted, chunk offsets moved to
  where the payload lands), then one `mdat` into which each input's payload is
  copied whole with `os.copy_file_range` (the kernel copies, nothing passes
  through Python; an input whose audio the film replaces gives the span its video
  fills, when its video and audio are not interleaved, as in a shot this module
  wrote, else only its video's chunks, unless that audio is a sliver: see
  `_add_movies`).  The `moov` comes first (fast start: a browser plays while it
  downloads), so its size is computed before the chunk offsets are; `co64`
  replaces `stco` when the film passes 4 GiB;
- optional extra tracks, as ffmpeg writes them for MP4: a film-wide audio track
  taken from another file (with its edit list, which hides the AAC encoder delay),
  a `mov_text` subtitle track from an SRT file, and chapters as a QuickTime
  chapter text track (referenced by a `chap` tref) plus a Nero `chpl` list, which
  is what ffmpeg and ffprobe read back.

Nothing in the output varies with the clock (creation times are 0), so the same
inputs give the same bytes.  The tables are joined as raw bytes, and the entries
that move (chunk offsets, keyframe and chunk numbers) move as big integers: each
table read as one number, plus each shot's shift repeated once per entry, so a
shot costs a few bytes operations however many chunks it has.  The headers read
are remembered between builds (`Headers`, in the user's cache), so that after a
one-shot edit the film step reads one header and copies 3,000 payloads.

    join(shots, out, chapters=..., subtitles=srt, language="zho", audio=mix,
         headers=Headers.of_user())
"""

from __future__ import annotations

import operator
import os
import re
import struct
from collections.abc import Sequence
from fractions import Fraction
from itertools import accumulate, repeat
from pathlib import Path

import attrs

from filmc.backends.ffmpeg import MediaError

from .mp4read import (
    U32,
    Headers,
    Movie,
    Track,
    Unjoinable,
    be_bytes,
    be_ints,
    read_movie,
    with_rates,
)

__all__ = ["Unjoinable", "Movie", "Track", "Headers", "read_movie", "read_srt", "join",
           "language_code"]

_BIG = 1 << 32
_DINF = bytes.fromhex("0000002464696e660000001c6472656600000000000000010000000c75726c2000000001")
_MATRIX = bytes.fromhex("00010000" + "00" * 12 + "00010000" + "00" * 12 + "40000000")
# The sample descriptions ffmpeg writes for a `mov_text` subtitle track (tx3g: centred
# at the bottom, white, a font table naming Arial) and for a QuickTime chapter track.
_TX3G = bytes.fromhex("000000407478336700000000000000010000000001ff000000ff000000000000000000"
                      "00000000010010ffffffff00000012667461620001000105417269616c")
_TEXT = bytes.fromhex("0000003b746578740000000000000001000000010000000000000000000000000000"
                      "0000000000010000000000000000000d6674616200010001000000")
_GMHD = bytes.fromhex("0000004c676d686400000018676d696e0000000000408000800080000000000000"
                      "00002c74657874000100000000000000000000000000000001000000000000000000"
                      "000000000040000000")
_ENCD = bytes.fromhex("0000000c656e636400000100")  # a chapter sample's text encoding: UTF-8
_NMHD = bytes.fromhex("0000000c6e6d686400000000")
_CHPL_MAX = 255  # a Nero chapter list counts its entries in one byte


# -- what must match -------------------------------------------------------------

def _differs(first: Movie, other: Movie) -> str | None:
    """Why `other`'s streams cannot follow `first`'s by copying, or None."""
    if len(first.tracks) != len(other.tracks) or any(
            a.kind != b.kind for a, b in zip(first.tracks, other.tracks)):
        kinds = [t.kind.decode() for t in first.tracks]
        theirs = [t.kind.decode() for t in other.tracks]
        return f"its tracks are {', '.join(theirs) or 'none'}, not {', '.join(kinds)}"
    for a, b in zip(first.tracks, other.tracks):
        what = "video" if a.kind == b"vide" else "audio"
        if a.timescale != b.timescale:
            return f"its {what} timescale is {b.timescale}, not {a.timescale}"
        if a.signature != b.signature:
            name = b.entry[4:8].decode("latin-1")
            return f"its {what} sample description ({name}) differs: another codec or setting"
        if not _plain(b):
            return f"its {what} has an edit list that trims or delays it"
        if a.ctts is not None and b.ctts is not None and a.ctts[0] != b.ctts[0]:
            return f"its {what} composition offsets are of another version"
        if (a.stss is None) != (b.stss is None):
            return f"its {what} {'has no' if b.stss is None else 'has a'} table of keyframes"
        if (a.ctts is None) != (b.ctts is None):
            return f"its {what} {'has no' if b.ctts is None else 'has'} composition offsets"
    return None


def _plain(t: Track) -> bool:
    """The track starts at its first sample and is not cut by its edit list."""
    return not t.edits or (len(t.edits) == 1 and t.edits[0][1] == 0)


def _agree(movies: Sequence[Movie]) -> bool:
    """Whether every input's tracks match the first's, checked column by column (a
    comparison a shot, in C), so that the slow search for the reason runs only when
    there is one."""
    n = len(movies[0].tracks)
    if any(len(m.tracks) != n for m in movies):
        return False
    for k in range(n):
        column = [m.tracks[k] for m in movies]
        for name in ("kind", "timescale", "signature"):
            values = list(map(operator.attrgetter(name), column))
            if values.count(values[0]) != len(values):
                return False
        if not all(map(_plain, column)):
            return False
        if len({(t.stss is None, None if t.ctts is None else t.ctts[0]) for t in column}) > 1:
            return False
    return True


def _check(movies: Sequence[Movie]) -> None:
    first = movies[0]
    if not any(t.kind == b"vide" for t in first.tracks):
        raise Unjoinable(f"`{os.path.basename(first.path)}` has no video track")
    if _agree(movies):
        return
    for m in movies:
        if why := _differs(first, m):  # the first too: its own edit lists
            raise Unjoinable(f"`{os.path.basename(m.path)}` cannot be joined to "
                             f"`{os.path.basename(first.path)}` by copying: {why}")


# -- the output's tracks ---------------------------------------------------------

@attrs.define
class _Piece:
    """Bytes [start, end) of `path` (or `data`, made here: subtitle and chapter
    samples), written at `at` in the output's mdat payload."""

    path: str | None
    start: int
    end: int
    at: int
    data: bytes = b""


@attrs.define
class _Out:
    """One track of the output, its tables concatenated from the inputs'."""

    kind: bytes
    timescale: int
    hdlr: bytes
    mhd: bytes
    entry: bytes
    language: int
    flags: int
    tail: bytes
    ctts_version: int = 0
    duration: int = 0
    edits: list[tuple[int, int]] = attrs.Factory(list)  # (movie ticks, media time)
    # The tables as the inputs' raw tables, in order, and (stss, stsc) what to add to
    # their entries: each input's first sample number or chunk number in the output.
    stts: list[bytes] = attrs.Factory(list)
    ctts: list[bytes] = attrs.Factory(list)
    stss: list[bytes] | None = attrs.Factory(list)
    stss_add: list[bytes] = attrs.Factory(list)
    stsc: list[bytes] = attrs.Factory(list)
    stsc_add: list[bytes] = attrs.Factory(list)
    stsz: list[bytes] = attrs.Factory(list)
    samples: int = 0
    # chunk offset tables: (raw big-endian entries, their width, what to add to each
    # besides the file offset of the mdat's payload)
    offsets: list[tuple[bytes, int, int]] = attrs.Factory(list)
    chunks: int = 0
    sgpd: bytes | None = None
    sbgp: list[bytes] | None = None
    payload: int = 0  # bytes of samples
    rates: tuple[int, int] | None = None  # largest buffer size and max bit rate declared
    chap: int = 0  # the chapter track's id, for a `chap` tref

    def add(self, tracks: Sequence[Track], stcos: Sequence[bytes], widths: Sequence[int],
            shifts: Sequence[int]) -> None:
        """Append the samples of the input tracks `tracks`, in order, whose chunks
        start at the offsets `stcos` (each of its `widths`) + `shifts` (+ where the
        output's mdat payload starts).

        Column by column, without a Python step per shot where a comprehension does:
        the per-shot work is most of the film step once headers are remembered.
        Tables are appended as they are, never decoded: consecutive entries that could
        merge (the same frame duration, shot after shot) stay apart, which MP4 allows
        and costs 8 bytes a shot."""
        samples = list(accumulate([t.samples for t in tracks], initial=self.samples))
        chunks = list(accumulate([len(r) // w for r, w in zip(stcos, widths)],
                                 initial=self.chunks))
        self.stts += [t.stts for t in tracks]
        self.ctts += [t.ctts[1:] for t in tracks if t.ctts is not None]
        if self.stss is not None:
            pack = U32.pack
            self.stss += [t.stss for t in tracks if t.stss is not None]
            self.stss_add += [pack(n) * (len(t.stss) >> 2)
                              for n, t in zip(samples, tracks) if t.stss is not None]
        first = _FIRST.pack
        self.stsc += [t.stsc for t in tracks]
        self.stsc_add += [first(n) * (len(t.stsc) // 12) for n, t in zip(chunks, tracks)]
        if self.sbgp is not None and all(t.sbgp is not None and t.sgpd == self.sgpd
                                         for t in tracks):
            self.sbgp += [t.sbgp for t in tracks]  # type: ignore[misc]
        else:
            self.sbgp = None
        self.stsz += [t.stsz for t in tracks]
        self.offsets += zip(stcos, widths, shifts)
        self.samples, self.chunks = samples[-1], chunks[-1]
        self.duration += sum(t.duration for t in tracks)
        buffers = [t.bitrates[0] for t in tracks] + [self.rates[0] if self.rates else 0]
        peaks = [t.bitrates[1] for t in tracks] + [self.rates[1] if self.rates else 0]
        self.rates = (max(buffers), max(peaks))

    def finish(self) -> None:
        """Join each table's parts once (the header is written twice: sized, then
        with its offsets)."""
        self.stts = [b"".join(self.stts)]
        self.ctts = [b"".join(self.ctts)] if self.ctts else []
        if self.stss is not None:
            self.stss = [_plus(self.stss, self.stss_add)]
        self.stsc = [_plus(self.stsc, self.stsc_add)]
        self.stsz = [b"".join(self.stsz)]
        if self.sbgp is not None:
            self.sbgp = [b"".join(self.sbgp)]

    def chunk_table(self, base: int | None, wide: bool) -> bytes:
        """The chunk offsets when the output's mdat payload starts at `base` (None:
        zeros of the right length, to size the header).

        32-bit tables are shifted all at once, as big integers: the tables joined, plus
        each input's shift repeated once per entry of its table.  Nothing carries
        from one entry into the next, because every result fits 32 bits (co64 is
        written otherwise) and none goes below 0 (an entry lies in the payload it
        moves with); so the work a shot is two bytes operations, not one per chunk."""
        width = 8 if wide else 4
        if base is None:
            return bytes(width * self.chunks)
        if wide or any(w != 4 for _, w, _ in self.offsets):
            return b"".join(_shifted(raw, w, base + shift, width)
                            for raw, w, shift in self.offsets)
        tables, _, shifts = zip(*self.offsets)
        raw = b"".join(tables)
        counts = [len(r) >> 2 for r in tables]
        pack = U32.pack
        if base + min(shifts) >= 0:  # as always when the header is larger than a shot's
            up = b"".join(map(bytes.__mul__, map(pack, [base + s for s in shifts]), counts))
            return (int.from_bytes(raw, "big") + int.from_bytes(up, "big")).to_bytes(
                len(raw), "big")
        up = b"".join(map(bytes.__mul__, map(pack, [max(base + s, 0) for s in shifts]), counts))
        down = b"".join(map(bytes.__mul__, map(pack, [max(-base - s, 0) for s in shifts]),
                            counts))
        value = int.from_bytes(raw, "big") + int.from_bytes(up, "big")
        return (value - int.from_bytes(down, "big")).to_bytes(len(raw), "big")


_FIRST = struct.Struct(">I8x")  # an addend for an stsc entry: its first chunk only


def _plus(parts: Sequence[bytes], adds: Sequence[bytes]) -> bytes:
    """The big-endian tables `parts` joined, each entry plus the same entry of `adds`
    (as big integers: no entry overflows into the next, see `_Out.chunk_table`)."""
    raw = b"".join(parts)
    return (int.from_bytes(raw, "big") + int.from_bytes(b"".join(adds), "big")).to_bytes(
        len(raw), "big")


def _from(t: Track) -> _Out:
    return _Out(kind=t.kind, timescale=t.timescale, hdlr=t.hdlr, mhd=t.mhd, entry=t.entry,
                language=t.language, flags=t.flags, tail=t.tail,
                ctts_version=t.ctts[0] if t.ctts else 0, stss=None if t.stss is None else [],
                sgpd=t.sgpd, sbgp=None if t.sgpd is None else [])


def _chunks(t: Track) -> tuple[list[int], list[int]]:
    """The starts and the ends in its file of the chunks of `t`, in table order."""
    stsc = be_ints(t.stsc, 4)
    per: list[int] = []
    for i in range(0, len(stsc), 3):
        last = stsc[i + 3] if i + 3 < len(stsc) else t.chunks + 1
        per.extend([stsc[i + 1]] * (last - stsc[i]))
    starts = list(be_ints(t.stco, 8 if t.wide else 4))[:len(per)]
    if not starts:
        return [], []
    total = list(accumulate(be_ints(t.stsz, 4), initial=0))  # bytes before each sample
    after = list(accumulate(per[:len(starts)]))  # samples up to each chunk's end
    if after[-1] >= len(total):  # a table that promises more samples than it sizes
        after = [min(n, len(total) - 1) for n in after]
    upto = [total[n] for n in after]
    return starts, list(map(operator.add, starts, map(operator.sub, upto, [0, *upto[:-1]])))


_DEAD = 8  # copy an input whole when what it drops is under 1/_DEAD of its payload


def _add_movies(movies: Sequence[Movie], keep: Sequence[bytes], outs: Sequence[_Out],
                pieces: list[_Piece], at: int) -> int:
    """Add the inputs' kept tracks to `outs` and their bytes to `pieces`, from `at` in
    the output's mdat payload; returns where the next bytes go.

    An input whose tracks are all kept is copied whole (its chunk offsets all move by
    one shift).  One that drops a track (the film's audio comes from a mix) gives the
    span of its payload its kept tracks fill when they lie before or after what it
    drops (a shot made here: its video, then its sound), one shift too; otherwise it
    is copied whole when the dropped bytes are small, under 1/8 of its payload, where
    they stay in the mdat unreferenced, as an editor's file often has them; otherwise
    only its kept chunks are copied, packed in file order: a film no larger than its
    streams, for a step that costs a few system calls more a shot."""
    if all(t.kind in keep for t in movies[0].tracks):  # (every input has the same kinds)
        return _add_whole(movies, keep, outs, pieces, at)
    whole: list[Movie] = []
    spans: list[tuple[int, int]] = []
    for m in movies:
        span = _span(m, keep)
        if span is None:
            tracks = [t for t in m.tracks if t.kind in keep]
            dropped = sum(sum(be_ints(t.stsz, 4)) for t in m.tracks if t.kind not in keep)
            if dropped * _DEAD <= m.payload[1] - m.payload[0]:
                span = m.payload
        if span is not None:
            whole.append(m)
            spans.append(span)
            continue
        at = _add_whole(whole, keep, outs, pieces, at, spans)
        whole, spans = [], []
        at = _add_chunks(m, tracks, outs, pieces, at)
    return _add_whole(whole, keep, outs, pieces, at, spans)


def _span(m: Movie, keep: Sequence[bytes]) -> tuple[int, int] | None:
    """[start, end) of `m`'s payload that holds every chunk of its kept tracks and none
    of the others, when the kept chunks all lie before the others' or all after them;
    else None.  (A shot made here holds its video, then its sound: media.conform_shot.)"""
    first, last = m.payload[1], m.payload[0]  # the kept chunks' least and greatest starts
    other_first, other_last = m.payload[1], m.payload[0]
    for t in m.tracks:
        if not t.chunks:
            continue
        starts = be_ints(t.stco, 8 if t.wide else 4)
        lo, hi = min(starts), max(starts)
        if t.kind in keep:
            first, last = min(first, lo), max(last, hi)
        else:
            other_first, other_last = min(other_first, lo), max(other_last, hi)
    if first > last or first < m.payload[0] or last >= m.payload[1]:
        return None  # nothing kept, or a chunk outside the mdat (the chunk path says so)
    if last < other_first:  # the kept chunks, then the others from `other_first`
        return m.payload[0], other_first
    if other_last < first and other_first <= other_last:  # the others, then the kept
        return first, m.payload[1]
    return None


def _add_whole(movies: Sequence[Movie], keep: Sequence[bytes], outs: Sequence[_Out],
               pieces: list[_Piece], at: int,
               spans: Sequence[tuple[int, int]] | None = None) -> int:
    """Inputs copied whole (or the `spans` of their payloads that hold what is kept), one
    after another from `at`: column by column."""
    if not movies:
        return at
    if spans is None:
        spans = [m.payload for m in movies]
    starts = [a for a, _ in spans]
    ends = [b for _, b in spans]
    ats = list(accumulate([e - s for s, e in zip(starts, ends)], initial=at))
    shifts = [a - s for a, s in zip(ats, starts)]
    pieces += map(_Piece, [m.path for m in movies], starts, ends, ats)
    if all(len(m.tracks) == len(outs) for m in movies):
        columns = list(zip(*[m.tracks for m in movies]))
    else:
        columns = list(zip(*[[t for t in m.tracks if t.kind in keep] for m in movies]))
    for o, tracks in zip(outs, columns):  # (read_movie checked each table's range)
        o.add(tracks, [t.stco for t in tracks], [8 if t.wide else 4 for t in tracks], shifts)
    return ats[-1]


def _add_chunks(m: Movie, tracks: Sequence[Track], outs: Sequence[_Out],
                pieces: list[_Piece], at: int) -> int:
    """An input's kept tracks' chunks, packed in file order from `at`."""
    start, end = m.payload
    if len(tracks) == 1:  # the usual case, the video of a shot whose sound is dropped
        starts, ends = _chunks(tracks[0])
        if starts and start <= starts[0] and ends[-1] <= end \
                and all(map(operator.le, ends[:-1], starts[1:])):  # in file order, each in the mdat
            return _add_run(m.path, tracks[0], starts, ends, outs[0], pieces, at)
    spans = sorted((a, b, i, k) for i, t in enumerate(tracks)
                   for k, (a, b) in enumerate(zip(*_chunks(t))))
    new = [[0] * t.chunks for t in tracks]
    for a, b, i, k in spans:
        if not start <= a <= b <= end:
            raise Unjoinable(f"`{os.path.basename(m.path)}` has chunks outside its `mdat`")
        new[i][k] = at
        if pieces and pieces[-1].path == m.path and pieces[-1].end == a:
            pieces[-1].end = b
        else:
            pieces.append(_Piece(m.path, a, b, at))
        at += b - a
    for o, t, offsets in zip(outs, tracks, new):
        o.add([t], [be_bytes(offsets, 8)], [8], [0])
    return at


def _add_run(path: str, track: Track, starts: list[int], ends: list[int], out: _Out,
             pieces: list[_Piece], at: int) -> int:
    """`_add_chunks` of one track whose chunks lie in file order: a comprehension a
    table, not a Python step a chunk (a shot of a small animatic has a chunk a frame,
    its sound between them)."""
    sizes = list(map(operator.sub, ends, starts))
    new = list(accumulate(sizes, initial=at))
    if pieces and pieces[-1].path == path and pieces[-1].end == starts[0] \
            or any(map(operator.eq, ends[:-1], starts[1:])):  # adjacent chunks: one piece each run
        for a, b, to in zip(starts, ends, new):
            if pieces and pieces[-1].path == path and pieces[-1].end == a:
                pieces[-1].end = b
            else:
                pieces.append(_Piece(path, a, b, to))
    else:
        pieces += map(_Piece, repeat(path, len(starts)), starts, ends, new)
    out.add([track], [be_bytes(new[:-1], 8)], [8], [0])
    return new[-1]


# -- subtitles and chapters --------------------------------------------------------

def language_code(language: str | None) -> int:
    """ISO 639-2 (`zho`, `eng`) packed as mdhd stores it: three 5-bit letters."""
    code = (language or "und").strip().lower()
    if len(code) != 3 or not all("a" <= c <= "z" for c in code):
        raise MediaError(f"the subtitle language `{language}` is not an ISO 639-2 code: "
                         f"use three letters such as `eng` or `zho`")
    return ((ord(code[0]) - 0x60) << 10) | ((ord(code[1]) - 0x60) << 5) | (ord(code[2]) - 0x60)


_TIME = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


def read_srt(path: Path) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) of each cue of a SubRip file, in time order, with the
    styling tags (`<i>`, `{\\an8}`) taken out: a tx3g sample here is plain text."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise MediaError(f"cannot read the subtitles `{Path(path).name}`: {e}") from e
    cues = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = block.strip("\n").split("\n")
        for i, line in enumerate(lines):
            if "-->" not in line:
                continue
            times = _TIME.findall(line)
            if len(times) == 2:
                a, b = (((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms.ljust(3, "0"))
                        for h, m, s, ms in times)
                body = "\n".join(_TAG.sub("", x) for x in lines[i + 1:]).strip("\n")
                if b > a:
                    cues.append((a, b, body))
            break
    return sorted(cues, key=lambda c: (c[0], c[1]))


def _text_track(kind: bytes, samples: Sequence[tuple[int, bytes]], language: int,
                at: int) -> tuple[_Out, _Piece]:
    """A track of text samples ((duration ms, bytes), timescale 1000) whose bytes are
    one chunk at `at` in the mdat payload: a `mov_text` subtitle track (tx3g, handler
    `sbtl`) or a QuickTime chapter track (`text`, never shown: flags 2)."""
    subtitle = kind == b"sbtl"
    hdlr = _full(b"hdlr", 0, 0, bytes(4), kind, bytes(12), b"SubtitleHandler\x00")
    out = _Out(kind=kind, timescale=1000, hdlr=hdlr, mhd=_NMHD if subtitle else _GMHD,
               entry=_TX3G if subtitle else _TEXT, language=language,
               flags=3 if subtitle else 2, tail=_tail(), stss=None)
    out.stts.append(be_bytes([x for d, _ in samples for x in (1, d)], 4))
    data = b"".join(s for _, s in samples)
    out.stsz.append(be_bytes([len(s) for _, s in samples], 4))
    out.stsc.append(struct.pack(">III", 1, len(samples), 1))
    out.stsc_add.append(bytes(12))
    out.offsets.append((U32.pack(at), 4, 0))
    out.chunks, out.samples = 1, len(samples)
    out.duration, out.payload = sum(d for d, _ in samples), len(data)
    out.finish()
    return out, _Piece(None, 0, len(data), at, data)


def _tail(volume: int = 0, group: int = 0) -> bytes:
    """tkhd after the duration, for a track without a picture: reserved, layer,
    alternate group, volume, matrix, width and height 0."""
    return bytes(8) + struct.pack(">hhH2x", 0, group, volume) + _MATRIX + bytes(8)


def _subtitle_samples(path: Path) -> list[tuple[int, bytes]]:
    """One sample a cue, an empty one for each gap before a cue (ms, bytes)."""
    samples: list[tuple[int, bytes]] = []
    at = 0
    for start, end, text in read_srt(path):
        start = max(start, at)
        if end <= start:
            continue
        if start > at:
            samples.append((start - at, b"\x00\x00"))
        body = text.encode("utf-8")[:0xFFFF]
        samples.append((end - start, struct.pack(">H", len(body)) + body))
        at = end
    return samples


def _chapter_samples(chapters: Sequence[tuple[str, object]], end: Fraction
                     ) -> list[tuple[int, int, str, bytes]]:
    """(start ms, duration ms, title, sample) per chapter: each lasts until the next,
    the last until `end` (the film's), in ms as ffmpeg's chapter metadata has them."""
    starts = []
    for title, start in chapters:
        value = Fraction(repr(start)) if isinstance(start, float) else Fraction(str(start))
        starts.append((round(value * 1000), str(title)))
    out = []
    for i, (ms, title) in enumerate(starts):
        nxt = starts[i + 1][0] if i + 1 < len(starts) else max(round(end * 1000), ms)
        if nxt < ms:
            raise MediaError(f"the chapter `{title}` starts after the next one")
        body = title.encode("utf-8")[:0xFFFF]
        out.append((ms, nxt - ms, title, struct.pack(">H", len(body)) + body + _ENCD))
    return out


def _udta(chapters: Sequence[tuple[int, int, str, bytes]]) -> bytes:
    """udta with a Nero chapter list (`chpl`), which ffmpeg writes beside the chapter
    track and reads first; it counts chapters in a byte, so a film with more has the
    track alone."""
    if not chapters or len(chapters) > _CHPL_MAX:
        return b""
    body = [bytes(4), bytes([len(chapters)])]
    for ms, _, title, _ in chapters:
        name = title.encode("utf-8")[:255]
        body.append(struct.pack(">QB", ms * 10_000, len(name)) + name)
    return _box(b"udta", _full(b"chpl", 1, 0, *body))


# -- writing ---------------------------------------------------------------------

def _box(kind: bytes, *parts: bytes) -> bytes:
    return U32.pack(8 + sum(map(len, parts))) + kind + b"".join(parts)


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, U32.pack((version << 24) | flags), *parts)


_ONES: dict[int, int] = {}


def _shifted(raw: bytes, width: int, delta: int, out_width: int) -> bytes:
    """A chunk offset table with `delta` added to every entry (as one big integer
    where it stays 32-bit: see `_Out.chunk_table`)."""
    n = len(raw) // width
    if width == 4 and out_width == 4:
        ones = _ONES.get(n)
        if ones is None:
            ones = _ONES[n] = int.from_bytes(b"\x00\x00\x00\x01" * n, "big")
        return (int.from_bytes(raw, "big") + delta * ones).to_bytes(4 * n, "big")
    return be_bytes([v + delta for v in be_ints(raw, width)], out_width)


def _ticks(value: int, scale: int, movie_scale: int) -> int:
    """`value` in `scale` as ticks of the movie's timescale, rounded up (so that an
    edit never ends before its media does)."""
    return -(-value * movie_scale // scale)


def _edits(t: _Out, movie_scale: int) -> list[tuple[int, int]]:
    return t.edits or [(_ticks(t.duration, t.timescale, movie_scale), 0)]


def _trak(t: _Out, track_id: int, base: int | None, wide: bool, movie_scale: int) -> bytes:
    """The trak box of `t`, when the output's mdat payload starts at file offset `base`
    (None: offsets left 0, for its size)."""
    (stts,), (stsc,) = t.stts, t.stsc
    parts = [_full(b"stsd", 0, 0, U32.pack(1), t.entry),
             _full(b"stts", 0, 0, U32.pack(len(stts) // 8), stts)]
    if t.ctts:
        parts.append(_full(b"ctts", t.ctts_version, 0, U32.pack(len(t.ctts[0]) // 8),
                           t.ctts[0]))
    if t.stss is not None:
        parts.append(_full(b"stss", 0, 0, U32.pack(len(t.stss[0]) // 4), t.stss[0]))
    parts.append(_full(b"stsc", 0, 0, U32.pack(len(stsc) // 12), stsc))
    parts.append(_full(b"stsz", 0, 0, struct.pack(">II", 0, t.samples), *t.stsz))
    parts.append(_full(b"co64" if wide else b"stco", 0, 0, U32.pack(t.chunks),
                       t.chunk_table(base, wide)))
    if t.sgpd is not None and t.sbgp:
        parts += [t.sgpd, _full(b"sbgp", 0, 0, b"roll", U32.pack(len(t.sbgp[0]) // 8),
                                t.sbgp[0])]
    minf = _box(b"minf", t.mhd, _DINF, _box(b"stbl", *parts))
    v = 1 if t.duration >= _BIG else 0
    mdhd = _full(b"mdhd", v, 0, struct.pack(">QQIQ" if v else ">IIII", 0, 0, t.timescale,
                                            t.duration), struct.pack(">HH", t.language, 0))
    edits = _edits(t, movie_scale)
    span = sum(d for d, _ in edits)
    v = 1 if span >= _BIG or any(not -_BIG // 2 <= m < _BIG // 2 for _, m in edits) else 0
    elst = _full(b"elst", v, 0, U32.pack(len(edits)),
                 *(struct.pack(">Qq" if v else ">Ii", d, m) + b"\x00\x01\x00\x00"
                   for d, m in edits))
    tkhd = _full(b"tkhd", v, t.flags,
                 struct.pack(">QQIIQ" if v else ">IIIII", 0, 0, track_id, 0, span), t.tail)
    tref = _box(b"tref", _box(b"chap", U32.pack(t.chap))) if t.chap else b""
    return _box(b"trak", tkhd, _box(b"edts", elst), tref,
                _box(b"mdia", mdhd, t.hdlr, minf))


def _moov(outs: Sequence[_Out], base: int | None, wide: bool, movie_scale: int, udta: bytes) -> bytes:
    duration = max(sum(d for d, _ in _edits(t, movie_scale)) for t in outs)
    v = 1 if duration >= _BIG else 0
    mvhd = _full(b"mvhd", v, 0,
                 struct.pack(">QQIQ" if v else ">IIII", 0, 0, movie_scale, duration),
                 struct.pack(">IH10x", 0x00010000, 0x0100), _MATRIX, bytes(24),
                 U32.pack(len(outs) + 1))
    return _box(b"moov", mvhd, *(_trak(t, i, base, wide, movie_scale)
                                 for i, t in enumerate(outs, 1)), udta)


def _named(entry: bytes, compressor: str) -> bytes:
    """A visual sample entry with its compressor name (32 bytes from offset 50: a
    length, then the name, zero-padded) set to `compressor`."""
    name = compressor.encode("latin-1")[:31]
    return entry[:50] + bytes([len(name)]) + name.ljust(31, b"\0") + entry[82:]


def _audio_track(path: Path) -> tuple[Movie, Track]:
    movie = read_movie(path)
    if len(movie.tracks) != 1 or movie.tracks[0].entry[4:8] != b"mp4a":
        raise Unjoinable(f"`{path.name}` is not an MP4 with one AAC audio track (and no "
                         f"video)")
    return movie, movie.tracks[0]


def join(inputs: Sequence[Path], out: Path, *, chapters: Sequence[tuple[str, object]] = (),
         subtitles: Path | None = None, language: str | None = None,
         audio: Path | None = None, headers: Headers | None = None,
         compressor: str | None = None) -> Path:
    """Join the MP4 files `inputs` into `out` without re-encoding (see the module doc).

    chapters: (title, start seconds) in order; the last runs to the end of the video.
    subtitles: an SRT file, made a `mov_text` track in `language` (ISO 639-2; `und`
    when None).  audio: an MP4/M4A file whose one AAC track replaces the inputs' audio.
    headers: where headers read before are remembered (`Headers.of_user()`: the
    user's cache); None reads every header.  compressor: the encoder's name the video's
    sample description gives (a Pascal string of 31 bytes at most), in place of the
    inputs'.  Raises `Unjoinable` (naming the first
    input that differs) when the inputs cannot be joined by copying, MediaError when
    the output cannot be written.
    """
    if not inputs:
        raise Unjoinable("there is nothing to join")
    movies = headers.movies(inputs) if headers is not None else [read_movie(p) for p in inputs]
    _check(movies)
    keep = [t.kind for t in movies[0].tracks if audio is None or t.kind != b"soun"]
    outs = [_from(t) for t in movies[0].tracks if t.kind in keep]
    pieces: list[_Piece] = []
    at = 0
    at = _add_movies(movies, keep, outs, pieces, at)
    video = outs[0]
    if compressor is not None and video.kind == b"vide":
        video.entry = _named(video.entry, compressor)
    movie_scale = video.timescale
    if audio is not None:
        source, track = _audio_track(Path(audio))
        mix = _from(track)
        at = _add_movies([source], [b"soun"], [mix], pieces, at)
        mix.edits = [(_ticks(d, source.timescale, movie_scale), m) for d, m in track.edits]
        outs.append(mix)
    for o in outs:  # the bit rates the joined streams have, where the entry says them
        o.finish()
        o.payload = sum(be_ints(o.stsz[0], 4))
        seconds = Fraction(o.duration, o.timescale) or Fraction(1)
        buffer, peak = o.rates or (0, 0)
        o.entry = with_rates(o.entry, o.kind, (buffer, peak, round(o.payload * 8 / seconds)))
    if subtitles is not None and (cues := _subtitle_samples(Path(subtitles))):
        track_, piece = _text_track(b"sbtl", cues, language_code(language), at)
        outs.append(track_)
        pieces.append(piece)
        at += len(piece.data)
    marks = _chapter_samples(chapters, Fraction(video.duration, video.timescale))
    if marks:
        track_, piece = _text_track(b"text", [(d, s) for _, d, _, s in marks], 0, at)
        if marks[0][0]:  # the first chapter starts later: an empty edit before it
            track_.edits = [(_ticks(marks[0][0], 1000, movie_scale), -1),
                            (_ticks(track_.duration, 1000, movie_scale), 0)]
        outs.append(track_)
        pieces.append(piece)
        at += len(piece.data)
        for o in outs[:-1]:
            o.chap = len(outs)
    udta = _udta(marks)
    ftyp = movies[0].ftyp
    head = 16 if at + 8 >= _BIG else 8
    wide = False
    size = len(_moov(outs, None, wide, movie_scale, udta))  # the offsets do not change its size
    if len(ftyp) + size + head + at >= _BIG:
        wide = True
        size = len(_moov(outs, None, wide, movie_scale, udta))
    moov = _moov(outs, len(ftyp) + size + head, wide, movie_scale, udta)
    mdat = (U32.pack(1) + b"mdat" + struct.pack(">Q", at + 16) if head == 16
            else U32.pack(at + 8) + b"mdat")
    _write(Path(out), ftyp + moov + mdat, pieces)
    if headers is not None:
        headers.save()
    return Path(out)


def _write(out: Path, header: bytes, pieces: Sequence[_Piece]) -> None:
    """The header, then each piece in order, into a temporary file renamed over `out`
    (a failed join leaves no half film)."""
    tmp = out.with_name(f".{out.name}.joining")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            sink = _Sink(fd)
            sink.write(header)
            i = 0
            while i < len(pieces):
                p = pieces[i]
                if p.path is None:
                    sink.write(p.data)
                    i += 1
                    continue
                j = i + 1
                while j < len(pieces) and pieces[j].path == p.path:
                    j += 1
                src = os.open(p.path, os.O_RDONLY)
                try:
                    group = pieces[i:j]
                    first = min(q.start for q in group) if j > i + 1 else p.start
                    last = max(q.end for q in group) if j > i + 1 else p.end
                    if j > i + 1 and last - first <= _SPAN:  # scattered: read their span once
                        data = memoryview(os.pread(src, last - first, first))
                        if len(data) < last - first:
                            raise MediaError(f"`{os.path.basename(p.path)}` ended before its "
                                             f"`mdat` did")
                        for q in group:
                            sink.write(data[q.start - first:q.end - first])
                    else:
                        for q in group:
                            sink.copy(src, p.path, q.start, q.end)
                finally:
                    os.close(src)
                i = j
            sink.flush()
        finally:
            os.close(fd)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"could not write `{out.name}`: {e.strerror or e}") from e
    except BaseException:  # an input shorter than its header says, an interruption
        tmp.unlink(missing_ok=True)
        raise


_SPAN = 64 << 20  # read an input's scattered pieces in one go when they span less


class _Sink:
    """The output file, written through one reused buffer: a film's pieces are read
    into it (a shot of a small animatic is a few KB, a chapter sample a few bytes) and
    written a megabyte at a time.  One read a piece and one write a megabyte cost less
    than a copy in the kernel a piece (on ext4, 3,000 pieces of 3 KB: 12 ms of the
    process's time against 20 ms, and against `cat`'s 21); a piece of a megabyte or more
    is copied in the kernel (copy_file_range, where the file system can share its blocks)."""

    SIZE = 1 << 20

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.view = memoryview(bytearray(self.SIZE))
        self.at = 0  # bytes of the buffer not yet written

    def write(self, data: bytes | memoryview) -> None:
        if self.at + len(data) > self.SIZE:
            self.flush()
            if len(data) > self.SIZE:
                _write_all(self.fd, data)
                return
        self.view[self.at:self.at + len(data)] = data
        self.at += len(data)

    def copy(self, src: int, name: str, start: int, end: int) -> None:
        """Bytes [start, end) of the open file `src` (named `name`), after what came
        before."""
        if end - start >= self.SIZE:
            self.flush()
            _copy_range(src, name, self.fd, start, end)
            return
        pos = start
        while pos < end:
            if self.at == self.SIZE:
                self.flush()
            n = os.preadv(src, [self.view[self.at:self.at + min(end - pos, self.SIZE - self.at)]],
                          pos)
            if n <= 0:
                raise MediaError(f"`{os.path.basename(name)}` ended before its `mdat` did")
            self.at += n
            pos += n

    def flush(self) -> None:
        if self.at:
            _write_all(self.fd, self.view[:self.at])
            self.at = 0


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_range(fd: int, src: str, fd_out: int, start: int, end: int,
                kernel: bool = True) -> None:
    """Copy [start, end) of `fd` to the end of `fd_out`, in the kernel where it can."""
    left, pos = end - start, start
    copy = getattr(os, "copy_file_range", None) if kernel else None
    while left > 0 and copy is not None:
        try:
            n = copy(fd, fd_out, left, pos)
        except OSError:  # not on this file system: copy through a buffer
            break
        if n == 0:
            raise MediaError(f"`{os.path.basename(src)}` ended before its `mdat` did")
        left, pos = left - n, pos + n
    while left > 0:
        data = os.pread(fd, min(left, 1 << 20), pos)
        if not data:
            raise MediaError(f"`{os.path.basename(src)}` ended before its `mdat` did")
        _write_all(fd_out, data)
        left, pos = left - len(data), pos + len(data)
