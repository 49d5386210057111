"""The whole compiler as one function: text → AST → checked → IR → step graph → Program.

`compile_film(path, until=...)` runs the stages in order and stops after the one
named (`"check"`, `"ir"` or `"graph"`), or at the first stage whose input has
errors; every problem found on the way is a diagnostic in `result.diags`.
`filmc check`, `plan`, `graph`, `explain` and `build` all start here, and
`result.program()` is what the engine runs: the step graph, the backends it
names and the project folder, nothing else of the compiler.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, overload

import attrs

from ..lang import ast
from ..lang.check import Checked, CheckMemo, check
from ..lang.diagnostics import Diagnostics, Sources
from ..lang.loader import Loader, Project
from ..lang.paths import film_name
from ..lang.steps import KINDS
from . import ir
from .config import LOCAL, Config, load_config
from .lock import lock_path

STAGES = ("check", "ir", "graph")
# (project root, `[build] store`) → a lookup of lines' lengths by speech step key, or None
Said = Callable[[Path, str | None], Callable[[list[str]], Mapping[str, Fraction]] | None]


@attrs.frozen
class ShotInfo:
    """What the engine lays out by (a shot's place in the film), and what the review page
    shows of it beside its candidates."""

    scene: str
    id: str
    number: int  # 1-based, in film order
    duration: Fraction
    scene_title: str = ""
    place: str = ""  # the scene's setting line: `EXT. STEPPE - NIGHT`
    camera: tuple[str, ...] = ()  # preset names and words, as written
    light: tuple[str, ...] = ()
    cast: tuple[tuple[str, str | None, str], ...] = ()  # (character, outfit, framing)
    action: str = ""
    lines: tuple[tuple[str, str], ...] = ()  # (speaker, text)
    backends: tuple[tuple[str, str], ...] = ()  # (step kind, backend)
    candidates: tuple[tuple[str, int], ...] = ()  # (backend, how many keyframe candidates)
    takes: int = 1


def shot_info(scene: ir.Scene, shot: ir.Shot) -> ShotInfo:
    place = " ".join(x for x in (scene.setting and f"{scene.setting}.", scene.location,
                                 scene.time and f"- {scene.time}") if x)
    return ShotInfo(
        shot.scene, shot.id, shot.number, shot.duration, scene.title, place,
        (*shot.camera.look.presets, *shot.camera.look.words),
        (*shot.light.presets, *shot.light.words),
        tuple((m.character, m.outfit, shot.framed(m.character)) for m in shot.cast),
        shot.action, tuple((line.speaker, line.text) for line in shot.lines),
        shot.backends, tuple((b or "", n) for b, n in shot.candidates), shot.takes)


class ShotInfos(Sequence[ShotInfo]):
    """The film's shots as the review page and the editor show them (`shot_info`), worked
    out when first read: a build's first step does not wait for 3,000 of them."""

    def __init__(self, film: ir.Film) -> None:
        self._film: ir.Film | None = film
        self._infos: tuple[ShotInfo, ...] = ()

    def _all(self) -> tuple[ShotInfo, ...]:
        if self._film is not None:
            film, self._film = self._film, None
            self._infos = tuple(shot_info(scene, s) for scene in film.scenes for s in scene.shots)
        return self._infos

    @overload
    def __getitem__(self, i: int) -> ShotInfo: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[ShotInfo, ...]: ...

    def __getitem__(self, i: int | slice) -> ShotInfo | tuple[ShotInfo, ...]:
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[ShotInfo]:
        return iter(self._all())


@attrs.frozen(eq=False)
class Program:
    """A film compiled for the engine: the step graph (networkx, node attribute `step`),
    the backends its steps name, and where the project is."""

    graph: Any  # networkx.DiGraph
    backends: Mapping[str, Any]  # name → compiler.backends.BackendInfo
    root: Path
    name: str  # the film's folder name under build/
    title: str
    shots: Sequence[ShotInfo]  # (`ShotInfos`)
    currency: str
    concurrency: int  # [build] concurrency: steps at once, over every backend
    store: str | None  # [build] store
    files: tuple[Path, ...]  # every file the build reads: for the no-op fast path
    env: tuple[str, ...] = ()  # environment variables its adapters' keys depend on
    lock: Path | None = None  # film.lock: where `filmc pick` writes
    cache: Any = None  # [cache]: the team's remote cache (compiler.config.CacheConfig)

    @property
    def picks(self) -> Mapping[tuple[str, str], Any]:
        """(scene, shot) → compiler.lock.ShotPicks."""
        return self.graph.graph.get("picks", {})


@attrs.define(eq=False)
class Memo:
    """What a process that compiles one film again and again (`filmc build --watch`) keeps
    between compiles: the last check (lang/check.py `CheckMemo`), the last lowering
    (compiler/passes.py `LowerMemo`) and the last
    graph (compiler/graph.py `GraphMemo`), so that what an edit did not touch is not
    lowered or keyed again.  Made empty; each compile fills what it reaches."""

    check: Any = None  # lang.check.CheckMemo
    lower: Any = None  # compiler.passes.LowerMemo
    graph: Any = None  # compiler.graph.GraphMemo

    def loaded(self) -> None:
        """Once unpickled in another process (filmc/memocache.py): what each part keeps
        by object identity keyed again by the new objects' ids."""
        for part in (self.check, self.lower, self.graph):
            if part is not None:
                part.loaded()


@attrs.define(eq=False)
class Compiled:
    diags: Diagnostics
    sources: Sources
    project: Project | None = None
    checked: Checked | None = None
    config: Config | None = None
    film: ir.Film | None = None
    backends: dict | None = None  # name → BackendInfo, once the graph stage ran
    lock: Any = None  # compiler.lock.Lock, once the graph stage ran
    graph: Any = None  # networkx.DiGraph, imported only when built

    @property
    def ok(self) -> bool:
        return not self.diags.errors

    def program(self) -> Program:
        assert self.graph is not None and self.project and self.config and self.film
        project, config, film = self.project, self.config, self.film
        shots = ShotInfos(film)
        root = project.root
        lock = lock_path(project.main.path)
        files = [f.path for f in project.files] + [root / "filmc.toml", root / "templates", lock]
        templates = root / "templates"
        if templates.is_dir():
            files += sorted(templates.iterdir())
        read = self.graph.graph.get("files")  # (compiler/graph.py keeps them)
        if read is None:
            read = {f.path for d in self.graph._node.values() for f in d["step"].files}
        files += sorted({root / p for p in read})
        backends = self.backends or {}
        files += [p for info in backends.values() for p in info.files]
        files += [p for info in backends.values() for p in info.adapter.key_files(info.settings)]
        env = sorted({v for info in backends.values() for v in info.adapter.key_env})
        return Program(self.graph, backends, root, film_name(project.main.path, root),
                       film.title, shots, config.currency, config.concurrency, config.store,
                       tuple(files), tuple(env), lock, config.cache)


def compile_film(path: Path, until: str = "graph", diags: Diagnostics | None = None,
                 loader: Loader | None = None, offline: bool = False,
                 burn_subtitles: bool = False, said: Said | None = None,
                 memo: Memo | None = None, keep: bool = False) -> Compiled:
    """`offline`: every step on the built-in `local` backend (the animatic), whatever
    filmc.toml and the shots say; keys follow, so the animatic never stands in for a
    real service's output in the cache.  `said(root, store)`: where the project's store
    knows how long the lines already said are, a lookup by speech step key
    (engine/lengths.py `lookup_for`), by which the graph times the dialogue; None (or a
    lookup of None) keeps every line's estimate.  `memo`: what a process keeps between
    compiles of one film (`Memo`), so that the scenes and shots an edit did not touch are
    not lowered or keyed again.  `keep`: what the compile made lives as long as the
    process, or until it calls `gc.unfreeze()` (a command's compile, a `build --watch`
    round): it is frozen out of the cycle collector's reach, not walked by it once more
    as the compile ends (a tenth of a feature film's compile)."""
    assert until in STAGES
    with _no_cycle_collection(keep):
        return _compile(path, until, diags, loader, offline, burn_subtitles, said, memo)


@contextlib.contextmanager
def _no_cycle_collection(keep: bool = False) -> Iterator[None]:
    """Python's cycle collector paused while compiling: a feature film's compile makes
    millions of objects that live until it returns, and the collector's passes over them
    were a quarter of its time (3,000 shots: 5.9 s → 4.6 s of CPU).  The compile makes
    few cycles; the next collection after it finds them.  `keep`: the objects frozen
    (gc.freeze) as it ends, which also sets the collector's count back, so that its first
    allocation after does not start a pass over all of them."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if keep:
            gc.freeze()
        if was:
            gc.enable()


def _compile(path: Path, until: str, diags: Diagnostics | None, loader: Loader | None,
             offline: bool, burn_subtitles: bool, said: Said | None,
             memo: Memo | None) -> Compiled:
    diags = diags if diags is not None else Diagnostics()
    loader = loader or Loader(diags)
    out = Compiled(diags, loader.sources)
    out.project = loader.load(path)
    if out.project is None:
        return out
    if memo is not None and memo.check is None:
        memo.check = CheckMemo()
    out.checked = check(out.project, diags, memo.check if memo is not None else None)
    out.config = load_config(out.project.root, diags, loader.sources)
    _check_backend_lines(out.project, out.config, diags)
    if until == "check" or diags.errors:
        return out
    # The later stages import networkx, jinja2 and the adapters: `check` does without them.
    from .backends import describe
    from .exports import ExportSetup
    from .graph import GraphError, build_graph, pickled
    from .lock import read_lock, stale_warnings
    from .passes import lower
    from .templates import TemplateError, Templates
    from .warnings import check_capabilities, check_kinds, shot_spans

    config = out.config
    out.backends = describe(config, out.project.root, diags, local_only=offline)
    check_kinds(out.project, out.backends, diags, offline)
    if diags.errors:
        return out

    def choose(kind: str, override: str | None = None) -> str:
        if offline or not KINDS[kind].assignable:
            return LOCAL
        return config.backend_for(kind, override).name

    def fallback(kind: str, backend: str, override: str | None) -> str | None:
        """The backend that makes a `kind` step `backend` refuses: the shot's `fallback`
        line, else filmc.toml's; none offline, nor one that cannot make the kind."""
        if offline:
            return None
        name = override or config.backends[backend].fallback_for(kind)
        info = out.backends.get(name) if name and name != backend else None  # type: ignore[union-attr]
        return name if info is not None and info.capabilities(kind) is not None else None

    lowered, choices = None, None
    if memo is not None:
        from .passes import LowerMemo

        memo.lower = memo.lower or LowerMemo()
        lowered = memo.lower
        try:  # what decides each shot's backends and fallbacks (what each backend can
            # make follows its settings' files too: a workflow), against the last compile's
            choices = pickled((config, offline, sorted(
                (name, dict(info.key_settings)) for name, info in out.backends.items())))
        except Exception:  # a value that does not pickle: lower it all
            lowered = None
    out.film = lower(out.project, out.checked, choose=choose, fallback=fallback, memo=lowered,
                     choices=choices)
    if until == "ir":
        return out
    out.lock = read_lock(lock_path(out.project.main.path), diags, loader.sources)
    if diags.errors:
        return out
    exports = ExportSetup(config.currency, config.exports)
    try:
        out.graph = build_graph(out.film, Templates(out.project.root), choose, out.backends,
                                burn_subtitles=burn_subtitles, lock=out.lock, exports=exports,
                                loudness=config.loudness,
                                said=said(out.project.root, config.store) if said else None,
                                memo=_graph_memo(memo))
    except TemplateError as e:
        diags.error("F0601", e.message, ast.Span(e.file, e.line, 1, e.line, 2), help=e.help)
        return out
    except GraphError as e:
        diags.error("F0602", str(e), None, help="this is a bug in filmc: please report it")
        return out
    out.film = out.graph.graph["film"]  # its dialogue timed by what was said, where known
    check_capabilities(out.project, out.graph, out.backends, diags,
                       memo.graph if memo is not None else None)
    stale_warnings(out.lock, out.graph.graph["picks"], shot_spans(out.project), diags,
                   offline=offline)
    return out


def _graph_memo(memo: Memo | None) -> Any:
    if memo is None:
        return None
    if memo.graph is None:
        from .graph import GraphMemo

        memo.graph = GraphMemo()
    return memo.graph


def _check_backend_lines(project: Project, config: Config, diags: Diagnostics) -> None:
    """Every `backend STEP NAME`, `fallback STEP NAME` and `candidates N NAME` line names a
    backend filmc.toml configures (or `local`)."""
    for a in backend_lines(project, ("backend", "fallback", "candidates")):
        name = a.values[1]
        if isinstance(name, ast.Name) and name.text not in config.backends:
            diags.error("F0240", f"backend `{name.text}` is not configured", name.span,
                        "not in filmc.toml", help=config.unknown_backend_help(name.text))


def backend_lines(project: Project, keys: tuple[str, ...] = ("backend",)) -> list[ast.Attr]:
    """Every `backend STEP NAME` line (or other line of `keys` that names a backend second)
    of the film, in its film, scene and shot blocks."""
    out = []
    for decl, _f in project.decls():
        for items in _blocks_with_defaults(decl):
            for a in ast.attrs_of(items):
                if a.key.text in keys and len(a.values) == 2:
                    out.append(a)
    return out


def _blocks_with_defaults(decl: Any) -> Any:
    if isinstance(decl, ast.Film):
        yield decl.items
    elif isinstance(decl, ast.Scene):
        yield decl.items
        for shot in decl.shots:
            yield shot.items
