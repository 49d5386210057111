"""What the last build made of each step (engine/state.py `record_last`): a step reused
as it was is not written again, a relabelled one is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filmc.engine.state import State


def _record(backend: str | None, inputs: dict, files: dict, prompt: str = "a wolf") -> dict:
    return {"kind": "keyframe", "prompt": prompt, "backend": backend, "inputs": inputs,
            "files": files}


def _version_1(root: Path, more: str = "") -> Any:
    """A version 1 state.db in `root`/.filmc (its last_build with `more` columns too)."""
    import sqlite3

    folder = root / ".filmc"
    folder.mkdir()
    db = sqlite3.connect(folder / "state.db")
    db.executescript(
        "CREATE TABLE last_build (node TEXT PRIMARY KEY, key TEXT NOT NULL, record TEXT NOT "
        f"NULL{more}); CREATE TABLE uploads (scope TEXT NOT NULL, digest TEXT NOT NULL, "
        "value TEXT NOT NULL, PRIMARY KEY (scope, digest)); PRAGMA user_version=1;")
    return db


def test_only_what_changed_is_written(tmp_path: Path) -> None:
    first = [("keyframe.a.b.local-1", "k1", _record("local", {"sheet.CHEN": "s1"}, {})),
             ("sheet.CHEN", "s1", _record(None, {}, {"refs/陈.png": "d1"}))]
    with State.open(tmp_path, create=True) as state:  # type: ignore[union-attr]
        state.record_last(first)
        assert state.last_records(["keyframe.a.b.local-1", "sheet.CHEN"]) == {
            n: (k, r) for n, k, r in first}
        with state.sql() as db:
            before = db.total_changes
        state.record_last(first)  # reused as it was: nothing written
        with state.sql() as db:
            assert db.total_changes == before
        # The same key under another backend name, another input id or file path: written.
        moved = [("keyframe.a.b.local-1", "k1", _record("animatic", {"sheet.CHEN": "s1"}, {})),
                 ("sheet.CHEN", "s1", _record(None, {}, {"refs/chen.png": "d1"}))]
        state.record_last(moved)
        assert state.last_records(["keyframe.a.b.local-1", "sheet.CHEN"]) == {
            n: (k, r) for n, k, r in moved}
        changed = [("keyframe.a.b.local-1", "k2",
                    _record("animatic", {"sheet.CHEN": "s1"}, {}, prompt="two wolves"))]
        state.record_last(changed)
        assert state.last_records(["keyframe.a.b.local-1"])["keyframe.a.b.local-1"] == (
            "k2", changed[0][2])


def test_a_state_of_the_version_before_keeps_its_rows(tmp_path: Path) -> None:
    """The labels column came with version 2: a version 1 state keeps what it remembers
    (the last build, the uploads) and gains the column, filled by the next build."""

    db = _version_1(tmp_path)
    row = _record("local", {"sheet.CHEN": "s1"}, {})
    db.execute("INSERT INTO last_build VALUES (?, ?, ?)",
               ("keyframe.a.b.local-1", "k1", '{"backend":"local","files":{},"inputs":{'
                                               '"sheet.CHEN":"s1"},"kind":"keyframe",'
                                               '"prompt":"a wolf"}'))
    db.execute("INSERT INTO uploads VALUES ('fal', 'd1', '\"https://x/1\"')")
    db.commit()
    db.close()
    with State.open(tmp_path) as state:  # type: ignore[union-attr]
        assert state.last_records(["keyframe.a.b.local-1"]) == {
            "keyframe.a.b.local-1": ("k1", row)}
        assert state.get("fal", "d1") == "https://x/1"
        state.record_last([("keyframe.a.b.local-1", "k1", row)])  # its labels written
        with state.sql() as con:
            before = con.total_changes
        state.record_last([("keyframe.a.b.local-1", "k1", row)])
        with state.sql() as con:
            assert con.total_changes == before


def test_a_migration_cut_short_or_run_twice_leaves_a_usable_state(tmp_path: Path) -> None:
    """A version 1 state whose column was added by a process killed before it set the
    version (as a migration in two transactions could leave it), opened by two processes
    one after the other: each open works, rows kept."""
    import sqlite3
    import subprocess
    import sys

    db = _version_1(tmp_path, ", labels TEXT NOT NULL DEFAULT ''")
    folder = tmp_path / ".filmc"
    db.execute("INSERT INTO uploads VALUES ('fal', 'd1', '\"https://x/1\"')")
    db.commit()
    db.close()
    opener = ("import sys; from pathlib import Path; from filmc.engine.state import State; "
              "s = State.open(Path(sys.argv[1])); print(s.get('fal', 'd1'))")
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", opener, tmp_path], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "https://x/1"
    with sqlite3.connect(folder / "state.db") as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 2
