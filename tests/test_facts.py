"""Machine facts remembered between commands (backends/facts.py): kept while the files
they come from are the same files, worked out again the moment one changes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from filmc.backends import facts
from filmc.backends.local.adapter import ffmpeg_version


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    facts.forget()
    yield tmp_path / "cache" / "filmc" / "facts.json"
    facts.forget()


def _counting(answer: str) -> tuple[list[int], object]:
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return answer
    return calls, compute


def test_kept_across_processes_while_the_file_is_the_same(cache: Path, tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_bytes(b"v1")
    calls, compute = _counting("tool 1.0")
    assert facts.remembered("tool", [str(tool)], compute) == "tool 1.0"
    facts.forget()  # as a new process: read from the file
    assert facts.remembered("tool", [str(tool)], compute) == "tool 1.0"
    assert len(calls) == 1 and cache.is_file()


def test_any_change_to_the_file_is_seen(cache: Path, tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_bytes(b"v1")
    st = tool.stat()
    calls, compute = _counting("x")
    facts.remembered("tool", [str(tool)], compute)
    time.sleep(0.01)
    # Same size, and the modification time put back: the change time still moves.
    tool.write_bytes(b"v2")
    os.utime(tool, ns=(st.st_atime_ns, st.st_mtime_ns))
    facts.forget()
    facts.remembered("tool", [str(tool)], compute)
    assert len(calls) == 2
    # Replaced by another file (a new inode), or gone.
    other = tmp_path / "other"
    other.write_bytes(b"v2")
    os.replace(other, tool)
    facts.remembered("tool", [str(tool)], compute)
    tool.unlink()
    facts.remembered("tool", [str(tool)], compute)
    facts.remembered("tool", [str(tool)], compute)  # missing, and still missing: kept
    assert len(calls) == 4


def test_failures_are_not_kept_and_a_bad_file_is_a_miss(cache: Path, tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_bytes(b"v1")
    calls, compute = _counting("none (it did not run)")
    facts.remembered("tool", [str(tool)], compute)
    facts.remembered("tool", [str(tool)], compute)
    assert len(calls) == 2
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("{half a json", encoding="utf-8")
    facts.forget()
    calls, compute = _counting("tool 2")
    assert facts.remembered("tool", [str(tool)], compute) == "tool 2"
    assert len(calls) == 1


def test_ffmpeg_version_is_the_binarys_first_line(cache: Path) -> None:
    ffmpeg_version.cache_clear()
    try:
        line = ffmpeg_version()
        assert line.startswith("ffmpeg version")
        assert line in cache.read_text(encoding="utf-8")
    finally:
        ffmpeg_version.cache_clear()
