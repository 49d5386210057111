"""The graph a process keeps between compiles (compiler/graph.py `GraphMemo`): after every
kind of edit, a compile that puts back the steps of the unchanged shots makes exactly the
graph a fresh compile makes: the same nodes in the same order, each with the same data
(its step's key, record, fields, pin, waits, whether it is optional), the same edges in
the same order, the same picks; and it keys again only what the edit touched.

The same for the lowering a process keeps (compiler/passes.py `LowerMemo`): the whole IR
is compared too.  The example film (several backends, candidates, takes, outfits, reference images,
dialogue, music), edited as a user edits it: a camera, an action, continuity lines, a
shot added, removed and moved, a pick in film.lock, a template, filmc.toml, a character,
the film's frame rate, the lines' real lengths.  Online and offline.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import pytest
from conftest import copy_example

from filmc.compiler.keys import canonical
from filmc.compiler.pipeline import Memo, compile_film


def signature(graph: Any) -> tuple:
    """Everything a graph says, in order, as text that tells 1 from 1.0 and 1/2 from 0.5.
    A step's `spliced` parts (the text of parts of its record, kept by a process that
    compiles again) are not compared: each must be that part's text."""
    nodes = []
    for n, data in graph.nodes(data=True):
        rest = {k: _ordered(v) for k, v in data.items() if k != "step"}
        step = {k: _ordered(v) for k, v in attrs.asdict(data["step"], recurse=False).items()}
        for path, text in (step.pop("spliced") or {}).items():
            value = data["step"].record
            for k in path:
                value = value[k]
            assert text == canonical(value), (n, path)
        nodes.append((n, repr(rest), repr(step)))
    return (nodes, list(graph.edges()), [(n, list(graph.pred[n])) for n in graph],
            repr(sorted(graph.graph["picks"].items())), graph.graph["retimed"],
            graph.graph["lock"], repr(graph.graph["film"]))


def _ordered(value: Any) -> Any:
    """A set as its sorted list: equal sets may iterate in another order (one a pickle
    rebuilt: tests/test_memocache.py), which no key and no output reads."""
    return sorted(value) if isinstance(value, (set, frozenset)) else value


def same_as_fresh(main: Path, memo: Memo, offline: bool, said: Any = None) -> None:
    kept = compile_film(main, offline=offline, memo=memo, said=said)
    fresh = compile_film(main, offline=offline, said=said)
    assert [repr(d) for d in kept.diags.sorted()] == [repr(d) for d in fresh.diags.sorted()]
    if not fresh.ok:
        assert not kept.ok
        return
    a, b = signature(kept.graph), signature(fresh.graph)
    for part, (x, y) in enumerate(zip(a, b)):
        if x != y and isinstance(x, list):
            first = next(((p, q) for p, q in zip(x, y) if p != q), (len(x), len(y)))
            pytest.fail(f"part {part} differs from a fresh compile's: {str(first)[:400]}")
        assert x == y, part


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture()
def film(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "wolfpack")


def _said(lengths: Mapping[int, Fraction]) -> Callable[[Path, str | None], Any]:
    """A store that knows how long some lines were said: the nth speech key asked → length."""
    def lookup_for(_root: Path, _store: str | None) -> Callable[[list[str]], Mapping]:
        return lambda keys: {keys[i]: s for i, s in lengths.items() if i < len(keys)}
    return lookup_for


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "online"])
def test_every_edit_gives_the_graph_a_fresh_compile_gives(film: Path, offline: bool) -> None:
    main, hunt = film / "film.film", film / "scenes" / "01_hunt.film"
    # a warning in a scene no edit touches: put back with the scene, said every time
    edit(film / "scenes" / "04_storm.film", '    action "A white wall of blizzard',
         '    CHEN: "Look."\n    action "A white wall of blizzard')
    whole = Memo()
    same_as_fresh(main, whole, offline)
    memo = whole.graph
    shots = memo.made
    assert shots > 40 and memo.reused == 0

    same_as_fresh(main, whole, offline)  # nothing changed: nothing lowered or keyed again
    assert memo.made == 0 and memo.reused == shots
    scenes = whole.lower.reused
    assert scenes >= 3 and whole.lower.made == 0
    assert whole.check.made == 0 and whole.check.reused == scenes
    assert any(d.code == "W0501" for d in compile_film(main, offline=offline, memo=whole).diags)

    # One shot's camera: its own calls again (keyframes, clips, shot), nothing else.
    edit(hunt, "camera extreme_close_up eye_level telephoto static",
         "camera extreme_close_up eye_level telephoto slow_push")
    same_as_fresh(main, whole, offline)
    assert memo.made == 3, memo.made
    assert whole.lower.made == 1 and whole.lower.reused == scenes - 1  # the hunt alone

    edit(hunt, "graze with their heads down, unaware.", "graze, unaware.")
    same_as_fresh(main, whole, offline)
    assert 1 <= memo.made <= 4

    # Continuity: a shot that starts where the one before ends, and ends on the next one's
    # keyframe; then the shot before it changes, and so must this one's clips.
    edit(hunt, "    cast ALPHA\n    action \"Through the binoculars",
         "    cast ALPHA\n    first_frame previous\n    last_frame next\n"
         "    action \"Through the binoculars")
    same_as_fresh(main, whole, offline)
    edit(hunt, "Chen raises a pair of old army binoculars", "Chen lifts a pair of old binoculars")
    same_as_fresh(main, whole, offline)
    assert memo.made >= 3  # chen_watches, and binocular_pov's last frame, clips and shot
    edit(hunt, "The lead wolf's amber eyes", "The leader's amber eyes")  # the next shot
    same_as_fresh(main, whole, offline)

    # A mistake, then mended: the other scenes' warnings are put back, not found again.
    yurt = film / "scenes" / "02_yurt.film"
    text = yurt.read_text(encoding="utf-8")
    yurt.write_text(text.replace("    action ", "    actoin ", 1), encoding="utf-8")
    same_as_fresh(main, whole, offline)
    yurt.write_text(text, encoding="utf-8")
    same_as_fresh(main, whole, offline)
    assert whole.check.made == 1 and whole.check.reused >= 2

    # A shot added, then moved, then removed; a line of dialogue added.
    edit(hunt, "  shot gazelles_graze 3s {",
         "  shot new_one 2s {\n    camera wide\n    action \"Wind in the grass.\"\n  }\n\n"
         "  shot gazelles_graze 3s {")
    same_as_fresh(main, whole, offline)
    # its three calls: the shots after it are renumbered, not keyed again
    assert memo.made == 3 and whole.lower.made == 1, (memo.made, whole.lower.made)
    edit(hunt, "  shot new_one 2s {\n    camera wide\n    action \"Wind in the grass.\"\n  }\n\n", "")
    edit(hunt, "    action \"Chen and Bilgee lie flat",
         "    CHEN: \"There.\"\n    action \"Chen and Bilgee lie flat")
    same_as_fresh(main, whole, offline)

    # A scene's title: drawn on its storyboard pages and said by the exports, in no key of
    # a shot's own steps.
    edit(hunt, 'scene hunt "The Hunt"', 'scene hunt "The Great Hunt"')
    same_as_fresh(main, whole, offline)
    assert memo.made == 0

    # A pick in film.lock: that shot's keyframe is pinned, its other candidates optional.
    (film / "film.lock").write_text(
        'version = 1\n\n[alpha_eyes]\nkeyframe = { pick = "'
        + ("local" if offline else "openai") + '-2", key = "' + "0" * 64
        + '", digest = "' + "1" * 64 + '" }\n', encoding="utf-8")
    same_as_fresh(main, whole, offline)
    assert memo.made <= 6

    # The lines' real lengths, as the store would know them after a build said them.
    same_as_fresh(main, whole, offline, said=_said({0: Fraction(3, 2), 2: Fraction(1)}))
    same_as_fresh(main, whole, offline, said=_said({0: Fraction(2)}))

    # What every shot reads: a template of the project's own, filmc.toml, a character,
    # the frame rate.  Then nothing of the last compile can be put back.
    (film / "templates").mkdir()
    shutil.copy(Path(__file__).parents[1] / "stdlib" / "templates" / "keyframe.j2",
                film / "templates" / "keyframe.j2")
    with (film / "templates" / "keyframe.j2").open("a", encoding="utf-8") as f:
        f.write("{# the project's own #}\n")
    same_as_fresh(main, whole, offline)
    assert memo.reused == 0
    toml = film / "filmc.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('currency = "USD"',
                                                             'currency = "EUR"'),
                    encoding="utf-8")
    same_as_fresh(main, whole, offline)
    edit(film / "cast.film", "look \"Mongolian herdsman", "look \"tall Mongolian herdsman")
    same_as_fresh(main, whole, offline)
    assert memo.reused == 0
    edit(main, "  candidates 2\n", "  candidates 3\n")  # the film's default, in every scene
    same_as_fresh(main, whole, offline)
    assert whole.lower.reused == 0
    edit(main, "fps 24", "fps 25")
    same_as_fresh(main, whole, offline)
    assert memo.reused == 0
    same_as_fresh(main, whole, offline)
    assert memo.made == 0
