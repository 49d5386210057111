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

        media = {i[5]: Path(i[1]).suffix for i in inputs if i[0] == S.MEDIA}
        timeline = build_timeline(spec, media)
        out.write_text(otio.adapters.write_to_string(timeline, _ADAPTER[fmt]), encoding="utf-8")
    return out


def write_csv(spec: dict[str, Any], out: Path) -> None:
    header = [f"cost ({spec['currency']})" if c == "cost" else c for c in spec["columns"]]
    with open(out, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(spec["rows"])


def build_timeline(spec: dict[str, Any], media: dict[str, str]) -> Any:
    """The OpenTimelineIO timeline of a cut document; `media`: each named step's file
    extension, for the steps whose files the build handed over."""
    import opentimelineio as otio
    from opentimelineio.opentime import RationalTime, TimeRange

    rate = float(Fraction(spec["fps"]))
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
    if spec.get("stems") and "film" in media:  # the mix's stems, each the film's length
        for name in spec["stems"]:
            track = otio.schema.Track(name=f"{name.capitalize()} stem",
                                      kind=otio.schema.TrackKind.Audio)
            ref = otio.schema.ExternalReference(
                target_url=(folder / f"film.{name}.wav").as_uri(),
                available_range=span(0, spec["frames"]))
            clip = otio.schema.Clip(name=f"film.{name}", media_reference=ref,
                                    source_range=span(0, spec["frames"]))
            clip.metadata["filmc"] = {"stem": name, "step": "film"}
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
