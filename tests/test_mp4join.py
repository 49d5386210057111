"""The film joined as "cat plus one header" (backends/local/mp4join.py), checked on real
shots made by the local backend's own steps and read back with real ffmpeg.

What a user would check: the film has every frame and the exact length, its audio
runs to the end, chapters and a subtitle track in the film's language come back out
as written, it decodes without an error and seeks into a later shot, it starts
playing before it has downloaded (moov before mdat), the same shots give the same
bytes, and shots that cannot be joined by copying still make a film (ffmpeg's concat).
"""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import wave
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from filmc.backends.ffmpeg import MediaError, ffmpeg_exe, probe, run
from filmc.backends.local import mp4join, mp4read
from filmc.backends.local.media import (
    AUDIO_ARGS,
    concat_film,
    conform_shot,
    render_clip,
    write_srt,
)

W, H = 96, 40
DURATIONS = (2, Fraction(7, 4), Fraction(5, 2))  # 48 + 42 + 60 frames at 24 fps
FRAMES = (48, 42, 60)
SECONDS = float(sum(DURATIONS))  # 6.25
CHAPTERS = [("序幕 Prologue", 0), ("Scene 2", 2), ("Scène 3", 3.75)]


def ffmpeg(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", *map(str, args)],
                          capture_output=True, check=False)


def tone(path: Path, seconds: float, freq: float) -> Path:
    """A mono 16-bit 48 kHz WAV: a line of dialogue, as far as the shot step cares."""
    n = round(seconds * 48000)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(48000)
        f.writeframes(b"".join(struct.pack("<h", int(9000 * math.sin(2 * math.pi * freq * i
                                                                      / 48000)))
                               for i in range(n)))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mp4join")


def shot(work: Path, i: int, duration: object, w: int = W, h: int = H,
         lines: list | None = None) -> Path:
    """A shot as the local backend makes one: a clip of a keyframe, conformed with its
    dialogue.  Each has its own picture, so a frame tells which shot it came from."""
    key = work / f"key{i}_{w}.png"
    im = Image.new("RGB", (w * 2, h * 2), (30 + 60 * i, 40, 200 - 50 * i))
    ImageDraw.Draw(im).ellipse([w // 2, h // 2, w, h], fill=(250, 250, 250))
    im.save(key)
    clip = render_clip(key, {"width": w, "height": h, "duration": duration, "fps": 24,
                             "camera": {"motion": "push_in"}, "seed": i}, work / f"clip{i}_{w}.mp4")
    speech = [tone(work / f"line{i}_{k}.wav", 0.6, 300 + 100 * k) for k in range(len(lines or []))]
    return conform_shot(clip, speech, {"width": w, "height": h, "fps": 24, "duration": duration,
                                       "lines": lines or []}, work / f"shot{i}_{w}.mp4")


@pytest.fixture(scope="module")
def shots(work: Path) -> list[Path]:
    return [shot(work, 0, DURATIONS[0]),
            shot(work, 1, DURATIONS[1], lines=[["1/5", "4/5"], ["1", "3/2"]]),
            shot(work, 2, DURATIONS[2], lines=[["1/2", "6/5"]])]


@pytest.fixture(scope="module")
def srt(work: Path) -> Path:
    return write_srt([(0.2, 0.8, "They're circling the herd."), (2.5, 3.5, "狼来了\n快跑"),
                      (4.3, 5.0, "Hold.")], work / "film.srt")


@pytest.fixture(scope="module")
def film(work: Path, shots: list[Path], srt: Path) -> Path:
    return mp4join.join(shots, work / "film.mp4", chapters=CHAPTERS, subtitles=srt,
                        language="zho")


@pytest.fixture(scope="module")
def mix(work: Path) -> Path:
    """A film-wide sound mix as the mix step makes it: AAC in an M4A, as long as the film."""
    out = work / "mix.m4a"
    run(["-f", "lavfi", "-i", f"sine=frequency=220:duration={SECONDS}:sample_rate=48000",
         *AUDIO_ARGS, "-fflags", "+bitexact", "-flags:a", "+bitexact", "-y", out], "make a mix")
    return out


def framemd5(path: Path, stream: str = "0:v") -> list[str]:
    """The MD5 of each decoded frame (or audio packet's samples)."""
    out = ffmpeg("-loglevel", "error", "-i", path, "-map", stream, "-f", "framemd5", "-")
    assert out.returncode == 0, out.stderr
    return [line.rsplit(b",", 1)[1].strip().decode() for line in out.stdout.splitlines()
            if line and not line.startswith(b"#")]


def top_boxes(path: Path) -> list[str]:
    data, pos, kinds = path.read_bytes(), 0, []
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        kinds.append(kind.decode())
        pos += size
    return kinds


# -- the joined film -----------------------------------------------------------------

def test_film_has_every_frame_the_length_and_the_audio(film, shots):
    info = probe(film, packets=True)
    assert info["frames"] == sum(FRAMES) == 150
    assert info["video_duration"] == SECONDS
    assert info["audio_duration"] == SECONDS  # each shot's audio runs exactly to its end
    assert info["fps"] == "24" and info["cfr"]
    assert (info["width"], info["height"], info["codec"]) == (W, H, "h264")
    # Copied, not re-encoded: every packet of every shot, in order.
    parts = [probe(p, packets=True) for p in shots]
    assert info["video_md5"] == [h for p in parts for h in p["video_md5"]]
    assert info["audio_md5"] == [h for p in parts for h in p["audio_md5"]]


def test_film_decodes_to_the_shots_frames_without_an_error(film, shots):
    out = ffmpeg("-v", "error", "-i", film, "-f", "null", "-")
    assert out.returncode == 0 and out.stderr == b""
    assert framemd5(film) == [h for p in shots for h in framemd5(p)]
    # (The audio's packets are the shots' (test above); decoded, AAC frames overlap, so
    # a shot's first frame sounds a little different after another shot than alone.)


def test_chapters_come_back_as_written(film):
    assert probe(film)["chapters"] == [("序幕 Prologue", 0.0, 2.0), ("Scene 2", 2.0, 3.75),
                                       ("Scène 3", 3.75, 6.25)]
    meta = ffmpeg("-loglevel", "error", "-i", film, "-f", "ffmetadata", "-").stdout.decode()
    assert meta.count("[CHAPTER]") == 3 and "title=序幕 Prologue" in meta


def test_subtitle_track_in_the_films_language_with_the_cues(film, srt):
    listing = ffmpeg("-i", film).stderr.decode()
    assert "(zho): Subtitle: mov_text" in listing
    back = ffmpeg("-loglevel", "error", "-i", film, "-map", "0:s", "-f", "srt", "-")
    assert back.returncode == 0
    assert back.stdout.decode().replace("\r\n", "\n").strip() == (
        srt.read_text(encoding="utf-8").strip())


def test_seeking_into_a_later_shot_gives_its_frame(film, shots, work):
    """The middle of the third shot, by film time, is the third shot's frame there."""
    at = float(DURATIONS[0] + DURATIONS[1]) + 1.25

    def frame_at(path: Path, seconds: float) -> bytes:
        out = ffmpeg("-loglevel", "error", "-ss", f"{seconds:.4f}", "-i", path,
                     "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-")
        assert out.returncode == 0, out.stderr
        return out.stdout

    got = frame_at(film, at)
    assert len(got) == W * H
    assert got == frame_at(shots[2], 1.25)
    assert got != frame_at(shots[1], 1.25)


def test_moov_comes_before_mdat_so_it_plays_while_downloading(film):
    assert top_boxes(film) == ["ftyp", "moov", "mdat"]


def test_same_shots_give_the_same_bytes(film, shots, srt, work):
    again = mp4join.join(shots, work / "again.mp4", chapters=CHAPTERS, subtitles=srt,
                         language="zho")
    assert again.read_bytes() == film.read_bytes()
    data = film.read_bytes()
    for kind in (b"mvhd", b"tkhd", b"mdhd"):  # no clock: creation and modification times 0
        at = data.index(kind)
        assert data[at + 8:at + 16] == bytes(8)


def test_concat_film_takes_the_fast_path(shots, srt, film, work):
    out = concat_film(shots, CHAPTERS, work / "via_concat.mp4", subtitles=srt, language="zho")
    assert top_boxes(out) == ["ftyp", "moov", "mdat"]  # ffmpeg's concat writes mdat first
    assert out.read_bytes() == (work / "film.mp4").read_bytes()


# -- the film's own sound ------------------------------------------------------------

def test_audio_from_a_film_wide_mix(shots, mix, work):
    out = concat_film(shots, CHAPTERS, work / "mixed.mp4", audio=mix)
    info, source = probe(out, packets=True), probe(mix, packets=True)
    assert info["frames"] == 150 and info["video_duration"] == SECONDS
    assert framemd5(out) == [f for p in shots for f in framemd5(p)]  # each shot's frames
    assert info["audio_md5"] == source["audio_md5"]  # the mix's packets, not the shots'
    assert info["audio_duration"] == source["audio_duration"]
    assert ffmpeg("-i", out).stderr.decode().count("Audio: aac") == 1
    # The mix's edit list is kept: its encoder delay stays hidden, its samples line up.
    assert framemd5(out, "0:a") == framemd5(mix, "0:a")
    # The shots' own audio is left out of the file, not just unreferenced.
    video = sum(sum(struct.unpack(f">{t.samples}I", t.stsz)) for p in shots
                for t in mp4join.read_movie(p).tracks if t.kind == b"vide")
    audio = sum(sum(struct.unpack(f">{t.samples}I", t.stsz)) for p in shots
                for t in mp4join.read_movie(p).tracks if t.kind == b"soun")
    assert audio > 1000
    assert out.stat().st_size < video + mix.stat().st_size + 8192
    assert ffmpeg("-v", "error", "-i", out, "-f", "null", "-").stderr == b""
    assert top_boxes(out) == ["ftyp", "moov", "mdat"]  # joined, not by ffmpeg


def test_a_shot_holds_its_video_then_its_sound_and_gives_the_video_in_one_piece(
        shots, mix, work):
    """A shot made here is its video, then its sound (conform_shot writes it with this
    join): under a mix, the film takes each shot's video as one span, no byte more."""
    for p in shots:
        m = mp4join.read_movie(p)
        video, sound = (next(t for t in m.tracks if t.kind == k) for k in (b"vide", b"soun"))
        last_video = struct.unpack(f">{video.chunks}I", video.stco)[-1]
        assert last_video < struct.unpack(f">{sound.chunks}I", sound.stco)[0]
        assert mp4join._span(m, [b"vide"]) is not None
    pieces: list = []
    keep = [b"vide"]
    outs = [mp4join._from(mp4join.read_movie(shots[0]).tracks[0])]
    mp4join._add_movies([mp4join.read_movie(p) for p in shots], keep, outs, pieces, 0)
    assert [p.path for p in pieces] == [str(p) for p in shots]  # one piece a shot
    out = mp4join.join(shots, work / "spans_mixed.mp4", audio=mix)
    assert framemd5(out) == [f for p in shots for f in framemd5(p)]
    video = sum(sum(struct.unpack(f">{t.samples}I", t.stsz)) for p in shots
                for t in mp4join.read_movie(p).tracks if t.kind == b"vide")
    joined, sound = (mp4join.read_movie(p).payload for p in (out, mix))
    assert joined[1] - joined[0] == video + sound[1] - sound[0]  # the videos, then the mix


def test_an_interleaved_files_sliver_of_audio_stays_unreferenced_under_a_mix(mix, work):
    """A file whose audio is interleaved with its video (as ffmpeg writes one) and a
    sliver of its bytes (silence under a larger picture) is copied whole, the sliver
    left in the mdat unreferenced: the film is still exactly the mix's sound."""
    made = shot(work, 4, 2, w=320, h=134)
    big = work / "interleaved.mp4"
    run(["-i", made, "-map", "0", "-c", "copy", "-fflags", "+bitexact", "-y", big],
        "remux a shot as ffmpeg interleaves it")
    silent = mp4join.read_movie(big)
    assert mp4join._span(silent, [b"vide"]) is None  # interleaved
    sizes = {t.kind: sum(struct.unpack(f">{t.samples}I", t.stsz)) for t in silent.tracks}
    assert sizes[b"soun"] * 8 <= silent.payload[1] - silent.payload[0]
    out = mp4join.join([big, big], work / "silent_mixed.mp4", audio=mix)
    info = probe(out, packets=True)
    assert info["frames"] == 96 and info["audio_md5"] == probe(mix, packets=True)["audio_md5"]
    whole, sound = (m.payload[1] - m.payload[0] for m in (silent, mp4join.read_movie(mix)))
    joined = mp4join.read_movie(out).payload
    assert joined[1] - joined[0] == 2 * whole + sound  # each shot copied whole, then the mix
    assert framemd5(out) == framemd5(big) * 2


# -- shots that cannot be joined by copying -------------------------------------------

@pytest.fixture(scope="module")
def odd(work: Path) -> Path:
    """A shot at another size: another `avcC`, as another backend's shot would have."""
    return shot(work, 3, 1, w=64, h=32)


def test_a_mismatching_shot_is_named(shots, odd, srt, work):
    with pytest.raises(mp4join.Unjoinable) as e:
        mp4join.join([*shots, odd], work / "never.mp4")
    assert f"`{odd.name}`" in e.value.message and "sample description" in e.value.message
    assert not (work / "never.mp4").exists()
    with pytest.raises(mp4join.Unjoinable, match="not an MP4"):
        mp4join.join([shots[0], srt], work / "never.mp4")


def test_concat_film_falls_back_to_ffmpeg(shots, odd, mix, work):
    out = concat_film([shots[0], odd], [("One", 0)], work / "fallback.mp4")
    info = probe(out)
    assert info["frames"] == 48 + 24 and info["chapters"] == [("One", 0.0, 3.0)]
    assert top_boxes(out)[-1] == "moov"  # ffmpeg wrote it, not the join
    mixed = concat_film([shots[0], odd], [("One", 0)], work / "fallback_mix.mp4", audio=mix)
    assert probe(mixed, packets=True)["audio_md5"] == probe(mix, packets=True)["audio_md5"]


# -- the 64-bit forms, past 4 GiB -------------------------------------------------------

def test_a_film_past_4_gib_uses_64_bit_offsets(shots, srt, film, work, monkeypatch):
    """The 4 GiB threshold lowered to 4 KiB: the same join writes co64, a 64-bit mdat
    size and version-1 durations, and ffmpeg reads it back frame for frame."""
    monkeypatch.setattr(mp4join, "_BIG", 1 << 12)
    out = mp4join.join(shots, work / "wide.mp4", chapters=CHAPTERS, subtitles=srt,
                       language="zho")
    data = out.read_bytes()
    assert b"co64" in data and b"stco" not in data
    assert struct.unpack_from(">I", data, data.index(b"mdat") - 4)[0] == 1  # largesize
    assert framemd5(out) == framemd5(work / "film.mp4")
    assert probe(out)["chapters"] == probe(work / "film.mp4")["chapters"]


# -- headers remembered between joins ------------------------------------------------

def test_remembered_headers_give_the_same_film_and_a_new_file_is_read(shots, work, tmp_path):
    """After a one-shot edit only that shot's header is read again: the others are
    remembered by their files' identity, and the film is what reading them all gives."""
    copies = []
    for i, p in enumerate(shots):
        copies.append(tmp_path / f"s{i}.mp4")
        copies[-1].write_bytes(p.read_bytes())
    first = mp4join.Headers(tmp_path / "cache")
    assert first.path is not None
    (tmp_path / "cache").mkdir()
    a = mp4join.join(copies, tmp_path / "a.mp4", chapters=CHAPTERS, headers=first)
    assert first.read == 3 and first.path.is_file()
    again = mp4join.Headers(tmp_path / "cache")
    b = mp4join.join(copies, tmp_path / "b.mp4", chapters=CHAPTERS, headers=again)
    assert again.read == 0 and b.read_bytes() == a.read_bytes()
    # The middle shot re-made (as the store writes a file: a new one renamed into place).
    (tmp_path / "new.mp4").write_bytes(shots[2].read_bytes())
    (tmp_path / "new.mp4").replace(copies[1])
    edited = mp4join.Headers(tmp_path / "cache")
    c = mp4join.join(copies, tmp_path / "c.mp4", chapters=CHAPTERS, headers=edited)
    assert edited.read == 1
    assert c.read_bytes() == mp4join.join(copies, tmp_path / "d.mp4", chapters=CHAPTERS
                                          ).read_bytes() != a.read_bytes()
    assert probe(c)["frames"] == 48 + 60 + 60


def test_a_file_linked_again_is_still_recognised(shots, tmp_path):
    """The engine hard-links each input into a step's work folder and removes the link
    after, which changes the file's change time but not the file: its header is
    remembered through the link, build after build."""
    (tmp_path / "cache").mkdir()
    older = tmp_path / "cache" / "headers-2.marshal"  # an older version's journal
    older.write_bytes(b"old")
    first = mp4join.Headers(tmp_path / "cache")
    mp4join.join(shots, tmp_path / "a.mp4", chapters=CHAPTERS, headers=first)
    assert first.read == 3
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [mp4read._CACHE_FILE]
    work = tmp_path / "work"
    work.mkdir()
    links = []
    for i, p in enumerate(shots):
        links.append(work / f"{i:03d}-shot.mp4")
        os.link(p, links[-1])
    again = mp4join.Headers(tmp_path / "cache")
    b = mp4join.join(links, tmp_path / "b.mp4", chapters=CHAPTERS, headers=again)
    assert again.read == 0
    assert b.read_bytes() == (tmp_path / "a.mp4").read_bytes()


def test_a_process_that_joins_again_reads_the_journal_once(shots, tmp_path, monkeypatch):
    """A render worker that `build --watch` keeps joins the film again without reading
    the journal again or making the shots' tracks again; a journal another process
    appended to is read again, with that process's records."""
    (tmp_path / "cache").mkdir()
    first = mp4join.Headers(tmp_path / "cache")
    a = mp4join.join(shots, tmp_path / "a.mp4", chapters=CHAPTERS, headers=first)
    again = mp4join.Headers(tmp_path / "cache")  # the journal as the first join left it
    tracks = [again.movie(p).tracks for p in shots]

    def unread(self: Path) -> bytes:
        raise AssertionError(f"{self} read again")
    with monkeypatch.context() as m:
        m.setattr(Path, "read_bytes", unread)
        kept = mp4join.Headers(tmp_path / "cache")
        assert kept.known == again.known and kept.parts == again.parts
        assert [kept.movie(p).tracks for p in shots] == tracks
        assert all(kept.movie(p).tracks is t for p, t in zip(shots, tracks))
        b = mp4join.join(shots, tmp_path / "b.mp4", chapters=CHAPTERS, headers=kept)
    assert kept.read == 0 and b.read_bytes() == a.read_bytes()
    other = tmp_path / "other.mp4"
    other.write_bytes(shots[0].read_bytes())
    script = ("import sys; from pathlib import Path; from filmc.backends.local import mp4join; "
              "h = mp4join.Headers(Path(sys.argv[1])); h.movie(sys.argv[2]); h.save()")
    subprocess.run([sys.executable, "-c", script, tmp_path / "cache", other], check=True)
    later = mp4join.Headers(tmp_path / "cache")
    assert len(later.known) == len(kept.known) + 1 and later.parts == kept.parts + 1
    later.movie(other)
    assert later.read == 0
    # Its own append (a shot made again after an edit) is known without reading it back.
    mine = tmp_path / "mine.mp4"
    mine.write_bytes(shots[1].read_bytes())
    later.movie(mine)
    later.save()
    with monkeypatch.context() as m:
        m.setattr(Path, "read_bytes", unread)
        after = mp4join.Headers(tmp_path / "cache")
        assert after.parts == later.parts + 1 and len(after.known) == len(later.known) + 1
        after.movie(mine)
        assert after.read == 0
    # ... and one more from another process after it is read again.
    other2 = tmp_path / "other2.mp4"
    other2.write_bytes(shots[2].read_bytes())
    subprocess.run([sys.executable, "-c", script, tmp_path / "cache", other2], check=True)
    last = mp4join.Headers(tmp_path / "cache")
    assert len(last.known) == len(after.known) + 1


def test_a_new_worker_makes_the_remembered_tracks_before_its_first_join(shots, tmp_path,
                                                                       monkeypatch):
    """A render worker reads the journal back as it starts (render.preload, while the
    build compiles): its first join after an edit then reads only the edited shot and
    makes no track of the others."""
    (tmp_path / "cache").mkdir()
    a = mp4join.join(shots, tmp_path / "a.mp4", chapters=CHAPTERS,
                     headers=mp4join.Headers(tmp_path / "cache"))
    monkeypatch.setattr(mp4read, "_LOADED", {})  # a new process
    monkeypatch.setattr(mp4read, "_TRACKS", {})
    mp4join.Headers(tmp_path / "cache").warm()
    made = dict(mp4read._TRACKS)
    assert len(made) == 3 and all(m[2] is None for m in made.values())
    edited = tmp_path / "edited.mp4"
    edited.write_bytes(shots[1].read_bytes())
    headers = mp4join.Headers(tmp_path / "cache")
    movies = headers.movies([shots[0], edited, shots[2]])
    assert headers.read == 1
    assert movies[0].tracks is made[_identity(shots[0])][1]
    assert movies[2].tracks is made[_identity(shots[2])][1]
    b = mp4join.join([shots[0], edited, shots[2]], tmp_path / "b.mp4", chapters=CHAPTERS,
                     headers=mp4join.Headers(tmp_path / "cache"))
    assert b.read_bytes() == a.read_bytes()


def test_a_worker_reads_back_the_users_journal_only_when_it_is_not_large(
        shots, tmp_path, monkeypatch):
    """Every render worker of every build reads the journal back as it starts, whether it
    joins a film or not: not one larger than `_WARM_AT_MOST`, which the film step reads."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mp4join.join(shots, tmp_path / "a.mp4", headers=mp4join.Headers.of_user())
    journal = mp4join.Headers.of_user().path
    assert journal is not None and journal.is_file()
    monkeypatch.setattr(mp4read, "_LOADED", {})
    monkeypatch.setattr(mp4read, "_TRACKS", {})
    monkeypatch.setattr(mp4read, "_WARM_AT_MOST", journal.stat().st_size - 1)
    mp4read.Headers.warm_user()
    assert not mp4read._LOADED and not mp4read._TRACKS
    monkeypatch.setattr(mp4read, "_WARM_AT_MOST", journal.stat().st_size)
    mp4read.Headers.warm_user()
    assert len(mp4read._TRACKS) == 3


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def test_pieces_are_written_in_order_across_the_buffer(tmp_path, monkeypatch):
    """The film's bytes go through one reused buffer (here of 64 bytes): pieces that fill
    it, cross it, or are larger than it (copied in the kernel), scattered pieces of one
    file, and made ones, come out in order; a file shorter than its piece is said."""
    monkeypatch.setattr(mp4join._Sink, "SIZE", 64)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(bytes(range(256)) * 2)
    b.write_bytes(bytes(reversed(range(256))))
    da, db = a.read_bytes(), b.read_bytes()
    P = mp4join._Piece
    pieces = [P(str(a), 0, 40, 0), P(None, 0, 0, 0, b"made" * 30), P(str(b), 10, 50, 0),
              P(str(a), 100, 300, 0), P(str(a), 5, 9, 0), P(str(a), 20, 30, 0),
              P(str(a), 400, 430, 0), P(None, 0, 0, 0, b"x"), P(str(b), 0, 256, 0)]
    mp4join._write(tmp_path / "out.bin", b"HEAD" * 20, pieces)
    want = (b"HEAD" * 20 + da[0:40] + b"made" * 30 + db[10:50] + da[100:300] + da[5:9]
            + da[20:30] + da[400:430] + b"x" + db)
    assert (tmp_path / "out.bin").read_bytes() == want
    with pytest.raises(MediaError, match="`b.bin` ended before its `mdat` did"):
        mp4join._write(tmp_path / "short.bin", b"", [P(str(b), 200, 300, 0)])
    with pytest.raises(MediaError, match="ended before"):
        mp4join._write(tmp_path / "short.bin", b"", [P(str(b), 0, 30, 0), P(str(b), 200, 300, 0)])
    assert not (tmp_path / "short.bin").exists() and not list(tmp_path.glob(".short*"))


def test_a_damaged_header_cache_is_no_cache(shots, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / mp4read._CACHE_FILE).write_bytes(b"\x00not marshal")
    headers = mp4join.Headers(tmp_path / "cache")
    out = mp4join.join(shots, tmp_path / "film.mp4", headers=headers)
    assert headers.read == 3 and probe(out)["frames"] == 150


# -- the pieces ---------------------------------------------------------------------

def test_srt_is_read_as_cues(work):
    path = work / "cues.srt"
    path.write_text("\ufeff1\r\n00:00:01,500 --> 00:00:02,250\r\n<i>Two</i>\r\nlines\r\n\r\n"
                    "2\n01:00:00.000 --> 01:00:01.5\n{\\an8}Top\n", encoding="utf-8")
    assert mp4join.read_srt(path) == [(1500, 2250, "Two\nlines"),
                                      (3_600_000, 3_601_500, "Top")]


def test_language_codes_are_packed_as_mdhd_wants():
    assert mp4join.language_code("und") == 0x55C4
    assert mp4join.language_code("zho") == 0x690F
    with pytest.raises(MediaError, match="ISO 639-2"):
        mp4join.language_code("zh")
