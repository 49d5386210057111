"""Where each step's output lies under `build/<film>/`: the names every stage uses.

The engine lays the files out (engine/layout.py), the exports name them
(compiler/exports.py), the review page links them; one module answers, so the
three never disagree.  Names are **stable**: they come from the shot's id (unique
in a film) and the candidate's name, never from the shot's place in the film, so
reordering shots, or moving one to another scene, keeps every file name and every
link an editor made to it.

    shots/chen_watches.mp4                 the conformed shot
    keyframes/chen_watches.openai-2.png    a keyframe candidate
    clips/chen_watches.take1.mp4           a clip take
    dialogue/chen_watches.1.wav            a line of dialogue, as audio
    storyboard/hunt.png, hunt-2.png ...    a scene's contact sheets, page by page
    storyboard/index.html                  the storyboard's index: every scene, its pages
    export/film.otio ...                   the exports (EXPORTS below)

The dot separates the shot from the candidate: ids are letters, digits and `_`,
so `a_b` + `c-1` and `a` + `b_c-1` never meet in one name.  For the same reason a
storyboard page `hunt-2.png` is page 2 of scene `hunt`, never a scene `hunt-2`, and
`index.html` is no scene's page (a scene `index` has `index.png`).
"""

from __future__ import annotations

from pathlib import Path

BUILD = "build"

# The exports, by format: the file each is laid out as under build/<film>/export/.
EXPORTS: dict[str, str] = {
    "otio": "film.otio",
    "edl": "film.edl",
    "fcpxml": "film.fcpxml",
    "srt": "film.srt",
    "csv": "shots.csv",
}
EXPORT_FOLDER = "export"
STORYBOARD_FOLDER = "storyboard"
STORYBOARD_INDEX = f"{STORYBOARD_FOLDER}/index.html"


def film_dir(root: Path, name: str) -> Path:
    """`build/<film>/` of the project at `root`."""
    return Path(root) / BUILD / name


def shot_file(shot: str) -> str:
    return f"shots/{shot}.mp4"


def keyframe_file(shot: str, candidate: str, ext: str = ".png") -> str:
    return f"keyframes/{shot}.{candidate}{ext or '.png'}"


def clip_file(shot: str, take: str, ext: str = ".mp4") -> str:
    return f"clips/{shot}.{take}{ext or '.mp4'}"


def speech_file(shot: str, line: int, ext: str = ".wav") -> str:
    return f"dialogue/{shot}.{line}{ext or '.wav'}"


def storyboard_file(scene: str, page: int, ext: str = ".png") -> str:
    """Page `page` (1-based) of scene `scene`'s contact sheets."""
    return f"{STORYBOARD_FOLDER}/{scene}{'' if page == 1 else f'-{page}'}{ext or '.png'}"


def storyboard_scene(rel: str) -> str | None:
    """The scene whose storyboard page `rel` (a path under build/<film>/) is; None for the
    index or any other file."""
    folder, _, name = rel.partition("/")
    if folder != STORYBOARD_FOLDER or "/" in name or rel == STORYBOARD_INDEX:
        return None
    scene, _, page = stem(name).partition("-")
    return scene if scene and (not page or page.isdigit()) else None


def export_file(fmt: str) -> str:
    return f"{EXPORT_FOLDER}/{EXPORTS[fmt]}"


def stem(rel: str) -> str:
    """A file's path without its extension (a service picks `.jpg` or `.png`)."""
    return rel.rsplit(".", 1)[0]
