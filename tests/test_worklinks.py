"""How a step's inputs reach its work folder: hard links to the store's objects.

A symbolic link costs a new inode, which on some disks takes a millisecond: the film
and its exports link thousands of inputs after every edit.  A hard link costs none;
where the store's disk or its owner refuses one, the inputs are symbolic links as
before.  Either way the step reads the object's bytes under a name that keeps their
extension.  The files a step names and never reads (an export's media, the storyboard
index's pages) are not linked at all: the step is handed the objects themselves, with
their extensions beside them.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from conftest import copy_example

from filmc.backends.protocol import Adapter, Done, Handle, Request
from filmc.compiler.pipeline import compile_film
from filmc.engine import executor as executor_module
from filmc.engine.executor import Executor, Options
from filmc.engine.journal import Journal
from filmc.engine.state import State
from filmc.engine.store import Store
from filmc.lang.steps import IN_PLACE, NAMED


class Looks(Adapter):
    """Writes each declared output as a small file, noting how each input is linked:
    (step, role, link kind, same file as the store's object)."""

    seen: list[tuple[str, str, str, bool]] = []
    objects: Path

    async def submit(self, request: Request, handle: Handle | None) -> Done:
        for i in request.inputs:
            obj = Looks.objects / i.digest[:2] / i.digest
            kind = "object" if i.path == obj else "symbolic" if i.path.is_symlink() else "hard"
            assert i.ext.startswith(".") and (kind == "object" or i.path.suffix == i.ext)
            Looks.seen.append((str(request.step), i.role, kind, os.path.samefile(i.path, obj)))
            assert i.path.read_bytes() == obj.read_bytes()
        out = {}
        for o in request.outputs:
            path = request.workdir / f"{o.name}.bin"
            path.write_text(request.key)
            out[o.name] = [str(path)] if o.many else str(path)
        return Done(out)


def build(project: Path) -> list[tuple[str, str, str, bool]]:
    compiled = compile_film(project / "film.film", offline=True)
    assert compiled.ok
    Looks.seen = []
    with Store.open(project / ".filmc", create=True) as store, \
            State.open(project, create=True) as state:
        Looks.objects = store.objects.root
        journal = Journal(state.path / "journal.log")
        ex = Executor(compiled.program(), store, state, journal, Options(),
                      adapters=lambda info, setup: Looks(setup))
        outcomes = asyncio.run(ex.run())
        journal.close()
    assert {o.status for o in outcomes} <= {"ran", "reused", "provided"}
    return Looks.seen


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "w")


def test_inputs_are_hard_links_to_the_objects(project: Path) -> None:
    seen = build(project)
    film = [s for s in seen if s[0] == "film"]
    assert film and {kind for _s, role, kind, _same in seen
                     if role not in NAMED | IN_PLACE} == {"hard"}
    assert all(same for *_x, same in seen)
    named = [s for s in seen if s[1] in NAMED]
    assert {s[0] for s in named} >= {"export.otio", "storyboard_index"}
    assert {kind for _s, _r, kind, _same in named} == {"object"}
    # the film's shots, which the local renderer reads by their content, are the objects
    assert {kind for _s, role, kind, _same in film if role in IN_PLACE} == {"object"}


def test_where_a_hard_link_is_refused_the_inputs_are_symbolic_links(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(executor_module.os, "link", refuse)
    seen = build(project)
    assert seen and {kind for _s, role, kind, _same in seen
                     if role not in NAMED | IN_PLACE} == {"symbolic"}
    assert all(same for *_x, same in seen)
