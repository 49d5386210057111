"""The whole compiler as one function: text → AST → checked → IR → step graph.

`compile_film(path, until=...)` runs the stages in order and stops after the one
named (`"check"`, `"ir"` or `"graph"`), or at the first stage whose input has
errors; every problem found on the way is a diagnostic in `result.diags`.
`filmc check`, `plan`, `graph`, `explain` and `build` all start here.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from ..lang import ast
from ..lang.check import Checked, check
from ..lang.diagnostics import Diagnostics, Sources
from ..lang.loader import Loader, Project
from . import ir
from .config import Config, load_config

STAGES = ("check", "ir", "graph")


@attrs.define(eq=False)
class Compiled:
    diags: Diagnostics
    sources: Sources
    project: Project | None = None
    checked: Checked | None = None
    config: Config | None = None
    film: ir.Film | None = None
    graph: object | None = None  # networkx.DiGraph, imported only when built

    @property
    def ok(self) -> bool:
        return not self.diags.errors


def compile_film(path: Path, until: str = "graph", diags: Diagnostics | None = None,
                 loader: Loader | None = None, offline: bool = False,
                 burn_subtitles: bool = False) -> Compiled:
    """`offline`: every step on the built-in `local` backend (the animatic), whatever
    filmc.toml and the shots say; keys follow, so the animatic never stands in for a
    real service's output in the cache."""
    assert until in STAGES
    diags = diags if diags is not None else Diagnostics()
    loader = loader or Loader(diags)
    out = Compiled(diags, loader.sources)
    out.project = loader.load(path)
    if out.project is None:
        return out
    out.checked = check(out.project, diags)
    out.config = load_config(out.project.root, diags, loader.sources)
    _check_backends(out.project, out.config, diags)
    if until == "check" or diags.errors:
        return out
    # The later stages import networkx and jinja2: `filmc check` does without them.
    from .graph import GraphError, build_graph
    from .passes import lower
    from .templates import TemplateError, Templates

    config = out.config

    def choose(kind: str, override: str | None = None) -> str:
        return "local" if offline else config.backend_for(kind, override).name

    out.film = lower(out.project, out.checked, choose=choose)
    if until == "ir":
        return out
    try:
        out.graph = build_graph(out.film, Templates(out.project.root), default_backend=choose,
                                settings=lambda name: key_settings(config, name),
                                burn_subtitles=burn_subtitles)
    except TemplateError as e:
        diags.error("F0601", e.message, ast.Span(e.file, e.line, 1, e.line, 2), help=e.help)
    except GraphError as e:
        diags.error("F0602", str(e), None, help="this is a bug in filmc: please report it")
    return out


def key_settings(config: Config, name: str) -> dict:
    """What of a backend enters content keys: its adapter type and the settings that change
    its output (never its name, which is a label, nor hosts, secrets or concurrency)."""
    backend = config.backend(name)
    return {"type": backend.type, **config.key_settings(name)}


def _check_backends(project: Project, config: Config, diags: Diagnostics) -> None:
    """Every `backend STEP NAME` line names a backend filmc.toml configures (or `local`)."""
    for decl, _f in project.decls():
        for items in _blocks_with_defaults(decl):
            for a in ast.attrs_of(items):
                if a.key.text != "backend" or len(a.values) != 2:
                    continue
                name = a.values[1]
                if isinstance(name, ast.Name) and name.text not in config.backends:
                    diags.error("F0240", f"backend `{name.text}` is not configured", name.span,
                                "not in filmc.toml",
                                help=config.unknown_backend_help(name.text))


def _blocks_with_defaults(decl):
    if isinstance(decl, ast.Film):
        yield decl.items
    elif isinstance(decl, ast.Scene):
        yield decl.items
        for shot in decl.shots:
            yield shot.items
