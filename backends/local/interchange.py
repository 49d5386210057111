"""The exports' files: what an `export.<format>` step writes (compiler/exports.py says what).

    write_export(spec, inputs, out_dir)  →  out_dir/film.otio (or .edl, .fcpxml, .srt, .csv)

- **otio**: an OpenTimelineIO timeline at the film's rate.  A video track
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
import shutil
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any

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
    else:
        import opentimelineio as otio

        rate = fcpx_rate(Fraction(spec["fps"])) if fmt == "fcpxml" else \
            edl_rate(Fraction(spec["fps"])) if fmt == "edl" else None
        media = {i[5]: Path(i[1]).suffix for i in inputs if i[0] == S.MEDIA}
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
    it at, where it is not the film's own (FCPXML's NTSC, `fcpx_rate`)."""
    import opentimelineio as otio
    from opentimelineio.opentime import RationalTime, TimeRange

    rate = float(at if at is not None else Fraction(spec["fps"]))
    folder = Path(spec["folder"])  # build/<film>/ where the build runs (engine/executor.py)

    def span(start: int, frames: int) -> Any:
        return TimeRange(RationalTime(start, rate), RationalTime(frames, rate))

    def url(ref: dict[str, Any]) -> str | None:
        ext = media.get(ref["step"])
        return None if ext is None else (folder / (ref["file"] + ext)).as_uri()

    timeline = otio.schema.Timeline(name=spec["title"], global_start_time=RationalTime(0, rate))
    timeline.metadata["filmc"] = {"title": spec["title"], "fps": spec["fps"],
                                  "width": spec["width"], "height": spec["height"],
                                  "language": spec["language"]}
    picture = otio.schema.Track(name="Picture", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(picture)
    for shot in spec["shots"]:
        clip = otio.schema.Clip(name=shot["id"], source_range=span(0, shot["frames"]))
        if "meta" in shot:  # OTIO's; EDL and FCPXML have no place for it
            clip.metadata["filmc"] = shot["meta"]
        refs = {}
        for ref in shot["refs"]:
            target = url(ref)
            if target is None:
                continue  # passed over by a pick and never made: nothing to name
            r = otio.schema.ExternalReference(target_url=target)
            if ref["kind"] != "keyframe":  # a still has no length
                r.available_range = span(0, shot["frames"])
            r.metadata["filmc"] = {k: ref[k] for k in ("kind", "step", "key", "backend", "seed")}
            refs[ref["name"]] = r
        if spec["format"] != "otio":  # EDL, FCPXML: the active take alone
            clip.media_reference = refs[shot["active"]]
        else:
            clip.set_media_references(refs, shot["active"])
        picture.append(clip)
    for n, scene in enumerate(spec["scenes"]):
        marker = otio.schema.Marker(name=scene["title"] or scene["id"],
                                    marked_range=span(scene["start"], scene["frames"]),
                                    color=getattr(otio.schema.MarkerColor,
                                                  _COLORS[n % len(_COLORS)]))
        marker.metadata["filmc"] = {"scene": scene["id"], "place": scene["place"]}
        picture.markers.append(marker)
    if spec["lines"]:
        timeline.tracks.append(_dialogue(spec["lines"], span, url))
    if spec.get("stems") and "mix" in media:  # the mix step's stems, each the film's length
        for name in spec["stems"]:
            track = otio.schema.Track(name=f"{name.capitalize()} stem",
                                      kind=otio.schema.TrackKind.Audio)
            ref = otio.schema.ExternalReference(
                target_url=(folder / f"film.{name}.wav").as_uri(),
                available_range=span(0, spec["frames"]))
            clip = otio.schema.Clip(name=f"film.{name}", media_reference=ref,
                                    source_range=span(0, spec["frames"]))
            clip.metadata["filmc"] = {"stem": name, "step": "mix"}
            track.append(clip)
            timeline.tracks.append(track)
    return timeline


def _dialogue(lines: list[dict[str, Any]], span: Any, url: Any) -> Any:
    """The audio track of the dialogue: each line where it is said, gaps between."""
    import opentimelineio as otio

    track = otio.schema.Track(name="Dialogue", kind=otio.schema.TrackKind.Audio)
    at = 0
    for line in sorted(lines, key=lambda x: x["start"]):
        start = max(line["start"], at)  # a line that runs over the next starts after it
        frames = line["start"] + line["frames"] - start
        if frames <= 0:
            continue
        if start > at:
            track.append(otio.schema.Gap(source_range=span(0, start - at)))
        target = url(line)
        ref = otio.schema.ExternalReference(target_url=target, available_range=span(0, frames)) \
            if target is not None else otio.schema.MissingReference()
        clip = otio.schema.Clip(name=line["name"], media_reference=ref,
                                source_range=span(0, frames))
        clip.metadata["filmc"] = {k: line[k] for k in ("speaker", "paren", "text", "scene",
                                                       "shot", "line", "step", "key")}
        track.append(clip)
        at = start + frames
    return track
