"""What a local render worker does with one step: dispatch on its kind.

`spec` is the step's request fields and parameters in one dict (width, height,
fps, duration, seed, text, speaker, camera, light, panel, lines, chapters...);
`inputs` are (role, path, label, character, outfit, step) in the request's order:
label, character and outfit say what the input shows (a panel's caption; whose
sheet, in which outfit), step is the id of the step whose output it is.  Stills go to
`panels` (Pillow), media to `media` (ffmpeg).  Deterministic: the same step
gives the same bytes.  Returns the files written, by declared output name.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from ...lang import steps as S
from ..protocol import BackendError


def preload() -> None:
    """Import what the jobs use (Pillow and the panels' drawing, ffmpeg-python, the mixer,
    the storyboard's pages, the exports), in a worker before its first job: started
    while the build compiles (pool.py `prime`), it has them when its job comes.
    OpenTimelineIO, which only the EDL and FCPXML exports read, is left to them.  And
    the shots' headers the film step remembers (mp4read.Headers, in the user's cache,
    when it is not large): its step after an edit then looks them up, rather than
    reading 3,000 of them back."""
    from . import interchange, media, mix, panels, sound, storyboard, subtitles  # noqa: F401
    from .mp4read import Headers

    Headers.warm_user()


def render(kind: str, spec: dict[str, Any], prompt: str, inputs: list[list[Any]],
           workdir: str) -> dict[str, list[str]]:
    from . import media, panels, sound, subtitles

    out_dir = Path(workdir)

    def of(*roles: str) -> list[Path]:
        return [Path(i[1]) for i in inputs if i[0] in roles]

    if kind == "keyframe":
        out = out_dir / "image.png"
        sheets = {(i[3], i[4]): Path(i[1]) for i in inputs if i[0] == S.CHARACTER}
        panels.render_keyframe(spec, prompt, of(S.LOCATION), out, sheets)
        return {"image": [str(out)]}
    if kind in ("sheet", "plate"):
        out = out_dir / "image.png"
        fn = {"sheet": panels.render_sheet, "plate": panels.render_plate}[kind]
        fn(spec, prompt, of(S.CHARACTER, S.REFERENCE), out)
        return {"image": [str(out)]}
    if kind == "clip":
        out = out_dir / "clip.mp4"
        last = of(S.LAST_FRAME)
        media.render_clip(of(S.FIRST_FRAME)[0], spec, out, last[0] if last else None)
        return {"video": [str(out)]}
    if kind == "lastframe":
        out = out_dir / "frame.png"
        media.last_frame(of(S.CLIP)[0], out)
        return {"image": [str(out)]}
    if kind == "speech":
        out = out_dir / "speech.wav"
        media.render_speech(spec, out)
        return {"audio": [str(out)]}
    if kind == "shot":
        out = out_dir / "shot.mp4"
        media.conform_shot(of(S.CLIP)[0], of(S.SPEECH), spec, out)
        return {"video": [str(out)]}
    if kind == "mix":
        # Every line where its shot says it, mixed with the music, ambience and effects.
        from . import mix

        by_step = {i[5]: Path(i[1]) for i in inputs if len(i) > 5}
        said = [mix.Line(by_step[step], media.fraction(start), media.fraction(end),
                         media.fraction(until)) for step, start, end, until in spec["lines"]]
        cues = [mix.Cue(kind, by_step[step], float(start), float(end))
                for step, kind, start, end in spec["sound"]]
        made = mix.soundtrack(said, float(media.fraction(spec["duration"])), cues,
                              float(spec["loudness"]), out_dir)
        return {"audio": [str(made.mix)], "stems": [str(made.stems[s]) for s in mix.STEMS]}
    if kind == "film":
        out = out_dir / "film.mp4"
        chapters = [(title, float(start)) for title, start in spec.get("chapters", [])]
        # A film with no dialogue has empty subtitles, which ffmpeg cannot read as a track.
        srt = [p for p in of(S.SUBTITLES) if os.path.getsize(p)]
        # The mix's outputs in their declared order: its audio track, then its stems.
        media.concat_film(of(S.SHOT), chapters, out, subtitles=srt[0] if srt else None,
                          burn=bool(spec.get("burn_subtitles")),
                          language=subtitles.mp4_language(spec.get("language")),
                          audio=of(S.MIX)[0])
        return {"video": [str(out)]}
    if kind == "music":
        out = out_dir / "music.wav"
        sound.render_music(prompt, float(spec["duration"]), out)
        return {"audio": [str(out)]}
    if kind == "sfx":
        out = out_dir / "sfx.wav"
        if spec.get("bed"):
            sound.render_ambience(prompt, float(spec["duration"]), out)
        else:
            sound.render_effect(prompt, out)
        return {"audio": [str(out)]}
    if kind == "subtitles":
        out = out_dir / "film.srt"
        # Timed to be read (subtitles.py): each line as (start, end, text, speaker).
        lines = [(a, b, text, rest[0] if rest else "") for a, b, text, *rest in spec["lines"]]
        media.write_srt(subtitles.cues(lines, spec.get("end")), out)
        return {"subtitles": [str(out)]}
    if kind == "timeline":
        out = out_dir / "timeline.json"
        write_timeline(spec, out)
        return {"timeline": [str(out)]}
    if kind == "storyboard":  # one scene's contact sheets, headed by its number and title
        labels = [i[2] or Path(i[1]).stem for i in inputs if i[0] == S.PANEL]
        scene = spec.get("scene") or {}
        heading = None
        if scene:
            heading = (f"SCENE {scene['number']}  {scene['title'] or scene['id']}",
                       scene["id"] if scene["title"] else "")
        pages = panels.render_storyboard(of(S.PANEL), labels, out_dir / "page.png",
                                         heading=heading)
        return {"page": [str(p) for p in pages]}
    if kind == "storyboard_index":  # names every scene's pages, opens none
        from .storyboard import write_index

        out = out_dir / "index.html"
        write_index(spec, [i for i in inputs if i[0] == S.PAGES], out)
        return {"index": [str(out)]}
    if kind == "export":
        from .interchange import write_export

        return {"export": [str(write_export(spec, inputs, out_dir))]}
    raise BackendError(f"the local backend cannot make `{kind}` steps")


def write_timeline(spec: dict[str, Any], out: Path) -> None:
    """The cut as data: each shot's scene and place in the film, in frames.  Where each
    shot's file lies is the output layout's business (engine/layout.py), not the step's."""
    fps = Fraction(spec["fps"])
    t = Fraction(0)
    clips = []
    for n, (scene, shot, duration) in enumerate(spec["shots"], 1):
        d = Fraction(duration)
        clips.append({"number": n, "scene": scene, "shot": shot,
                      "start_frame": round(t * fps), "frames": round(d * fps)})
        t += d
    doc = {"fps": str(fps), "width": spec["width"], "height": spec["height"],
           "frames": round(t * fps), "clips": clips}
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
