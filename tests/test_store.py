"""The store and the project's state: objects, the action log and its index, the last
build, the upload cache, the job journal — and what each survives."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from filmc.backends.protocol import Handle
from filmc.engine.journal import Journal, read_open
from filmc.engine.state import State
from filmc.engine.store import STORE_ENV, Store, StoreError, location

KEY_A = "a" * 64
KEY_B = "b" * 64
OUT = [{"output": "image", "digest": KEY_B, "ext": ".png"}]


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / ".filmc", create=True) as s:
        yield s


def reopen(path: Path) -> Store:
    s = Store.open(path)
    assert s is not None
    return s


def test_no_store_until_created(tmp_path: Path) -> None:
    path = tmp_path / ".filmc"
    assert Store.open(path) is None
    assert not path.exists()
    Store.open(path, create=True).close()  # type: ignore[union-attr]
    assert (path / "index.db").is_file()
    assert (path / ".gitignore").read_text().splitlines()[-1] == "*"
    with reopen(path) as s:
        assert s.actions_present([KEY_A]) == set()


def test_wal_mode_on(store: Store) -> None:
    db = sqlite3.connect(store.db_path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_action_round_trip(store: Store) -> None:
    assert store.get_actions([KEY_A]) == {}
    store.record_action(KEY_A, OUT, {"backend": "local", "seconds": 0.4, "cost": 0.0})
    store.close()
    with reopen(store.path) as again:  # survives closing
        action = again.get_actions([KEY_A])[KEY_A]
        assert list(action.outputs) == OUT
        assert action.meta == {"backend": "local", "cost": 0.0, "seconds": 0.4}


def test_a_remade_action_is_read_as_remade(store: Store) -> None:
    """Records are decoded once a process (a watch reads them at every build): a step
    made again under the same key is read as made the second time, never as remembered."""
    store.record_action(KEY_A, OUT, {"backend": "local", "seconds": 0.4})
    first = store.get_actions([KEY_A, KEY_B])[KEY_A]
    assert store.get_actions([KEY_A])[KEY_A] is first  # the same record, decoded once
    other = [{"output": "image", "digest": "c" * 64, "ext": ".jpg"}]
    store.record_action(KEY_A, other, {"backend": "local", "seconds": 0.9})
    again = store.get_actions([KEY_A])[KEY_A]
    assert list(again.outputs) == other and again.meta["seconds"] == 0.9


def test_actions_present_many_keys(store: Store) -> None:
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(3000)]
    for k in keys[::3]:
        store.record_action(k, [], {})
    assert store.actions_present([*keys, "not-a-key"]) == set(keys[::3])
    assert store.actions_present([]) == set()


# --- the index is derived from the action log -----------------------------------------------


def _fill(store: Store, n: int = 50) -> list[str]:
    keys = [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(n)]
    for k in keys:
        store.record_action(k, OUT, {"backend": "comfyui", "cost": 0.04})
    return keys


@pytest.mark.parametrize("damage", ["zero bytes", "deleted", "garbage", "foreign database"])
def test_a_lost_index_is_rebuilt_from_the_log(store: Store, damage: str) -> None:
    """Every cached step was paid for: losing the index must not lose one."""
    keys = _fill(store)
    store.close()
    db = store.db_path
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    if damage == "zero bytes":
        db.write_bytes(b"")
    elif damage == "deleted":
        db.unlink()
    elif damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    else:
        db.unlink()
        other = sqlite3.connect(db)
        other.execute("CREATE TABLE other (x)")
        other.commit()
        other.close()
    with reopen(store.path) as again:
        assert again.actions_present(keys) == set(keys)
        assert again.get_actions([keys[0]])[keys[0]].meta["cost"] == 0.04
        assert any("rebuilt" in n or "set aside" in n for n in again.notes), again.notes
    if damage in ("garbage", "foreign database"):  # kept for a look, out of the way
        assert list(store.path.glob("index.db.damaged-*"))


def test_an_index_behind_its_log_catches_up(store: Store) -> None:
    """A build killed between the log line and the index transaction."""
    _fill(store, 3)
    store.log.append([{"key": KEY_A, "outputs": OUT, "meta": {"backend": "openai"}}])
    store.close()
    with reopen(store.path) as again:
        assert KEY_A in again.actions_present([KEY_A])


def test_a_torn_last_line_is_skipped_and_the_next_record_kept(store: Store) -> None:
    _fill(store, 2)
    store.close()
    with open(store.path / "actions.log", "ab") as f:
        f.write(b'{"key": "' + KEY_A.encode())  # killed mid-write
    with reopen(store.path) as again:
        assert KEY_A not in again.actions_present([KEY_A])
        again.record_action(KEY_B, OUT, {})
    (store.path / "index.db").unlink()
    with reopen(store.path) as rebuilt:
        assert rebuilt.actions_present([KEY_A, KEY_B]) == {KEY_B}
        assert len(rebuilt.actions_present(_keys(2))) == 2


def _keys(n: int) -> list[str]:
    return [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(n)]


def test_forgotten_actions_stay_forgotten_after_a_rebuild(store: Store) -> None:
    keys = _fill(store, 4)
    store.collect(set(keys[:2]))
    assert store.actions_present(keys) == set(keys[:2])
    store.close()
    (store.path / "index.db").unlink()
    with reopen(store.path) as again:
        assert again.actions_present(keys) == set(keys[:2])


def test_newer_index_is_refused(store: Store) -> None:
    store.close()
    db = sqlite3.connect(store.db_path)
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(StoreError) as e:
        Store.open(store.path)
    assert "newer filmc" in e.value.message


def test_closed_store_is_a_store_error(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError):
        store.get_actions([KEY_A])


def test_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_ENV, "cache/store")
    assert location(tmp_path) == tmp_path / "cache" / "store"
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "abs"))
    assert location(tmp_path / "project") == tmp_path / "abs"
    assert location(tmp_path, configured="from_config", environ={}) == tmp_path / "from_config"
    assert location(tmp_path, environ={}) == tmp_path / ".filmc"


# --- objects ----------------------------------------------------------------------------


def test_object_write_is_atomic_and_read_only(tmp_path: Path, store: Store) -> None:
    data = b"\x89PNG not really" * 1000
    digest = store.objects.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    path = store.objects.path(digest)
    assert path == store.path / "objects" / digest[:2] / digest
    assert path.read_bytes() == data
    assert not os.stat(path).st_mode & 0o222  # read-only
    assert list((store.path / "tmp").iterdir()) == []  # the temp file was renamed away
    src = tmp_path / "clip.mp4"
    src.write_bytes(data)
    assert store.objects.put(src) == digest  # same content, same object, written once
    assert store.objects.verify(digest) and store.objects.trusted(digest)


def test_failed_object_write_leaves_nothing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        store.objects.put(tmp_path / "does_not_exist.png")
    assert list((store.path / "tmp").iterdir()) == []
    assert not any(p.is_file() for p in (store.path / "objects").rglob("*"))


def test_damage_is_noticed_without_reading(store: Store) -> None:
    """A changed object fails its hash; one whose permissions changed (size, mtime and
    inode intact) is no longer trusted by its signature, and is checked again."""
    digest = store.objects.put(b"frame data")
    path = store.objects.path(digest)
    os.chmod(path, 0o000)
    assert store.objects.trusted(digest) is None  # the signature no longer matches
    if os.getuid() != 0:  # root reads anything: the mode alone is what tells
        assert not store.objects.verify(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"frame dat4")
    assert not store.objects.ok(digest)
    assert not store.objects.ok("c" * 64)  # absent
    with pytest.raises(ValueError):
        store.objects.path("../../etc/passwd")


def test_verified_signatures_persist(store: Store) -> None:
    digest = store.objects.put(b"pixels")
    store.record_action(KEY_A, [{"output": "image", "digest": digest, "ext": ".png"}], {})
    store.close()
    with reopen(store.path) as again:
        assert again.objects.trusted(digest) is True  # no hashing on the next build


# --- the project's state ----------------------------------------------------------------------


def test_last_build_round_trip(tmp_path: Path) -> None:
    record = {"kind": "clip", "params": {"duration": Fraction(7, 2), "palette": ("#fff",)},
              "inputs": {"keyframe.a.b.take1": KEY_A}}
    assert State.open(tmp_path) is None
    with State.open(tmp_path, create=True) as state:  # type: ignore[union-attr]
        state.record_last([("clip.a.b.take1", KEY_B, record), ("film", KEY_A, {})])
        got = state.last_records(["clip.a.b.take1", "nope"])
        assert got == {"clip.a.b.take1": (KEY_B, {"kind": "clip",
                                                  "params": {"duration": "7/2",
                                                             "palette": ["#fff"]},
                                                  "inputs": {"keyframe.a.b.take1": KEY_A}})}
        state.record_last([("film", KEY_B, {})])  # a partial build updates its own rows
        assert state.last_keys(["film", "clip.a.b.take1"]) == {"film": KEY_B,
                                                               "clip.a.b.take1": KEY_B}


def test_state_reader_while_writing(tmp_path: Path) -> None:
    """WAL: `filmc plan` reads while a build writes, and is never blocked."""
    writer = State.open(tmp_path, create=True)
    reader = State.open(tmp_path)
    assert writer is not None and reader is not None
    writer.record_last([("film", KEY_A, {})])
    seen = []

    def rows():
        for i in range(200):
            if i == 100:
                t = threading.Thread(target=lambda: seen.append(reader.last_keys(["film"])))
                t.start()
                t.join(timeout=10)
            yield (f"shot.s.{i}", KEY_B, {"i": i})

    try:
        writer.record_last(rows())
        assert seen == [{"film": KEY_A}]
        assert len(reader.last_keys([f"shot.s.{i}" for i in range(200)])) == 200
    finally:
        writer.close()
        reader.close()


def test_a_damaged_state_starts_over(tmp_path: Path) -> None:
    (tmp_path / ".filmc").mkdir()
    (tmp_path / ".filmc" / "state.db").write_bytes(b"garbage" * 1000)
    with State.open(tmp_path, create=True) as state:  # type: ignore[union-attr]
        assert state.last_keys(["film"]) == {}


def test_upload_cache(tmp_path: Path) -> None:
    with State.open(tmp_path, create=True) as state:  # type: ignore[union-attr]
        assert state.get("comfyui:http://a", KEY_A) is None
        state.put("comfyui:http://a", KEY_A, {"name": "filmc-aaaa.png"})
        assert state.get("comfyui:http://a", KEY_A) == {"name": "filmc-aaaa.png"}
        assert state.get("comfyui:http://b", KEY_A) is None


# --- the job journal ----------------------------------------------------------------------


def test_journal_keeps_open_jobs_across_builds(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"

    async def first() -> None:
        j = Journal(path)
        await j.submitting(KEY_A, "keyframe.a.b.take1", "comfyui", Handle("p1"))
        await j.accepted(KEY_A, "keyframe.a.b.take1", "comfyui", Handle("p1", {"s": 1}))
        await j.accepted(KEY_B, "keyframe.a.b.take2", "comfyui", Handle("p2"))
        await j.closed(KEY_B, "done")
        j.close()

    asyncio.run(first())
    jobs = read_open(path)
    assert list(jobs) == [KEY_A] and jobs[KEY_A].op == "accepted"
    assert jobs[KEY_A].handle == Handle("p1", {"s": 1})
    with open(path, "ab") as f:
        f.write(b'{"op": "closed", "key": "' + KEY_A.encode())  # torn by a crash
    again = Journal(path)  # compacts: one line per open job
    again.close()
    assert list(read_open(path)) == [KEY_A]
    assert len(path.read_text().splitlines()) == 1


def test_journal_group_commit(tmp_path: Path) -> None:
    """32 jobs accepted at once: every record on disk before its caller goes on."""
    path = tmp_path / "journal.log"

    async def many() -> None:
        j = Journal(path)
        keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(32)]
        await asyncio.gather(*(j.accepted(k, f"s{i}", "b", Handle(str(i)))
                               for i, k in enumerate(keys)))
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        assert {x["key"] for x in lines} == set(keys)
        j.close()

    asyncio.run(many())


def test_builds_sharing_a_store_never_skip_each_others_actions(tmp_path: Path) -> None:
    """Two builds append to one log: whichever indexes reads every line since the index's
    offset, so an action of a build killed before it indexed is not skipped."""
    path = tmp_path / "shared"
    a = Store.open(path, create=True)
    b = Store.open(path)
    assert a is not None and b is not None
    a.record_action(KEY_A, OUT, {})  # logged; A is killed before it indexes
    b.record_action(KEY_B, OUT, {})
    b.flush_index()
    assert b.actions_present([KEY_A, KEY_B]) == {KEY_A, KEY_B}
    b.close()
    a._db.close()  # type: ignore[union-attr]  # no flush: what a kill leaves
    a._db = None
    with reopen(path) as c:
        assert c.actions_present([KEY_A, KEY_B]) == {KEY_A, KEY_B}


def test_a_process_asking_again_sees_what_another_process_changed(tmp_path: Path) -> None:
    """A process keeps the actions it found while the index stays where it left it (a
    `build --watch` between builds): another process's change to the index is seen."""
    import subprocess
    import sys

    path = tmp_path / "store"
    with Store.open(path, create=True) as store:  # type: ignore[union-attr]
        store.record_action(KEY_A, OUT, {"backend": "local"})
        assert set(store.get_actions([KEY_A, KEY_B])) == {KEY_A}
        assert set(store.get_actions([KEY_A])) == {KEY_A}  # from what it found
        # Another process forgets it (`filmc gc` of another project sharing the store),
        # then records B under another project's build.
        script = ("import sys; from pathlib import Path; from filmc.engine.store import Store\n"
                  "s = Store.open(Path(sys.argv[1])); s.collect(set()); "
                  "s.record_action(sys.argv[2], [], {'backend': 'local'}); s.close()")
        subprocess.run([sys.executable, "-c", script, str(path), KEY_B], check=True)
        assert store.get_actions([KEY_A]) == {}
        assert set(store.get_actions([KEY_A, KEY_B])) == {KEY_B}
        # Its own record, indexed here, is asked for again, not served as it was found.
        store.record_action(KEY_A, OUT, {"backend": "other"})
        store.flush_index()
        assert store.get_actions([KEY_A])[KEY_A].meta["backend"] == "other"


def test_actions_read_ahead_are_those_the_index_holds_until_it_moves(tmp_path: Path) -> None:
    """`follow_all` (what the project's server reads while it waits, filmc/server.py):
    every action of the index, served as the index says while no one indexed since;
    another process's change is seen."""
    import subprocess
    import sys

    from filmc.engine import store as module

    path = tmp_path / "store"
    keys = _keys(20)
    with Store.open(path, create=True) as s:  # type: ignore[union-attr]
        for k in keys:
            s.record_action(k, OUT, {"backend": "local"})
    module._followed.clear()
    with Store.open(path, objects=False) as s:  # type: ignore[union-attr]
        assert s.follow_all() == 20
    assert len(module._followed[str(path)][1]) == 20
    assert set(module._recent[str(path)]) == set(keys)  # recorded just now: used lately
    with Store.open(path) as s:  # type: ignore[union-attr]
        found = s.get_actions([*keys, KEY_A])
        assert set(found) == set(keys) and found[keys[0]].meta == {"backend": "local"}
        script = ("import sys; from pathlib import Path; from filmc.engine.store import Store\n"
                  "s = Store.open(Path(sys.argv[1])); s.collect(set(sys.argv[3:])); "
                  "s.record_action(sys.argv[2], [], {'backend': 'other'}); s.close()")
        subprocess.run([sys.executable, "-c", script, str(path), KEY_A, *keys[1:]], check=True)
        assert set(s.get_actions([*keys, KEY_A])) == {*keys[1:], KEY_A}
