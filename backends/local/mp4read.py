"""MP4 headers as the film's join needs them: each track's sample tables, read fast,
and remembered between builds.

    movie = read_movie(path)                 # Movie: payload range, tracks (Track)
    headers = Headers.of_user()              # headers read before, in the user's cache
    movie = headers.movie(path); headers.save()

The film step (mp4join.py) reads 3,000 shots' headers where `cat` opens 3,000
files, so this is written for speed: one read of a shot's start (which holds all of
a small shot), one flat walk over a track's boxes, tables kept as the raw
big-endian bytes the join copies, and records that are plain (mutable, slotted)
attrs classes, which build several times faster than frozen ones (nothing mutates
them once read).  A file this does not read, or reads as something the join
cannot copy, raises `Unjoinable`.

The shot step reads its clips' video tracks here too (`read_tracks`, through
mp4head.py, to decide whether a shot may copy its clip's video): one reader of MP4
headers, so that what the shot step decides to copy and what the join then copies
are read alike, and a fix to one is a fix to both.
"""

from __future__ import annotations

import contextlib
import marshal
import operator
import os
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from filmc.backends.ffmpeg import MediaError

__all__ = ["Unjoinable", "Movie", "Track", "Headers", "read_movie", "read_tracks", "be_ints",
           "be_bytes", "with_rates", "codec_config", "KEEP"]

U32 = struct.Struct(">I")
_HEAD = struct.Struct(">I4s")
KEEP = (b"vide", b"soun")  # the shots' tracks that the film carries
_VISUAL = 86  # a visual sample entry's header and fields, before its boxes (avcC, btrt, ...)
_UNREAD = (KeyError, ValueError, struct.error, IndexError)  # a box missing, short or broken


class Unjoinable(MediaError):
    """The inputs cannot be joined by copying: one differs from the first, or is not an
    MP4 this module reads.  The film step then joins them with ffmpeg instead, and the
    shot step encodes the clip's picture anew (media.conform_shot)."""


# -- reading ---------------------------------------------------------------------

@attrs.define
class Track:
    """One track of an input, as its sample tables describe it (tables kept as the raw
    big-endian bytes where the join only copies or shifts them)."""

    kind: bytes              # the handler: b"vide", b"soun"
    timescale: int
    duration: int            # in `timescale`: the sum of the sample durations
    language: int            # mdhd's packed ISO 639-2 code
    flags: int               # tkhd's
    tail: bytes              # tkhd after the duration: layer, group, volume, matrix, size
    hdlr: bytes              # the whole box
    mhd: bytes               # vmhd or smhd, the whole box
    entry: bytes             # the sample description (stsd's one entry)
    signature: bytes         # `entry` with its bit rates blanked: what must match
    bitrates: tuple[int, int, int]  # buffer size, max and average bit rate it declares
    edits: tuple[tuple[int, int], ...]  # elst: (duration in the movie's ticks, media time)
    stts: bytes              # raw (count, duration) pairs
    ctts: bytes | None       # raw (count, offset) pairs, after one byte: the box's version
    stss: bytes | None       # raw sync sample numbers (from 1); None: every sample is one
    stsc: bytes              # raw (first chunk, samples per chunk, description) triples
    stsz: bytes              # raw 32-bit sizes, one a sample
    samples: int
    stco: bytes              # raw chunk offsets, 8 bytes each if `wide`, else 4
    wide: bool
    chunks: int
    sgpd: bytes | None       # sample group description (AAC's pre-roll), the whole box
    sbgp: bytes | None       # raw (count, group) pairs of the `roll` grouping


@attrs.define
class Movie:
    """An input file: where its payload is and what its tracks are."""

    path: str
    ftyp: bytes
    payload: tuple[int, int]  # the mdat's contents, [start, end) in the file
    timescale: int
    tracks: tuple[Track, ...]


def _index(buf: bytes, pos: int, end: int, into: frozenset[bytes] = frozenset(),
           parent: str = "its parent") -> dict[bytes, tuple[int, int]]:
    """The first box of each type in buf[pos:end]: type -> (payload start, box end);
    the children of the containers `into` are read as if they were this level's (a
    container's children fill it exactly, so stepping into it is moving past its
    header).  A size of 0 (the box runs to the end of the file) is allowed only at a
    level with no such containers: the file's, a box's own."""
    found: dict[bytes, tuple[int, int]] = {}
    unpack = _HEAD.unpack_from
    while pos + 8 <= end:
        size, kind = unpack(buf, pos)
        if kind in into:
            pos += 8
            continue
        body = pos + 8
        if size < 8:
            if size == 1:
                size, body = struct.unpack_from(">Q", buf, pos + 8)[0], pos + 16
            elif size == 0 and not into:
                size = end - pos
            if size < body - pos:
                raise ValueError(f"a `{kind.decode('latin-1')}` box is {size} bytes long")
        if pos + size > end:
            raise ValueError(f"a `{kind.decode('latin-1')}` box runs past {parent}")
        if kind not in found:
            found[kind] = (body, pos + size)
        pos += size
    return found


def be_ints(raw: bytes, width: int) -> array:
    """Big-endian unsigned integers of `width` bytes, as a native array."""
    out = array("I" if width == 4 else "Q", raw)
    if sys.byteorder == "little":
        out.byteswap()
    return out


def be_bytes(values: Sequence[int], width: int) -> bytes:
    out = array("I" if width == 4 else "Q", values)
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()


def _descriptor(buf: bytes, pos: int) -> tuple[int, int]:
    """(tag, payload start) of the MPEG-4 descriptor at `pos`."""
    tag, pos = buf[pos], pos + 1
    for _ in range(4):  # the length: up to four bytes of seven bits
        pos += 1
        if not buf[pos - 1] & 0x80:
            break
    return tag, pos


def rates_at(entry: bytes, kind: bytes) -> tuple[int | None, int | None]:
    """Offsets in a sample entry of its `btrt` payload and of its esds bit rates
    (bufferSizeDB, maxBitrate, avgBitrate: 11 bytes), where it has them.  Both vary
    from shot to shot (they describe the shot's bytes, not how to decode them)."""
    first = _VISUAL if kind == b"vide" else 36  # the visual / audio sample entry's fields
    btrt = esds = None
    for child, (a, b) in _index(entry, first, len(entry)).items():
        if child == b"btrt" and b - a >= 12:
            btrt = a
        elif child == b"esds" and b - a > 8:
            tag, p = _descriptor(entry, a + 4)
            if tag != 3:  # ES_Descriptor: ES_ID, flags, optional fields by flag
                continue
            flags = entry[p + 2]
            p += 3 + (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
            if flags & 0x40:
                p += 1 + entry[p]
            tag, p = _descriptor(entry, p)
            if tag == 4 and p + 13 <= b:  # DecoderConfigDescriptor: type, stream, rates
                esds = p + 2
    return btrt, esds


def with_rates(entry: bytes, kind: bytes, rates: tuple[int, int, int]) -> bytes:
    """The sample entry declaring `rates` (buffer size, max, average) instead of its own."""
    btrt, esds = rates_at(entry, kind)
    out = bytearray(entry)
    buffer, peak, mean = (min(r, 0xFFFFFFFF) for r in rates)
    if btrt is not None:
        out[btrt:btrt + 12] = struct.pack(">III", buffer, peak, mean)
    if esds is not None:
        out[esds:esds + 11] = struct.pack(">I", min(buffer, 0xFFFFFF))[1:] + struct.pack(
            ">II", peak, mean)
    return bytes(out)


def codec_config(entry: bytes) -> bytes:
    """A video sample entry's codec configuration record (`avcC`, `hvcC`: profile, level,
    SPS and PPS), b"" where it has none."""
    boxes = _index(entry, _VISUAL, len(entry))
    a, b = boxes.get(b"avcC") or boxes.get(b"hvcC") or (0, 0)
    return entry[a:b]


_DESCEND = frozenset((b"mdia", b"minf", b"stbl", b"edts"))  # trak's containers on the way


def _walk(buf: bytes, pos: int, end: int) -> dict[bytes, tuple[int, int]]:
    """The first box of each type in a trak's payload buf[pos:end], looking inside its
    containers (mdia, minf, stbl, edts): type -> (payload start, box end).  (The types
    it records occur once in a track, and the `hdlr` that comes first is mdia's.)"""
    return _index(buf, pos, end, _DESCEND, "its track")


def _track(buf: bytes, a: int, b: int, kinds: tuple[bytes, ...] = KEEP) -> tuple | None:
    """The fields of a `Track` for the track in buf[a:b] (a trak's payload), or None
    if it is not of `kinds`."""
    top = mdia = minf = st = _walk(buf, a, b)
    ha, hb = mdia[b"hdlr"]
    kind = buf[ha + 8:ha + 12]
    if kind not in kinds:
        return None
    ma = mdia[b"mdhd"][0]
    if buf[ma] == 1:
        scale, duration, language = struct.unpack_from(">IQH", buf, ma + 20)
    else:
        scale, duration, language = struct.unpack_from(">IIH", buf, ma + 12)
    ta, tb = top[b"tkhd"]
    edits: tuple[tuple[int, int], ...] = ()
    if elst := top.get(b"elst"):
        ea = elst[0]
        n = U32.unpack_from(buf, ea + 4)[0]
        long = buf[ea] == 1
        edits = tuple(struct.unpack_from(">Qq" if long else ">Ii", buf,
                                         ea + 8 + i * (20 if long else 12)) for i in range(n))
    mhd = minf.get(b"vmhd") or minf.get(b"smhd")
    if mhd is None:
        raise ValueError("a track has no media header")
    sa, sb = st[b"stsd"]
    if U32.unpack_from(buf, sa + 4)[0] != 1:
        raise ValueError("a track has more than one sample description")
    entry = buf[sa + 8:sb]
    btrt, esds = rates_at(entry, kind)
    signature, bitrates = entry, (0, 0, 0)
    if btrt is not None or esds is not None:
        sig = bytearray(entry)
        if esds is not None:
            sig[esds:esds + 11] = bytes(11)
            bitrates = (int.from_bytes(entry[esds:esds + 3], "big"),
                        *struct.unpack_from(">II", entry, esds + 3))
        if btrt is not None:
            sig[btrt:btrt + 12] = bytes(12)
            bitrates = struct.unpack_from(">III", entry, btrt)
        signature = bytes(sig)
    xa = st[b"stts"][0]
    n = U32.unpack_from(buf, xa + 4)[0]
    stts = buf[xa + 8:xa + 8 + 8 * n]
    flat = struct.unpack_from(f">{2 * n}I", buf, xa + 8)
    ctts = None
    if b"ctts" in st:
        ca, cb = st[b"ctts"]
        ctts = buf[ca:ca + 1] + buf[ca + 8:cb]
    stss = None
    if b"stss" in st:
        ka = st[b"stss"][0]
        n = U32.unpack_from(buf, ka + 4)[0]
        stss = buf[ka + 8:ka + 8 + 4 * n]
        if len(stss) != 4 * n:
            raise ValueError("a sample table is shorter than it says")
    za = st[b"stsz"][0]
    fixed, samples = struct.unpack_from(">II", buf, za + 4)
    stsz = U32.pack(fixed) * samples if fixed else buf[za + 12:za + 12 + 4 * samples]
    ra = st[b"stsc"][0]
    n = U32.unpack_from(buf, ra + 4)[0]
    stsc = buf[ra + 8:ra + 8 + 12 * n]
    wide = b"co64" in st
    oa = st[b"co64" if wide else b"stco"][0]
    chunks = U32.unpack_from(buf, oa + 4)[0]
    stco = buf[oa + 8:oa + 8 + chunks * (8 if wide else 4)]
    sgpd = sbgp = None
    if b"sgpd" in st and b"sbgp" in st:
        pa = st[b"sbgp"][0]
        if buf[pa] == 0 and buf[pa + 4:pa + 8] == b"roll":
            ga, gb = st[b"sgpd"]
            sgpd = buf[ga - 8:gb]
            n = U32.unpack_from(buf, pa + 8)[0]
            sbgp = buf[pa + 12:pa + 12 + 8 * n]
    if (len(stsz) != 4 * samples or len(stco) != chunks * (8 if wide else 4)
            or len(stsc) % 12 or (sbgp is not None and len(sbgp) % 8)):
        raise ValueError("a sample table is shorter than it says")
    return (kind, scale, sum(map(operator.mul, flat[0::2], flat[1::2])), language,
                 int.from_bytes(buf[ta + 1:ta + 4], "big"),
                 buf[ta + (36 if buf[ta] == 1 else 24):tb], buf[ha - 8:hb],
                 buf[mhd[0] - 8:mhd[1]], entry, signature, bitrates, edits, stts, ctts, stss,
                 stsc, stsz, samples, stco, wide, chunks, sgpd, sbgp)


_FIRST_READ = 32 << 10  # a small shot whole; a large one's boxes up to its mdat


def read_movie(path: Path | str) -> Movie:
    """The boxes of one MP4 that the join needs; `Unjoinable` if it is not such a file
    (fragmented, several `mdat`s, a table that runs short)."""
    return _read(path)[0]


def _read(path: Path | str) -> tuple[Movie, tuple]:
    """`read_movie`, and its tracks' fields as tuples (what `Headers` keeps)."""
    ftyp, moov, payload, mdats = _top(path)
    name = os.path.basename(path)
    if not ftyp or not moov or mdats != 1:
        raise Unjoinable(f"`{name}` is not an MP4 file with one `moov` and one `mdat`")
    try:
        top = _index(moov, 0, len(moov))
        if b"mvex" in top:
            raise Unjoinable(f"`{name}` is a fragmented MP4")
        mv = top[b"mvhd"][0]
        scale = U32.unpack_from(moov, mv + (20 if moov[mv] == 1 else 12))[0]
        records = tuple(fields for a, b in _traks(moov)
                        if (fields := _track(moov, a, b)) is not None)
    except _UNREAD as e:
        reason = str(e) if isinstance(e, ValueError) else "a box is missing or short"
        raise Unjoinable(f"`{name}` has a header this join does not read: {reason}") from e
    movie = Movie(os.fspath(path), ftyp, payload, scale, tuple(Track(*t) for t in records))
    for track in movie.tracks:  # chunks ascending inside the mdat, as the join moves them
        w = 8 if track.wide else 4
        if track.chunks and not (payload[0] <= int.from_bytes(track.stco[:w], "big")
                                 <= int.from_bytes(track.stco[-w:], "big") < payload[1]):
            raise Unjoinable(f"`{name}` has chunk offsets outside its `mdat`")
    return movie, records


def _top(path: os.PathLike | str) -> tuple[bytes, bytes, tuple[int, int], int]:
    """The file's `ftyp` (the whole box), the `moov`'s payload (b"" if none), the `mdat`'s
    payload range and how many `mdat`s there are; `Unjoinable` if it cannot be read or its
    top-level boxes are not an unfragmented MP4's."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise Unjoinable(f"cannot read `{os.path.basename(path)}`: {e.strerror}") from e
    try:
        size = os.fstat(fd).st_size
        start = os.pread(fd, _FIRST_READ, 0)
        pos, ftyp, moov, payload, mdats = 0, b"", b"", (0, 0), 0
        while pos + 8 <= size:
            head = start[pos:pos + 16] if pos + 16 <= len(start) else os.pread(fd, 16, pos)
            box, kind = _HEAD.unpack_from(head)
            body = pos + 8
            if box == 1:
                box, body = struct.unpack_from(">Q", head, 8)[0], pos + 16
            elif box == 0:
                box = size - pos
            if box < body - pos:
                raise Unjoinable(f"`{os.path.basename(path)}` is not an MP4 file")
            if kind == b"moov" or kind == b"ftyp":
                data = (start[body:pos + box] if pos + box <= len(start)
                        else os.pread(fd, pos + box - body, body))
                if kind == b"moov":
                    moov = data
                else:
                    ftyp = start[pos:body] + data
            elif kind == b"mdat":
                payload, mdats = (body, min(pos + box, size)), mdats + 1
            elif kind == b"moof":
                raise Unjoinable(f"`{os.path.basename(path)}` is a fragmented MP4")
            pos += box
    finally:
        os.close(fd)
    return ftyp, moov, payload, mdats


def _traks(moov: bytes) -> Iterator[tuple[int, int]]:
    """Every `trak`'s payload [start, end) in a `moov`'s, in order (`_index` keeps only
    the first)."""
    pos = 0
    while pos < len(moov):
        box, kind = _HEAD.unpack_from(moov, pos)
        if box < 8:
            raise ValueError("a box inside `moov` has no size")
        if kind == b"trak":
            yield pos + 8, pos + box
        pos += box


def read_tracks(path: os.PathLike | str, kind: bytes) -> tuple[Track, ...]:
    """Every track of `kind` (b"vide", b"soun") in the MP4 at `path` that this module
    reads, in order; () if it cannot read the file or the file is fragmented.

    For a caller that looks at one track rather than joins the file (the shot step,
    deciding whether to copy a clip's video: mp4head.py): unlike `read_movie` this
    raises nothing and asks nothing of the rest of the file (one `ftyp`, one `mdat`,
    chunks inside it, other tracks that read), and leaves out a track it cannot read
    rather than the file."""
    found: list[Track] = []
    try:
        moov = _top(path)[1]
        if b"mvex" in _index(moov, 0, len(moov)):
            return ()
        for a, b in _traks(moov):
            try:
                fields = _track(moov, a, b, (kind,))
            except _UNREAD:
                continue
            if fields is not None:
                found.append(Track(*fields))
    except (Unjoinable, OSError, *_UNREAD):
        pass  # a box that breaks the walk ends it: the tracks before it stand
    return tuple(found)


# -- headers read before -------------------------------------------------------------

_CACHE_FILE = "headers-3.marshal"  # the number changes with what a record or key holds
_CACHEKEEP = 60_000  # records kept: about 1 KB each for a short shot
_CACHE_PARTS = 64  # appends before the journal is rewritten whole
# The largest journal a render worker reads back as it starts (`Headers.warm_user`): some
# 16,000 records, 90 ms and 10 MB a worker; a larger one is read by the film step.
_WARM_AT_MOST = 16 << 20


_SHARED = frozenset(i for i, f in enumerate(attrs.fields(Track)) if f.name in (  # type: ignore[attr-defined]
    "kind", "tail", "hdlr", "mhd", "signature", "bitrates", "edits", "sgpd"))


class Headers:
    """The headers of files read before, kept in the user's cache between builds.

    After a one-shot edit the film step joins 2,999 shots it joined last time: each
    is recognised by its file's identity (device, inode, size and modification time:
    the store writes a new file, never over an old one, and makes it read-only) and its
    header is not read again, so the step reads one header and copies.  Not by its
    change time: the engine hard-links each input into the step's work folder, and a
    link changes it.  The records are
    marshalled tuples (no code runs on loading, unlike a pickle) in a folder of the
    user's own, mode 0700 (`user_cache`).  The file is a journal: a join that read
    new headers appends them as one more marshalled dict (a one-shot edit appends
    one record, not the 3,000), and one that finds the journal long rewrites it
    whole (tmp, rename), newest records first kept.  A record or a tail that is not
    what this version wrote is ignored, and an older version's journal (another file
    name) is removed when this version's is started.

    A process that joins again (a render worker `build --watch` keeps) reads the
    journal again only when it changed (`_LOADED`), and keeps the tracks it made of
    each record (`_TRACKS`) and the Movie of it, so that after a one-shot edit its join
    stats 3,000 files and makes nothing of them again."""

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / _CACHE_FILE if folder is not None else None
        self.known: dict[tuple, tuple] = {}
        self.used: dict[tuple, tuple] = {}
        self.new: dict[tuple, tuple] = {}
        self.parts = 0  # dicts in the journal
        self.read = 0  # headers read from their files by this join
        self.pool: dict[object, object] = {}
        self.seen: tuple[int, int, int, int] | None = None  # the journal as this read it
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            return
        seen: tuple[int, int, int, int] | None = (st.st_dev, st.st_ino, st.st_size,
                                                  st.st_mtime_ns)
        loaded = _LOADED.get(self.path)
        if loaded is not None and loaded[0] == seen:
            self.known, self.parts = dict(loaded[1]), loaded[2]
            self.seen = seen
            return
        try:
            data = self.path.read_bytes()
        except OSError:
            return
        if len(data) != st.st_size:
            seen = None  # written meanwhile: read, but not remembered as that version
        view, pos = memoryview(data), 0
        while pos + 8 <= len(data):  # parts: an 8-byte length, then a marshalled dict
            end = pos + 8 + int.from_bytes(view[pos:pos + 8], "big")
            try:
                part = marshal.loads(view[pos + 8:end]) if end <= len(data) else None
            except (ValueError, EOFError, TypeError):
                part = None
            if not isinstance(part, dict):
                break  # a torn or foreign tail: what came before stands
            self.known.update(part)
            self.parts, pos = self.parts + 1, end
        if seen is not None:
            _LOADED.clear()  # one journal a process: the user's
            _LOADED[self.path] = (seen, dict(self.known), self.parts)
            self.seen = seen

    @classmethod
    def of_user(cls) -> Headers:
        from filmc.lang.paths import user_cache  # the one safe folder for such caches

        return cls(user_cache("mp4join"))

    def movies(self, files: Sequence[Path | str]) -> list[Movie]:
        """Each file's header (`movie`), the remembered ones in one tight loop (a film step
        after a one-shot edit looks up 3,000, and the lookups were a third of its own time)."""
        if self.path is None:
            return [read_movie(f) for f in files]
        out: list[Movie] = []
        stat, fspath, known, made_of, used = os.stat, os.fspath, self.known, _TRACKS, self.used
        for file in files:
            path = fspath(file)
            try:
                st = stat(path)
            except OSError:
                out.append(read_movie(path))  # which says why it cannot be read
                continue
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            record = known.get(key)
            made = made_of.get(key)
            # (by equality: a journal read again after an append holds new objects)
            if record is not None and made is not None and (made[0] is record
                                                            or made[0] == record):
                movie = made[2]
                if movie is None or movie.path != path:
                    movie = Movie(path, record[0], record[1], record[2], made[1])
                    made_of[key] = (made[0], made[1], movie)
                out.append(movie)
                used[key] = record
            else:
                out.append(self._movie(path, key, record))
        return out

    @classmethod
    def warm_user(cls) -> None:
        """The user's journal read back and its tracks made (`warm`), as a render worker
        starts (render.preload: while the build compiles), so that its first film step
        finds them made; not when the journal is larger than `_WARM_AT_MOST` (every
        worker of every build would pay for it, whether it joins a film or not)."""
        from filmc.lang.paths import user_cache

        folder = user_cache("mp4join")
        try:
            if folder is None or os.path.getsize(folder / _CACHE_FILE) > _WARM_AT_MOST:
                return
        except OSError:
            return
        cls(folder).warm()

    def warm(self) -> None:
        """Make the tracks of every header the journal remembers."""
        for key, record in self.known.items():
            if len(_TRACKS) >= _CACHEKEEP:
                break
            made = _TRACKS.get(key)
            if made is None or made[0] != record:
                # (a record this version did not write is left to `movies` to read again)
                with contextlib.suppress(TypeError, ValueError, IndexError):
                    _TRACKS[key] = (record, tuple(Track(*t) for t in record[3]), None)

    def movie(self, file: Path | str) -> Movie:
        """`file`'s header: remembered if the file is the one read before."""
        return self.movies([file])[0]

    def _movie(self, path: str, key: tuple, record: tuple | None) -> Movie:
        """A header `movies` has no tracks at hand for: made of its record, else read from
        the file and kept for the journal."""
        if record is not None:
            try:
                ftyp, payload, scale, tracks = record
                if len(_TRACKS) >= _CACHEKEEP:
                    _TRACKS.clear()
                made = tuple(Track(*t) for t in tracks)
                movie = Movie(path, ftyp, payload, scale, made)
                _TRACKS[key] = (record, made, movie)
                self.used[key] = record
                return movie
            except (TypeError, ValueError):  # not a record this version wrote
                pass
        movie, tracks = _read(path)
        self.read += 1
        # The values every shot shares (handler, sample description less its bit rates,
        # ...) as one object, which marshal then writes once: the file is half as large
        # and loads faster.
        pool = self.pool
        self.used[key] = self.new[key] = (
            pool.setdefault(movie.ftyp, movie.ftyp), movie.payload, movie.timescale,
            tuple(tuple(pool.setdefault(v, v) if i in _SHARED else v for i, v in enumerate(t))
                  for t in tracks))
        return movie

    def save(self) -> None:
        """Keep this join's new headers for the next: appended, or the journal
        rewritten when it has grown long (this join's and the newest others kept)."""
        if self.path is None or not self.new:
            return
        if not self.parts:  # a new journal: an older version's is never read again
            for old in self.path.parent.glob("headers-*.marshal"):
                if old.name != self.path.name:
                    with contextlib.suppress(OSError):
                        old.unlink()
        if self.parts < _CACHE_PARTS and len(self.known) + len(self.new) <= _CACHEKEEP:
            try:  # one write with O_APPEND: two joins appending at once do not interleave
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    part = _part(self.new)
                    before = os.fstat(fd).st_size
                    os.write(fd, part)
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
            except (OSError, ValueError):
                return  # a cache that cannot be written is no cache
            # The journal as this process now knows it, when the only change since it read
            # it is this append (a worker `build --watch` keeps joins again after each edit,
            # and read the whole journal again for its own one record).
            if self.seen is not None and before == self.seen[2] == st.st_size - len(part):
                known = dict(self.known)
                known.update(self.new)
                _LOADED.clear()
                _LOADED[self.path] = ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), known,
                                      self.parts + 1)
            return
        keep = dict(self.used)
        for key, record in reversed(self.known.items()):  # the newest first
            if len(keep) >= _CACHEKEEP:
                break
            keep.setdefault(key, record)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            tmp.write_bytes(_part(dict(reversed(keep.items()))))
            os.replace(tmp, self.path)
        except (OSError, ValueError):
            tmp.unlink(missing_ok=True)


# What this process read of the journal: path → (its device, inode, size and mtime when
# read, the records, how many parts); and the tracks and the Movie (once looked up)
# made of each record, by the file identity it is known under (with the record they
# were made of, compared by value).  Track and Movie objects are never changed once
# made (mp4join copies what it needs into its own).
_LOADED: dict[Path, tuple[tuple[int, int, int, int], dict[tuple, tuple], int]] = {}
_TRACKS: dict[tuple, tuple[tuple, tuple[Track, ...], Movie | None]] = {}


def _part(records: dict) -> bytes:
    data = marshal.dumps(records)
    return len(data).to_bytes(8, "big") + data
