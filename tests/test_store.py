"""The store: its SQLite index (WAL), the action cache, the last build, and objects."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from filmc.compiler.store import STORE_ENV, Store, StoreError, location

KEY_A = "a" * 64
KEY_B = "b" * 64


@pytest.fixture(autouse=True)
def _no_env_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path, create=True) as s:
        yield s


def test_no_store_until_created(tmp_path: Path) -> None:
    assert Store.open(tmp_path) is None
    assert not (tmp_path / ".filmc").exists()
    Store.open(tmp_path, create=True).close()
    assert (tmp_path / ".filmc" / "index.db").is_file()
    assert (tmp_path / ".filmc" / ".gitignore").read_text().splitlines()[-1] == "*"
    with Store.open(tmp_path) as s:
        assert s is not None


def test_wal_mode_on(store: Store) -> None:
    db = sqlite3.connect(store.db_path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_action_round_trip(tmp_path: Path, store: Store) -> None:
    assert not store.has_action(KEY_A)
    assert store.get_action(KEY_A) is None
    store.record_action(KEY_A, {"image": KEY_B}, {"backend": "local", "seconds": 0.4,
                                                  "cost": 0.0})
    assert store.has_action(KEY_A)
    store.close()
    with Store.open(tmp_path) as again:  # survives closing
        action = again.get_action(KEY_A)
        assert action.outputs == {"image": KEY_B}
        assert action.meta == {"backend": "local", "cost": 0.0, "seconds": 0.4}
        assert action.created > 0


def test_actions_present_many_keys(store: Store) -> None:
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)]
    for k in keys[::3]:
        store.record_action(k, [], {})
    asked = keys + ["not-a-key"]
    assert store.actions_present(asked) == set(keys[::3])
    assert store.actions_present([]) == set()


def test_last_build_round_trip(store: Store) -> None:
    record = {"kind": "clip", "params": {"duration": Fraction(7, 2), "palette": ("#fff",)},
              "inputs": {"keyframe.a.b.take1": KEY_A}}
    n = store.record_last_build([("clip.a.b.take1", KEY_B, record), ("film", KEY_A, {})])
    assert n == 2
    got = store.last_records(["clip.a.b.take1", "nope"])
    assert got == {"clip.a.b.take1": (KEY_B, {"kind": "clip",
                                              "params": {"duration": "7/2",
                                                         "palette": ["#fff"]},
                                              "inputs": {"keyframe.a.b.take1": KEY_A}})}
    assert store.last_keys(["film", "clip.a.b.take1"]) == {"film": KEY_A,
                                                           "clip.a.b.take1": KEY_B}
    # a partial build updates its rows and keeps the others; replace keeps only its own
    store.record_last_build([("film", KEY_B, {})])
    assert {n: k for n, (k, _r) in store.all_last().items()} == {"clip.a.b.take1": KEY_B,
                                                                 "film": KEY_B}
    store.record_last_build([("film", KEY_A, {})], replace=True)
    assert store.all_last() == {"film": (KEY_A, {})}


def test_record_last_build_is_one_transaction(store: Store) -> None:
    store.record_last_build([("film", KEY_A, {})])

    def rows():
        yield ("shot.a.b", KEY_B, {})
        raise RuntimeError("the build stopped")

    with pytest.raises(RuntimeError):
        store.record_last_build(rows(), replace=True)
    assert store.all_last() == {"film": (KEY_A, {})}


def test_reader_while_writing(tmp_path: Path, store: Store) -> None:
    """WAL: another process's reader sees the last committed state while a build writes,
    and is never blocked."""
    store.record_last_build([("film", KEY_A, {})])
    reader = Store.open(tmp_path)
    seen = []

    def rows():
        for i in range(200):
            if i == 100:  # mid-transaction: the reader runs in another thread
                t = threading.Thread(target=lambda: seen.append(reader.all_last()))
                t.start()
                t.join(timeout=10)
            yield (f"shot.s.{i}", KEY_B, {"i": i})

    try:
        store.record_last_build(rows())
        assert seen == [{"film": (KEY_A, {})}]
        assert len(reader.all_last()) == 201
    finally:
        reader.close()


def test_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_ENV, "cache/store")
    assert location(tmp_path) == tmp_path / "cache" / "store"
    with Store.open(tmp_path, create=True) as s:
        assert s.path == tmp_path / "cache" / "store"
    assert (tmp_path / "cache" / "store" / "index.db").is_file()
    assert not (tmp_path / ".filmc").exists()
    elsewhere = tmp_path / "abs"
    monkeypatch.setenv(STORE_ENV, str(elsewhere))
    assert location(tmp_path / "project") == elsewhere
    assert location(tmp_path, configured="from_config", environ={}) == tmp_path / "from_config"


def test_object_write_is_atomic_and_read_only(tmp_path: Path, store: Store) -> None:
    data = b"\x89PNG not really" * 1000
    digest = store.put_object(data)
    assert digest == hashlib.sha256(data).hexdigest()
    path = store.object_path(digest)
    assert path == store.path / "objects" / digest[:2] / digest
    assert path.read_bytes() == data
    assert not os.stat(path).st_mode & 0o222  # read-only
    assert list((store.path / "tmp").iterdir()) == []  # the temp file was renamed away
    src = tmp_path / "clip.mp4"
    src.write_bytes(data)
    assert store.put_object(src) == digest  # same content, same object, written once
    assert store.verify(digest)
    assert store.has_object(digest)


def test_failed_object_write_leaves_nothing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError) as e:
        store.put_object(tmp_path / "does_not_exist.png")
    assert "cannot store" in e.value.message and e.value.hint
    assert list((store.path / "tmp").iterdir()) == []
    assert not any(p.is_file() for p in (store.path / "objects").rglob("*"))


def test_verify_detects_corruption(store: Store) -> None:
    digest = store.put_object(b"frame data")
    path = store.object_path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"frame dat4")
    assert not store.verify(digest)
    assert not store.verify("c" * 64)  # absent
    with pytest.raises(StoreError):
        store.object_path("../../etc/passwd")


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_corrupt_index_is_a_store_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / ".filmc").mkdir()
    (tmp_path / ".filmc" / "index.db").write_bytes(content)
    with pytest.raises(StoreError) as e:
        Store.open(tmp_path)
    assert "index.db" in e.value.message
    assert "delete" in e.value.hint
    assert e.value.render().startswith("error: ")


def test_foreign_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / ".filmc").mkdir()
    db = sqlite3.connect(tmp_path / ".filmc" / "index.db")
    db.execute("CREATE TABLE other (x)")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with pytest.raises(StoreError) as e:
        Store.open(tmp_path)
    assert "not a filmc store" in e.value.message


def test_newer_index_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path, create=True).close()
    db = sqlite3.connect(tmp_path / ".filmc" / "index.db")
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(StoreError) as e:
        Store.open(tmp_path)
    assert "newer filmc" in e.value.message


def test_closed_store_is_a_store_error(tmp_path: Path) -> None:
    s = Store.open(tmp_path, create=True)
    s.close()
    with pytest.raises(StoreError):
        s.has_action(KEY_A)
