"""`filmc server` (filmc/server.py): the project's commands run as forks of a process
that keeps filmc loaded and the film's compile memo read, with the same output, exit
codes, environment, folder and Ctrl-C as when each runs on its own; a server that is
gone, stale or of another filmc is passed by, and the command runs on its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_build import FILM, filmc

from filmc import memocache, server
from filmc.engine.executor import alive

pytestmark = pytest.mark.skipif(not hasattr(socket, "send_fds") or not hasattr(os, "fork"),
                                reason="the server needs fork and file descriptors over "
                                       "Unix sockets")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A small film with its filmc.toml and a server started for it (stopped after)."""
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "tiny.film").write_text(FILM, encoding="utf-8")
    (root / "filmc.toml").write_text("", encoding="utf-8")
    r = filmc("server", "start", "--idle", "10", cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"filmc server: ready for {root} (pid ")
    try:
        yield root
    finally:
        pid = _pid(root)
        filmc("server", "stop", cwd=root)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _pid(root: Path) -> int | None:
    r = filmc("server", "status", cwd=root)
    if r.returncode != 0:
        return None
    return int(r.stdout.split("(pid ", 1)[1].split(")", 1)[0])


def _served(root: Path) -> list[str]:
    """The commands the server's log says it ran."""
    log = (root / ".filmc" / server.LOG).read_text(encoding="utf-8")
    return [line.split(": filmc ", 1)[1] for line in log.splitlines() if ": filmc " in line]


OFF = {server.OFF_ENV: "off"}


def test_a_command_in_the_server_says_and_exits_as_it_does_alone(project: Path) -> None:
    for args in (("check", "tiny.film"), ("plan", "--offline"), ("fmt", "--check"),
                 ("check", "--bogus"), ("--version",), ("graph", "--help"),
                 ("explain", "tiny.film", "no_such_shot")):
        served, alone = filmc(*args, cwd=project), filmc(*args, cwd=project, env=OFF)
        assert (served.returncode, served.stdout, served.stderr) \
            == (alone.returncode, alone.stdout, alone.stderr), args
    assert len(_served(project)) == 7  # each ran in the server (those `alone` did not)
    assert _served(project)[3] == "check --bogus"

    (project / "tiny.film").write_text(FILM.replace("fps 24", "fps 24\n  bogus 1"),
                                       encoding="utf-8")
    served, alone = filmc("check", cwd=project), filmc("check", cwd=project, env=OFF)
    assert served.returncode == alone.returncode == 1
    assert served.stderr == alone.stderr and "tiny.film:9:" in served.stderr


def test_a_build_in_the_server_uses_its_memo_and_the_commands_environment(
        project: Path, tmp_path: Path) -> None:
    r = filmc("build", "--offline", cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("build/tiny/film.mp4")
    report = json.loads((project / "build" / "tiny" / "report.json").read_text())
    assert 0 < report["prepared"] < 60  # from the `filmc` process's start, not the fork's

    # The build left the memo of its compile; the server reads it once written.
    deadline = time.monotonic() + 30
    while "compile memos held: 1" not in filmc("server", "status", cwd=project).stdout:
        assert time.monotonic() < deadline, (project / ".filmc" / server.LOG).read_text()
        time.sleep(0.1)
    path = project / "tiny.film"
    path.write_text(path.read_text().replace("camera wide eye_level static",
                                            "camera wide eye_level dolly_in"))
    r = filmc("build", "--offline", cwd=project / "build")  # from a folder in the project
    assert r.returncode == 0, r.stderr
    ran = {s["id"] for s in json.loads((project / "build" / "tiny" / "report.json")
                                       .read_text())["steps"] if s["status"] == "ran"}
    assert "film" in ran and len([s for s in ran if s.startswith("keyframe.")]) == 1

    # The command's environment, not the server's: another store.
    elsewhere = tmp_path / "elsewhere"
    r = filmc("build", "--offline", cwd=project, env={"FILMC_STORE": str(elsewhere)})
    assert r.returncode == 0, r.stderr
    assert (elsewhere / "index.db").is_file()
    assert _served(project) == ["build --offline", "build --offline", "build --offline"]


def _building(project: Path, size: str) -> tuple[subprocess.Popen, int]:
    """A build of the film at `size` in the server, under way (three steps made): its
    `filmc` process and the pid of the fork that runs it."""
    (project / "tiny.film").write_text(FILM.replace("size 192x80", f"size {size}"))
    proc = subprocess.Popen([sys.executable, "-m", "filmc", "build", "--offline", "--jobs", "1"],
                            cwd=project, env={**os.environ, "NO_COLOR": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = project / ".filmc" / "actions.log"
    deadline = time.monotonic() + 60
    while not (log.is_file() and log.read_text().count("\n") >= 3):
        assert time.monotonic() < deadline
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    return proc, _running(project)


def test_ctrl_c_reaches_the_command_and_a_killed_client_stops_it(project: Path) -> None:
    log = project / ".filmc" / "actions.log"
    for size in ("384x160", "288x120"):
        proc, child = _building(project, size)
        if size == "384x160":  # a Ctrl-C at the terminal: to the `filmc` process alone
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 130, err
            assert "interrupted" in err and "Traceback" not in err
        else:  # the `filmc` process killed: its command is stopped too
            proc.kill()
            proc.wait()
        deadline = time.monotonic() + 30
        while alive(child):
            assert time.monotonic() < deadline, "the command outlived its `filmc` process"
            time.sleep(0.05)
        report = project / "build" / "tiny" / "report.json"
        assert not report.is_file() or json.loads(report.read_text())["interrupted"] is True
        log.unlink()
    r = filmc("build", "--offline", cwd=project)
    assert r.returncode == 0 and "Traceback" not in r.stderr


def test_a_server_killed_under_a_command_stops_it_and_says_so(project: Path) -> None:
    pid = _pid(project)
    assert pid is not None
    proc, child = _building(project, "384x160")
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 3, err
    assert "error: the project's server stopped before this command ended" in err
    assert "= help:" in err and "Traceback" not in err
    assert not alive(child)  # stopped, not left writing to the terminal


def _running(root: Path) -> int:
    """The pid of the command the server runs now."""
    log = (root / ".filmc" / server.LOG).read_text(encoding="utf-8")
    return int([line for line in log.splitlines() if ": filmc " in line][-1]
               .split(": filmc ", 1)[0].rsplit(" ", 1)[1])



def test_without_a_server_the_command_runs_on_its_own(project: Path) -> None:
    r = filmc("server", "start", cwd=project)
    assert r.returncode == 0 and "already running" in r.stdout
    r = filmc("server", "stop", cwd=project)
    assert r.returncode == 0 and r.stdout.startswith("filmc server: stopped (pid ")
    assert not (project / ".filmc" / server.SOCKET).exists()
    r = filmc("server", "status", cwd=project)
    assert r.returncode == 1 and "none runs" in r.stdout
    assert filmc("server", "stop", cwd=project).returncode == 0

    # A socket left by a server that was killed: nothing answers it.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(project / ".filmc" / server.SOCKET))
    dead.close()
    r = filmc("check", cwd=project)
    assert r.returncode == 0 and "error" not in r.stderr

    # Outside any project: the server's commands say what to do.
    for op in ("start", "stop", "status"):
        r = filmc("server", op, cwd=project.parent)
        assert r.returncode == 1 and "no filmc.toml" in r.stderr and "= help:" in r.stderr, op


def test_a_server_stops_when_idle(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "tiny.film").write_text(FILM, encoding="utf-8")
    (root / "filmc.toml").write_text("", encoding="utf-8")
    r = filmc("server", "start", "--idle", "0.02", cwd=root)  # 1.2 seconds
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while (root / ".filmc" / server.SOCKET).exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "no command for 0.02 minutes: stopping" in (root / ".filmc" / server.LOG).read_text()


def test_a_stale_server_says_so_and_stops(tmp_path: Path) -> None:
    """A server whose filmc changed (an upgrade, an edit of its sources) runs nothing:
    the command runs on its own, and the server stops."""
    (tmp_path / "filmc.toml").write_text("", encoding="utf-8")
    s = server.Server(tmp_path)
    here = os.getcwd()
    try:
        s.bind()
    finally:
        os.chdir(here)
    import selectors

    s.sel = selectors.DefaultSelector()
    s.stamp = ("another filmc",)
    client = server.connect(tmp_path)
    assert client is not None
    with client:
        server._send(client, {"op": "run", "argv": ["check"], "cwd": str(tmp_path),
                              "umask": 0o22, "env": {}, "streams": [["utf-8", "strict"]] * 3,
                              "filmc": server._which()}, [0, 1, 2])
        s._accept()
        assert next(server._lines(client)) == "stale"
    assert s.stopping and not (tmp_path / ".filmc" / server.SOCKET).exists()


def test_a_held_memo_is_used_while_its_file_is_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from filmc.compiler.pipeline import Memo

    path = tmp_path / "x.memo"
    monkeypatch.setattr(memocache, "_path", lambda _main, _variant: path)
    memocache._write(path, Memo(), {})
    memocache.hold(path)
    held = memocache._held[str(path)][2]
    main = tmp_path / "film.film"
    assert memocache.load(main, "offline") is held  # not read again
    memocache.hold(path)
    again = memocache._held[str(path)][2]
    assert again is not held
    memocache._write(path, Memo(), {})  # written anew by a command since
    loaded = memocache.load(main, "offline")
    assert isinstance(loaded, Memo) and loaded is not again
    assert str(path) not in memocache._held


def test_a_long_command_does_not_hold_the_memos_back(tmp_path: Path) -> None:
    """The server reads the memos again between commands; one running for long (the
    language server, `build --watch`) does not stop it, one that just started or that
    writes its memo does."""
    s = server.Server(tmp_path)
    a, b = socket.socketpair()
    with a, b:
        s.children[1] = server._Command(1, a, -1, time.time() - 2 * server.BUSY_SECONDS)
        assert not s._busy()
        s.children[2] = server._Command(2, b, -1, time.time())
        assert s._busy()
        del s.children[2]
        s.children[1].ended = True  # over, writing its memo
        assert s._busy()


def test_with_auto_the_first_command_starts_the_server_for_the_next(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "tiny.film").write_text(FILM, encoding="utf-8")
    (root / "filmc.toml").write_text("", encoding="utf-8")
    auto = {server.OFF_ENV: "auto"}
    try:
        r = filmc("check", cwd=root, env=auto)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 60
        while filmc("server", "status", cwd=root).returncode != 0:
            assert time.monotonic() < deadline, "no server was started"
            time.sleep(0.2)
        assert _served(root) == []  # the first ran on its own
        r = filmc("check", cwd=root, env=auto)
        assert r.returncode == 0 and _served(root) == ["check"]
        # Without `auto`, a command that no server runs starts none.
        assert filmc("server", "stop", cwd=root).returncode == 0
        filmc("check", cwd=root)
        time.sleep(2)
        assert filmc("server", "status", cwd=root).returncode == 1
    finally:
        filmc("server", "stop", cwd=root)
