"""The executor's own logic, with an in-process adapter that writes small files.

What runs, what is reused, what a failure stops, and what a damaged object
costs; the real renderers and the command line are tested end to end in
tests/test_build.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from conftest import copy_example

from filmc.backends.protocol import Adapter, BackendError, Done, Handle, Request
from filmc.compiler.pipeline import compile_film
from filmc.engine.executor import Events, Executor, Options
from filmc.engine.journal import Journal
from filmc.engine.state import State
from filmc.engine.store import Store


class Fake(Adapter):
    """Writes each declared output as a small file; fails the steps whose id is in `fail`."""

    runs: Counter = Counter()
    fail: set[str] = set()

    async def submit(self, request: Request, handle: Handle | None) -> Done:
        await asyncio.sleep(0.001)
        Fake.runs[request.key] += 1
        if str(request.step) in Fake.fail:
            raise BackendError("the service refused the prompt")
        for i in request.inputs:
            assert i.path.read_bytes()  # every input is there, readable
        out = {}
        for o in request.outputs:
            path = request.workdir / f"{o.name}.bin"
            path.write_text(request.key)
            out[o.name] = [str(path)] if o.many else str(path)
        return Done(out)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "w")


def build(project: Path, fail: set[str] = frozenset(), events: Events | None = None,
          **options) -> dict[str, str]:
    """An offline build (every step on `local`) whose renders are the fake's."""
    compiled = compile_film(project / "film.film", offline=True)
    assert compiled.ok
    Fake.fail = set(fail)
    with Store.open(project / ".filmc", create=True) as store, \
            State.open(project, create=True) as state:
        journal = Journal(state.path / "journal.log")
        ex = Executor(compiled.program(), store, state, journal, Options(**options),
                      events=events, adapters=lambda info, setup: Fake(setup))
        if events is not None:
            events.executor = ex  # type: ignore[attr-defined]
        outcomes = asyncio.run(ex.run())
        journal.close()
    return {o.id: o.status for o in outcomes}


def ran(statuses: dict[str, str]) -> set[str]:
    """What ran, but the exports: they follow any edit (tests/test_export.py)."""
    return {n for n, s in statuses.items() if s == "ran" and not n.startswith("export.")}


def test_first_build_runs_everything_then_nothing(project: Path) -> None:
    first = build(project)
    assert set(first.values()) == {"ran", "provided"}
    assert first["film"] == "ran" and first["sheet.CHEN.winter"] == "provided"
    again = build(project)
    assert ran(again) == set() and again["film"] == "cached"


def test_editing_one_shot_runs_exactly_its_steps(project: Path) -> None:
    build(project)
    part = project / "scenes" / "01_hunt.film"
    part.write_text(part.read_text().replace(
        "camera close_up ground_level portrait_lens slow_push",
        "camera medium ground_level portrait_lens slow_push"))
    expected = ({f"keyframe.hunt.chen_watches.local-{n}" for n in range(1, 5)}
                | {"clip.hunt.chen_watches.take1", "clip.hunt.chen_watches.take2"}
                | {"shot.hunt.chen_watches", "film", "storyboard.hunt", "storyboard_index"})
    assert ran(build(project)) == expected


def test_after_an_edit_the_first_step_starts_before_the_rest_are_settled(
        project: Path) -> None:
    """The edited shot's first step goes to its backend as soon as what it is made from is
    settled, not after every step the build reuses; the user's own images are found in
    the store like any step (`provided`, not copied in again)."""
    build(project)
    part = project / "scenes" / "01_hunt.film"
    part.write_text(part.read_text().replace("camera close_up ground_level",
                                             "camera medium ground_level"))

    class Watch(Events):
        settled_then: dict[str, int] = {}

        def started(self, node: str) -> None:
            self.settled_then[node] = len(self.executor._tasks)  # type: ignore[attr-defined]

    watch = Watch()
    statuses = build(project, events=watch)
    first = "keyframe.hunt.chen_watches.local-1"
    assert statuses[first] == "ran" and statuses["sheet.CHEN.winter"] == "provided"
    assert "sheet.CHEN.winter" not in watch.settled_then  # reused, not stored again
    # the keyframe started when only it, the references it is made from and its siblings
    # had been settled: not the other shots' steps
    assert watch.settled_then[first] < len(statuses) // 4
    assert watch.settled_then["film"] == len(statuses)


def test_the_review_page_is_written_while_the_film_is_being_made(project: Path) -> None:
    """The contact sheet and the static review page need the keyframes and the clips
    alone: the build writes them once those are made, while the shots, the film and the
    exports are with their backend, and the page names every candidate.  (The pages are
    written in a thread of their own, so the film's backend waits a while for the page
    to appear, as a real one takes seconds: a page written only after the build would
    never appear while the film is being made.)"""
    from filmc.engine.build import build as whole_build
    from filmc.engine.layout import film_dir

    compiled = compile_film(project / "film.film", offline=True)
    assert compiled.ok
    program = compiled.program()
    page = film_dir(program.root, program.name) / "review" / "index.html"
    seen: dict[str, bool] = {}

    class Watching(Fake):
        async def submit(self, request: Request, handle: Handle | None) -> Done:
            if str(request.step) == "keyframe.hunt.chen_watches.local-1":
                seen[str(request.step)] = page.is_file()
            elif str(request.step) == "film":
                for _ in range(200):  # 10 s
                    if page.is_file():
                        break
                    await asyncio.sleep(0.05)
                seen["film"] = page.is_file()
            done = await super().submit(request, handle)
            if request.kind == "timeline":  # laid out as JSON (the key, as written, is not)
                Path(str(done.outputs["timeline"])).write_text(json.dumps({"clips": []}))
            return done

    Fake.fail = set()
    done = whole_build(program, Options(), Events(),
                       adapters=lambda info, setup: Watching(setup))
    assert not done.bug and done.report["counts"].get("failed") is None
    assert seen == {"keyframe.hunt.chen_watches.local-1": False, "film": True}
    text = page.read_text(encoding="utf-8")
    assert "chen_watches" in text and "local-4" in text


def test_each_key_runs_once(project: Path) -> None:
    Fake.runs.clear()
    build(project, jobs=8)
    assert Fake.runs and max(Fake.runs.values()) == 1


def test_keep_going_skips_only_what_depends_on_the_failure(project: Path) -> None:
    bad = "clip.hunt.chen_watches.take1"
    statuses = build(project, fail={bad}, keep_going=True)
    assert statuses[bad] == "failed"
    assert statuses["shot.hunt.chen_watches"] == "skipped" and statuses["film"] == "skipped"
    assert statuses["shot.hunt.steppe_vista"] == "ran"  # the others finish
    # the next build runs only the failed step and what it blocked
    again = build(project)
    assert ran(again) == {bad, "shot.hunt.chen_watches", "film"}


def test_without_keep_going_a_failure_stops_the_build(project: Path) -> None:
    statuses = build(project, fail={"sheet.CHEN.student"}, jobs=1)
    assert statuses["sheet.CHEN.student"] == "failed"
    assert "skipped" in statuses.values()
    assert statuses["film"] == "skipped"


def test_a_damaged_object_is_made_again(project: Path) -> None:
    build(project)
    compiled = compile_film(project / "film.film", offline=True)
    step = compiled.graph.nodes["keyframe.hunt.chen_watches.local-1"]["step"]
    with Store.open(project / ".filmc") as store:
        digest = store.get_actions([step.key])[step.key].outputs[0]["digest"]
        path = store.objects.path(digest)
    os.chmod(path, 0o644)
    path.write_text("damaged")
    statuses = build(project)
    assert statuses["keyframe.hunt.chen_watches.local-1"] == "ran"
    assert ran(statuses) == {"keyframe.hunt.chen_watches.local-1"}  # its dependents keep their keys


def test_force_and_until(project: Path) -> None:
    statuses = build(project, until="keyframe")
    kinds = {n.split(".")[0] for n, s in statuses.items()}
    assert kinds <= {"sheet", "plate", "keyframe", "storyboard", "storyboard_index"}
    statuses = build(project, force=frozenset({"keyframe.hunt.chen_watches.local-2"}),
                     until="keyframe")
    assert ran(statuses) == {"keyframe.hunt.chen_watches.local-2"}


def test_a_reference_file_changed_after_the_compile_is_not_stored_under_its_old_key(
        project: Path) -> None:
    """The compile hashed the user's image into the keys; a file that changes before the
    build copies it must fail its step, not enter the store under a key it no longer has."""
    compiled = compile_film(project / "film.film", offline=True)
    ref = project / "refs" / "chen_winter.png"
    ref.write_bytes(ref.read_bytes() + b"\0")
    Fake.fail = set()
    with Store.open(project / ".filmc", create=True) as store, \
            State.open(project, create=True) as state:
        journal = Journal(state.path / "journal.log")
        ex = Executor(compiled.program(), store, state, journal, Options(keep_going=True),
                      adapters=lambda info, setup: Fake(setup))
        outcomes = {o.id: o for o in asyncio.run(ex.run())}
        journal.close()
    sheet = outcomes["sheet.CHEN.winter"]
    assert sheet.status == "failed" and "changed while the build started" in (sheet.error or "")
    assert outcomes["keyframe.hunt.chen_watches.local-1"].status == "skipped"


def test_first_steps_are_those_no_other_step_to_make_comes_before() -> None:
    """A one-shot edit: its keyframe comes first (with the sheet it is made from), not the
    film or the export made from it, nor the storyboard drawn from it; a take the export
    holds counts as coming before it.  Checked against the definition, a walk back from
    each step, on random graphs too."""
    import random
    from types import SimpleNamespace

    import networkx as nx

    from filmc.engine.executor import first_steps

    def graph(edges: list[tuple[str, str]], held: dict[str, list[str]]) -> nx.DiGraph:
        g = nx.DiGraph()
        for a, b in edges:
            g.add_edge(a, b)
        for n in g.nodes:
            refs = tuple(SimpleNamespace(step=h) for h in held.get(n, ()))
            g.nodes[n]["step"] = SimpleNamespace(held=refs)
        return g

    def by_definition(g: nx.DiGraph, nodes: list[str], run: set[str],
                      touched: set[str]) -> list[str]:
        def before(n: str) -> set[str]:
            seen, stack = set(), [n]
            while stack:
                m = stack.pop()
                if m not in seen:
                    seen.add(m)
                    stack += [*g.predecessors(m), *(h.step for h in g.nodes[m]["step"].held
                                                    if h.step in touched)]
            return seen
        ahead = set()
        for r in run:
            if not (before(r) - {r}) & run:
                ahead |= before(r)
        return [n for n in nodes if n in ahead]

    edges = [("sheet", "kf1"), ("sheet", "kf2"), ("kf1", "clip1"), ("kf2", "clip2"),
             ("clip1", "shot1"), ("clip2", "shot2"), ("shot1", "film"), ("shot2", "film"),
             ("kf1", "board"), ("kf2", "board"), ("shot1", "otio"), ("shot2", "otio")]
    g = graph(edges, {"otio": ["take2"]})
    g.add_edge("kf2", "take2")
    g.nodes["take2"]["step"] = SimpleNamespace(held=())
    nodes = list(nx.topological_sort(g))
    assert first_steps(g, nodes, {"kf1", "clip1", "board", "film", "otio"}, set(nodes)) == \
        [n for n in nodes if n in {"sheet", "kf1"}]
    # the export holds take2, which is made: the export waits for it
    assert set(first_steps(g, nodes, {"take2", "otio"}, set(nodes))) == {"sheet", "kf2", "take2"}
    assert first_steps(g, nodes, {"otio"}, set(nodes)) == \
        [n for n in nodes if n not in {"film", "board"}]
    rng = random.Random(7)
    for _ in range(200):
        names = [f"n{i}" for i in range(rng.randint(2, 25))]
        edges = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if rng.random() < 0.15]
        held = {b: [a for a in names[:i] if rng.random() < 0.05] for i, b in enumerate(names)}
        g = graph(edges, held)
        for n in names:
            if n not in g:
                g.add_node(n, step=SimpleNamespace(held=tuple(
                    SimpleNamespace(step=h) for h in held.get(n, ()))))
        # what a build touches: some targets and all they are made from; it makes some
        touched = set()
        stack = [n for n in names if rng.random() < 0.4]
        while stack:
            n = stack.pop()
            if n not in touched:
                touched.add(n)
                stack += g.predecessors(n)
        nodes = [n for n in names if n in touched]
        run = {n for n in nodes if rng.random() < 0.3}
        assert first_steps(g, nodes, run, touched) == by_definition(g, nodes, run, touched)
