"""The project folder, found without importing the parser (the no-op build needs it fast)."""

from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "filmc.toml"


def find_root(main: Path) -> Path:
    """The nearest folder above the main film file that holds `filmc.toml`, else its own."""
    for folder in [main.parent, *main.parent.parents]:
        if (folder / CONFIG_FILE).is_file():
            return folder
    return main.parent


def film_name(main: Path, root: Path) -> str:
    """A film's name, as its outputs are named (`build/<name>/`): the project folder's
    name for a main file called `film.film`, else the main file's stem."""
    return root.name if main.stem == "film" else main.stem
