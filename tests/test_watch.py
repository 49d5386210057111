"""`filmc build --watch` as a user runs it: the build stays, and each save of a file the
film reads builds again, keying only the shots that changed; a film that stops compiling
is said and watched until mended; Ctrl-C stops it; paid work needs a limit.

A tiny film (192x80, one-second shots), built offline by `python -m filmc` in the
project folder with a store of the test's own; files are edited as an editor saves them,
and what is checked is what the user sees and what the build report says ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

FILM = """\
use std.camera

film "Tiny" {
  size 192x80
  fps 24
  takes 1
}

character ANA "Ana" {
  look "a tall woman in a red coat"
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}

scene one "Morning" EXT PIER DAWN {
  shot a1 1s {
    camera wide
    cast ANA
    action "Ana walks along the pier."
  }
  shot a2 1s {
    camera close_up
    cast ANA
    action "She stops."
  }
}

scene two "Noon" EXT PIER NOON {
  shot b1 1s {
    camera medium
    cast ANA
    action "She waves."
  }
}
"""


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "filmc.toml").write_text("[build]\ncurrency = \"USD\"\n", encoding="utf-8")
    (root / "t.film").write_text(FILM, encoding="utf-8")
    return root


def env(root: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("FILMC_")}
    out.update(NO_COLOR="1", FILMC_STORE=str(root.parent / "store"),
               XDG_CACHE_HOME=str(root.parent / "cache"))
    return out


class Watching:
    """A `filmc build --watch` process, its stderr read as it comes."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "filmc", "build", "--watch", *args, "t.film"], cwd=root,
            env=env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def rounds(self, n: int, timeout: float = 120) -> str:
        """Wait until it has watched `n` times (each build, or each failed compile, ends
        with the line saying so); its stderr so far."""
        end = time.monotonic() + timeout
        while self.text().count("watching ") < n:
            assert self.proc.poll() is None, f"it stopped ({self.proc.returncode}): {self.text()}"
            assert time.monotonic() < end, f"no round {n} in {timeout}s: {self.text()}"
            time.sleep(0.1)
        return self.text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._reader.join(timeout=5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def save(path: Path, old: str, new: str) -> None:
    """An editor's save: the file written whole beside it and renamed over it (its mtime
    moved past the last one's).  Not written in place: the watch could read it between
    its truncation and its text when the test is kept off the CPU that long (a
    loaded machine), and build the film the half-written file says, once, before the
    whole file's build; what that round made is not what the test asks about."""
    text = path.read_text(encoding="utf-8")
    assert old in text
    before = path.stat().st_mtime_ns
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text.replace(old, new), encoding="utf-8")
    os.replace(tmp, path)
    if path.stat().st_mtime_ns == before:  # a coarse clock: make the change visible
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def ran(root: Path) -> set[str]:
    report = json.loads((root / "build" / "t" / "report.json").read_text(encoding="utf-8"))
    return {s["id"] for s in report["steps"] if s["status"] == "ran"}


def render_workers(parent: int) -> set[int]:
    """The local renderer's worker processes of `parent` (backends/local/pool.py)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"filmc.backends.local.worker" in cmdline:
            found.add(int(entry))
    return found


def test_each_save_builds_again_only_what_it_changed(project: Path) -> None:
    w = Watching(project, "--offline")
    try:
        first = w.rounds(1)
        assert "built in" in first and "watching " in first
        assert {"keyframe.one.a1.local-1", "film"} <= ran(project)
        # The render workers stay while it waits, and the next build's steps run in them.
        workers = render_workers(w.proc.pid)
        assert workers

        save(project / "t.film", "    camera close_up\n", "    camera extreme_close_up\n")
        out = w.rounds(2)
        assert "t.film changed: building again" in out
        made = ran(project)
        assert {"keyframe.one.a2.local-1", "clip.one.a2.take1", "shot.one.a2", "film"} <= made
        assert not {s for s in made if ".a1." in s or ".b1." in s}, made
        # the shot's three calls keyed again, the other two shots' six put back (the file
        # holds the film's block: every scene is lowered again)
        assert "(0 of 2 scenes not lowered again, 6 of 9 shot steps' calls not keyed again)" \
            in out
        assert "the first step made started" in out
        assert render_workers(w.proc.pid) == workers
        # A kept worker that dies while it waits is replaced at the next build's step.
        dead = min(workers)
        os.kill(dead, signal.SIGKILL)

        # A save that breaks the film: said where, and watched until mended.
        save(project / "t.film", "    camera medium\n", "    camra medium\n")
        out = w.rounds(3)
        assert "unknown attribute `camra`" in out and "--> t.film:" in out
        save(project / "t.film", "    camra medium\n", "    camera wide\n")
        out = w.rounds(4)
        assert {"keyframe.two.b1.local-1", "shot.two.b1"} <= ran(project)
        assert not {s for s in ran(project) if ".a1." in s or ".a2." in s}
        assert "failed" not in out.split("camra")[-1] and dead not in render_workers(w.proc.pid)
        workers = render_workers(w.proc.pid)

        # filmc.toml is watched too; a change that moves no key makes nothing
        with (project / "filmc.toml").open("a", encoding="utf-8") as f:
            f.write("concurrency = 2\n")
        out = w.rounds(5)
        assert "filmc.toml changed: building again" in out
        assert ran(project) == set()
        assert (project / "build" / "t" / "film.mp4").is_file()

        code = w.stop()
        assert code == 0, w.text()
        assert w.text().rstrip().endswith("filmc: stopped watching")
        assert "Traceback" not in w.text()
        end = time.monotonic() + 10  # the workers it kept stopped with it
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            assert time.monotonic() < end, workers
            time.sleep(0.1)
    finally:
        w.kill()


def test_paid_work_needs_a_limit_and_force_is_refused(project: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "filmc", "build", "--watch", *args,
                               "t.film"], cwd=project, env=env(project), capture_output=True,
                              text=True, timeout=60)

    r = run()
    assert r.returncode == 1
    assert r.stderr.startswith("error: `--watch` builds at every save")
    assert "= help: give `--max-cost AMOUNT`" in r.stderr
    r = run("--offline", "--force", "shot:a1")
    assert r.returncode == 1 and "`--force` cannot go with `--watch`" in r.stderr
    assert not (project / "build").exists()


def test_one_pool_is_kept_between_builds_the_last_ones() -> None:
    """A pool started ahead (`prime`) of a size the build does not ask for is closed
    when the build parks its own: one pool stays, and no workers pile up."""
    import asyncio

    from filmc.backends.local import pool

    def alive(p: pool.Pool) -> set[int]:
        return {w.proc.pid for w in p._started if w.proc.returncode is None}

    with asyncio.Runner() as runner, pool.kept_warm(runner):
        runner.run(pool.prime(2))

        async def build() -> tuple[pool.Pool, list[pool.Pool]]:
            assert pool.take(1) is None  # the primed pool is of another size
            own = pool.Pool(1)
            own._idle.append(await own._start())
            return own, pool.park(own)

        own, spare = runner.run(build())
        assert len(spare) == 1 and spare[0].size == 2 and len(alive(spare[0])) == 2
        runner.run(spare[0].close())
        assert alive(spare[0]) == set()
        runner.run(pool.prime(2))  # a pool is kept: nothing more started

        async def next_build() -> pool.Pool | None:
            return pool.take(1)
        assert runner.run(next_build()) is own and len(alive(own)) == 1
        runner.run(own.close())


def test_a_save_holds_still_for_settle_from_its_own_time(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A save is built once the files held still for SETTLE seconds from its modification
    time, not from when the poll saw it; a write during that wait starts it again."""
    from filmc import watch

    f = tmp_path / "a.film"
    f.write_text("x", encoding="utf-8")
    paths = [str(f)]
    before = watch._stats(paths)
    f.write_text("y", encoding="utf-8")
    t = time.time() - 0.03  # saved 30 ms before the poll sees it
    os.utime(f, (t, t))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:  # the editor writes again while the watch waits
            f.write_text("yz", encoding="utf-8")

    monkeypatch.setattr(watch.time, "sleep", sleep)
    changed, saved = watch._wait(paths, before)
    assert changed == paths and saved is not None and saved > t + 0.01  # the second write
    assert slept[0] == watch.POLL
    assert 0 < slept[1] <= watch.SETTLE - 0.02  # from the save, not the poll
    assert watch.SETTLE - 0.02 < slept[2] <= watch.SETTLE  # the second write, just made
    # a save long ago (a file copied in with its time) is taken at once
    before = watch._stats(paths)
    old = time.time() - 60
    os.utime(f, (old, old))
    slept.clear()
    monkeypatch.setattr(watch.time, "sleep", slept.append)
    assert watch._wait(paths, before)[0] == paths and slept == [watch.POLL, 0.0]
