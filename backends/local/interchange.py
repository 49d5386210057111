"""The exports' files: what an `export.<format>` step writes (compiler/exports.py says what).

    write_export(spec, inputs, out_dir)  →  out_dir/film.otio (or .edl, .fcpxml, .srt, .csv)

- **otio**: an OpenTimelineIO timeline at the film's rate, as OpenTimelineIO's JSON
  writer writes it without indentation (`timeline_json`, byte for byte but for a
  number under 1e-4 and a control character in a text, which Python's JSON writes
  otherwise, as the same value: see `write_export`).  A video track
  `Picture` of one clip a shot, named by the shot's id, its exact length in
  frames; each clip's media references are its takes (`take1`, `import-1`…), its
  keyframe candidates (`keyframe:openai-2`…) and the conformed shot
  (`conformed`), with the take the film uses active.  An audio track `Dialogue`
  of one clip a line, at the moment it is said, and one a stem of the mix
  (`Dialogue stem`, `Music stem`, `Effects stem`).  A marker a scene on the video
  track.  Metadata under `filmc` on the timeline, each clip, each reference and
  each marker: scene, shot, camera, light, cast, prompt, backends, step keys,
  cost; each reference's step, key, backend and seed.
- **edl**, **fcpxml**: the same timeline reduced to the active take of each shot
  (and, for FCPXML, the dialogue), written by OpenTimelineIO's adapter plugins
  (`otio-cmx3600-adapter`, `otio-fcpx-xml-adapter`).
- **srt**: the film's subtitles, as the `subtitles` step made them.
- **csv**: the shot list, UTF-8 with a byte-order mark so that a spreadsheet
  reads its accents and Chinese right.

Media are named by absolute `file://` URL, under the `folder` the engine names when
the step runs (no key holds an absolute path); a take the store does not hold (one
a pick passed over and nobody made) is not named.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import pickle
import shutil
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

from ...lang import steps as S
from ...lang.files import EXPORTS
from ..protocol import BackendError

# The packages whose output the timeline formats are: their versions enter the key.
PACKAGES = ("opentimelineio", "otio-cmx3600-adapter", "otio-fcpx-xml-adapter")
_ADAPTER = {"otio": "otio_json", "edl": "cmx_3600", "fcpxml": "fcpx_xml"}
_COLORS = ("RED", "ORANGE", "YELLOW", "GREEN", "CYAN", "BLUE", "PURPLE", "MAGENTA")


@functools.cache
def versions() -> dict[str, str]:
    """The installed versions of PACKAGES (what the exports' keys hold)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def write_export(spec: dict[str, Any], inputs: list[list[Any]], out_dir: Path) -> Path:
    fmt = spec["format"]
    out = out_dir / EXPORTS[fmt]
    if fmt == "srt":
        subs = [Path(i[1]) for i in inputs if i[0] == S.SUBTITLES]
        shutil.copyfile(subs[0], out)
    elif fmt == "csv":
        write_csv(spec, out)
    elif fmt == "otio":
        # OTIO's own JSON, written as it is built: the bytes OpenTimelineIO's writer gives
        # (compact) for the timeline its reader makes of it (tests/test_export.py), which a
        # 3,000-shot film took 2 s to read and write again for nothing.
        media = {i[5]: i[6] for i in inputs if i[0] == S.MEDIA}  # named, never read
        out.write_text(timeline_text(spec, media), encoding="utf-8")
    else:
        import opentimelineio as otio

        if fmt == "edl" and not spec["shots"]:  # (OpenTimelineIO's writer fails on it)
            raise BackendError("a film with no shots has no EDL: a CMX 3600 list is its "
                               "shots' events; add a shot, or export OTIO")
        rate = fcpx_rate(Fraction(spec["fps"])) if fmt == "fcpxml" else \
            edl_rate(Fraction(spec["fps"])) if fmt == "edl" else None
        media = {i[5]: i[6] for i in inputs if i[0] == S.MEDIA}  # named, never read
        timeline = build_timeline(spec, media, rate)
        out.write_text(otio.adapters.write_to_string(timeline, _ADAPTER[fmt]), encoding="utf-8")
    return out


# The NTSC rates exactly, as Final Cut Pro writes their frame duration.
_NTSC = {Fraction(24000, 1001): "1001/24000s", Fraction(30000, 1001): "1001/30000s",
         Fraction(60000, 1001): "1001/60000s"}
_FCPX_RATES = "23.976, 24, 25, 29.97, 30, 50, 59.94 or 60"


def fcpx_rate(fps: Fraction) -> Fraction:
    """The rate to write a film at `fps` to FCPXML with, or a refusal naming the rates
    FCPXML holds.  A film at `23.976` (or 23.98) is NTSC's 24000/1001, as an editor reads
    it: the cut is in whole frames, so frame n stays frame n.  The adapter looks a rate's
    frame duration up in a table keyed by rounded rates (23.98, 29.97...), where the exact
    NTSC rates found nothing and it failed deep inside: they are added to its table under
    their exact value, which is also what its timing arithmetic divides by."""
    import opentimelineio as otio

    # The module the adapter runs (OpenTimelineIO loads its own copy of a plugin's file).
    table = otio.adapters.from_name(_ADAPTER["fcpxml"]).module().FRAMERATE_FRAMEDURATION
    for ntsc, duration in _NTSC.items():
        if abs(fps - ntsc) < Fraction(1, 100):
            table.setdefault(float(ntsc), duration)
            return ntsc
    if fps.denominator == 1 and int(fps) in table:
        return fps
    raise BackendError(f"FCPXML cannot hold a film at {float(fps):g} fps: Final Cut Pro's "
                       f"rates are {_FCPX_RATES}; export OTIO or EDL instead, or set the "
                       f"film's `fps` to one of them")


def edl_rate(fps: Fraction) -> Fraction:
    """The rate to write a film at `fps` to a CMX 3600 EDL with (its timecodes are SMPTE's:
    `23.976` is NTSC's 24000/1001, as for FCPXML), or a refusal naming the rates SMPTE
    timecode counts in."""
    import opentimelineio as otio

    for ntsc in _NTSC:
        if abs(fps - ntsc) < Fraction(1, 100):
            return ntsc
    if otio.opentime.RationalTime.is_valid_timecode_rate(float(fps)):
        return fps
    raise BackendError(f"an EDL cannot hold a film at {float(fps):g} fps: its timecodes count "
                       f"23.976, 24, 25, 29.97, 30, 48, 50, 59.94 or 60 frames a second; export "
                       f"OTIO instead, or set the film's `fps` to one of them")


def write_csv(spec: dict[str, Any], out: Path) -> None:
    header = [f"cost ({spec['currency']})" if c == "cost" else c for c in spec["columns"]]
    with open(out, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(spec["rows"])


def build_timeline(spec: dict[str, Any], media: dict[str, str],
                   at: Fraction | None = None) -> Any:
    """The OpenTimelineIO timeline of a cut document; `media`: each named step's file
    extension, for the steps whose files the build handed over; `at`: the rate to write
    it at, where it is not the film's own (FCPXML's NTSC, `fcpx_rate`).

    Built as OTIO's own JSON (`timeline_json`) and read by OpenTimelineIO's reader in
    one call: made object by object through its Python API, a 3,000-shot film spent
    seconds converting each clip's metadata to OTIO's dictionaries in Python.  What the
    reader makes is what the API made (tests/test_export.py compares the two), so every
    format's writer gets the same timeline."""
    import opentimelineio as otio

    return otio.adapters.read_from_string(timeline_text(spec, media, at), _ADAPTER["otio"])


# OpenTimelineIO's compact JSON, as its writer writes it (but for what `write_export` says).
_ENCODE = json.JSONEncoder(ensure_ascii=False, check_circular=False,
                           separators=(",", ":")).encode
# Where the clips go in the timeline's text: a string no film holds (a NUL and a nonce).
_CLIPS = "\0filmc-clips-" + os.urandom(8).hex()
# A render worker's clips of the last timeline it wrote at each (rate, folder, format):
# (the shot's entry as text, its media's extensions) → the clip as text.
_clips: dict[tuple, dict[tuple, str]] = {}
# The clips of the last timeline, for the user's cache once the worker has answered
# (`save_clips`): a worker that did not write the film's timeline before (a plain
# build's, started for it) reads them back instead of encoding 3,000 clips again.
_unsaved: list[tuple[Path, dict[tuple, str]]] = []
_CLIPS_MAGIC = b"filmc-clips 1\n"
_CLIPS_KEPT = 8  # files of clips the cache keeps: the latest timelines' (formats, films)


def timeline_text(spec: dict[str, Any], media: dict[str, str],
                  at: Fraction | None = None) -> str:
    """`timeline_json` as OpenTimelineIO's compact JSON text.  A worker that wrote the
    film's timeline before (`build --watch` keeps its workers) encodes again only the
    clips of the shots whose entry, media or place changed, and splices them into the
    rest: a one-shot edit's export makes one clip, not 3,000, and the same text."""
    parts = _Parts(spec, media, at)
    common = (parts.rate, spec["folder"], parts.one)
    path = _clips_file(common)
    kept, made = _clips.pop(common, None), {}
    if kept is None:
        kept = _clips_read(path) if path is not None else {}
    texts = []
    for shot in spec["shots"]:
        key = (_ENCODE(shot), tuple(media.get(r["step"]) for r in shot["refs"]))
        text = kept.get(key)
        if text is None:
            text = _ENCODE(parts.clip(shot))
        made[key] = text
        texts.append(text)
    while len(_clips) >= 4:  # the latest few timelines (the formats a build writes)
        del _clips[next(iter(_clips))]
    _clips[common] = made
    if path is not None and made != kept:
        _unsaved[:] = [(path, made)]
    whole = _ENCODE(parts.timeline(_CLIPS))
    return whole.replace(_ENCODE(_CLIPS), "[" + ",".join(texts) + "]", 1)


def save_clips() -> None:
    """Keep the clips of the last timeline written in the user's cache, for the next
    worker (called by a worker once it has answered: the build does not wait for it)."""
    from ...lang.paths import keep_latest, keep_pickled

    if _unsaved:
        path, made = _unsaved.pop()
        if keep_pickled(path, made, _CLIPS_MAGIC):
            keep_latest(path.parent, ".clips", _CLIPS_KEPT)


def _clips_file(common: tuple) -> Path | None:
    """Where the user's cache keeps the clips of timelines at `common` (rate, folder,
    format) made by this very code (its sources, the packages' versions)."""
    from ...lang.paths import user_cache

    folder = user_cache("timelines")
    if folder is None:
        return None
    h = hashlib.sha256(_code())
    h.update(repr(common).encode("utf-8", "surrogatepass"))
    return folder / f"{h.hexdigest()}.clips"


@functools.cache
def _code() -> bytes:
    """What a clip's text is made by: this module's source and the packages' versions."""
    return Path(__file__).read_bytes() + repr(sorted(versions().items())).encode()


def _clips_read(path: Path) -> dict[tuple, str]:
    """The clips `save_clips` kept at `path`, or none (not there, damaged, another's)."""
    try:
        with open(path, "rb") as f:
            if f.read(len(_CLIPS_MAGIC)) != _CLIPS_MAGIC:
                return {}
            found = pickle.load(f)
    except Exception:
        return {}
    return found if isinstance(found, dict) else {}


def timeline_json(spec: dict[str, Any], media: dict[str, str],
                  at: Fraction | None = None) -> dict[str, Any]:
    """The timeline of `build_timeline` as OpenTimelineIO's JSON (schema `Timeline.1`
    with its tracks, clips, references and markers), every field its reader asks for,
    in the order its writer writes them: each object's fields in its schema's order,
    the keys of a dictionary (metadata, a clip's media references) sorted."""
    parts = _Parts(spec, media, at)
    return parts.timeline([parts.clip(shot) for shot in spec["shots"]])


class _Parts:
    """The pieces of one timeline: its shots' clips and the rest around them."""

    def __init__(self, spec: dict[str, Any], media: dict[str, str],
                 at: Fraction | None) -> None:
        self.spec, self.media = spec, media
        self.rate = float(at if at is not None else Fraction(spec["fps"]))
        # build/<film>/ where the build runs (engine/executor.py)
        folder = Path(spec["folder"])
        self.one = spec["format"] == "otio"  # EDL, FCPXML: the active take alone, no metadata
        self.zero = _time(0, self.rate)
        self.spans: dict[int, dict[str, Any]] = {}
        # `(folder / file).as_uri()`, without a path object a file: the prefix once, each
        # file's name quoted as `as_uri` quotes it (lang/files.py's names are plain relative
        # paths, nothing to normalise).
        self.prefix = folder.as_uri().rstrip("/") + "/"

    def span(self, start: int, frames: int) -> dict[str, Any]:
        if start:
            return {"OTIO_SCHEMA": "TimeRange.1", "duration": _time(frames, self.rate),
                    "start_time": _time(start, self.rate)}
        found = self.spans.get(frames)  # the same length again: the same (read-only) dict
        if found is None:
            found = self.spans[frames] = {"OTIO_SCHEMA": "TimeRange.1",
                                          "duration": _time(frames, self.rate),
                                          "start_time": self.zero}
        return found

    def url(self, ref: dict[str, Any]) -> str | None:
        ext = self.media.get(ref["step"])
        return None if ext is None else \
            self.prefix + quote_from_bytes(os.fsencode(ref["file"] + ext))

    def clip(self, shot: dict[str, Any]) -> dict[str, Any]:
        """A shot's clip on the picture track."""
        whole = self.span(0, shot["frames"])
        refs = {}
        for ref in shot["refs"]:
            target = self.url(ref)
            if target is None:
                continue  # passed over by a pick and never made: nothing to name
            refs[ref["name"]] = _external(
                target, whole if ref["kind"] != "keyframe" else None,  # a still has no length
                {"filmc": {k: ref[k] for k in ("backend", "key", "kind", "seed", "step")}})
        active = shot["active"]
        if active not in refs:
            raise ValueError("The media references do not contain the active key")
        if not self.one:
            refs, active = {_DEFAULT: refs[active]}, _DEFAULT
        return _clip(shot["id"], whole, dict(sorted(refs.items())), active,
                     {"filmc": _sorted(shot["meta"])} if "meta" in shot else {})

    def timeline(self, clips: Any) -> dict[str, Any]:
        """The timeline around `clips` (the picture track's)."""
        spec, span, prefix = self.spec, self.span, self.prefix
        markers = [{"OTIO_SCHEMA": "Marker.2",
                    "metadata": {"filmc": {"place": scene["place"], "scene": scene["id"]}},
                    "name": scene["title"] or scene["id"], "color": _COLORS[n % len(_COLORS)],
                    "marked_range": span(scene["start"], scene["frames"]), "comment": ""}
                   for n, scene in enumerate(spec["scenes"])]
        tracks = [_track("Picture", "Video", clips, markers)]
        if spec["lines"]:
            tracks.append(_track("Dialogue", "Audio", _dialogue(spec["lines"], span, self.url)))
        if spec.get("stems") and "mix" in self.media:  # the mix's stems, the film's length
            whole = span(0, spec["frames"])
            for name in spec["stems"]:
                ref = _external(prefix + quote_from_bytes(os.fsencode(f"film.{name}.wav")),
                                whole, {})
                tracks.append(_track(f"{name.capitalize()} stem", "Audio", [
                    _clip(f"film.{name}", whole, {_DEFAULT: ref}, _DEFAULT,
                          {"filmc": {"stem": name, "step": "mix"}})]))
        return {"OTIO_SCHEMA": "Timeline.1",
                "metadata": {"filmc": {"fps": spec["fps"], "height": spec["height"],
                                       "language": spec["language"], "title": spec["title"],
                                       "width": spec["width"]}},
                "name": spec["title"], "global_start_time": self.zero,
                "tracks": {"OTIO_SCHEMA": "Stack.1", "metadata": {}, "name": "tracks",
                           "source_range": None, "effects": [], "markers": [],
                           "enabled": True, "color": None, "children": tracks}}


_DEFAULT = "DEFAULT_MEDIA"  # OTIO's key for a clip's one media reference


def _sorted(value: Any) -> Any:
    """`value` with the keys of its dictionaries sorted, as OTIO keeps metadata."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _time(frames: int, rate: float) -> dict[str, Any]:
    return {"OTIO_SCHEMA": "RationalTime.1", "rate": rate, "value": float(frames)}


def _external(url: str, available: dict[str, Any] | None,
              metadata: dict[str, Any]) -> dict[str, Any]:
    return {"OTIO_SCHEMA": "ExternalReference.1", "metadata": metadata, "name": "",
            "available_range": available, "available_image_bounds": None, "target_url": url}


_MISSING: dict[str, Any] = {"OTIO_SCHEMA": "MissingReference.1", "metadata": {}, "name": "",
                            "available_range": None, "available_image_bounds": None}


def _clip(name: str, source: dict[str, Any], refs: dict[str, Any], active: str,
          metadata: dict[str, Any]) -> dict[str, Any]:
    return {"OTIO_SCHEMA": "Clip.2", "metadata": metadata, "name": name, "source_range": source,
            "effects": [], "markers": [], "enabled": True, "color": None,
            "media_references": refs, "active_media_reference_key": active}


def _track(name: str, kind: str, children: list[Any],
           markers: list[Any] | None = None) -> dict[str, Any]:
    return {"OTIO_SCHEMA": "Track.1", "metadata": {}, "name": name, "source_range": None,
            "effects": [], "markers": markers or [], "enabled": True, "color": None,
            "children": children, "kind": kind}


def _dialogue(lines: list[dict[str, Any]], span: Any, url: Any) -> list[dict[str, Any]]:
    """The clips of the dialogue's audio track: each line where it is said, gaps between."""
    out: list[dict[str, Any]] = []
    at = 0
    for line in sorted(lines, key=lambda x: x["start"]):
        start = max(line["start"], at)  # a line that runs over the next starts after it
        frames = line["start"] + line["frames"] - start
        if frames <= 0:
            continue
        if start > at:
            out.append({"OTIO_SCHEMA": "Gap.1", "metadata": {}, "name": "",
                        "source_range": span(0, start - at), "effects": [], "markers": [],
                        "enabled": True, "color": None})
        target = url(line)
        ref = _external(target, span(0, frames), {}) if target is not None else _MISSING
        out.append(_clip(line["name"], span(0, frames), {_DEFAULT: ref}, _DEFAULT,
                         {"filmc": {k: line[k] for k in ("key", "line", "paren", "scene",
                                                         "shot", "speaker", "step", "text")}}))
        at = start + frames
    return out
