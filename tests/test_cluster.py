"""`filmc build --cluster ADDRESS`: the local backend's renders on a Dask cluster.

A real `LocalCluster` of two worker processes (one thread each), started here; a small
film built once on it and once on this machine, each with its own store, must give the
same bytes, and the cluster's task stream must show its workers making the steps.  The
same again with the workers told they cannot see the store (inputs sent and outputs
returned as bytes); a worker killed in the middle of a render; an unreachable scheduler,
a worker running another panel font, and a build without a cluster, which must never
import Dask.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from filmc.backends.local import cluster as dask_cluster  # noqa: E402
from filmc.backends.local.adapter import CLUSTER_KINDS  # noqa: E402
from filmc.cli import main  # noqa: E402

FILM = """\
use std.camera
use std.light

film "Tiny" {
  language "en"
  aspect 2.4:1
  size 192x80
  fps 24
  takes 1
}

character ANA "Ana" {
  look "a tall woman in a red coat"
  voice "warm"
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}

scene one "Morning" EXT PIER DAWN {
  shot a1 1.5s {
    camera wide eye_level dolly_in
    light blue_hour
    cast ANA
    ANA: "There you are."
  }
  shot a2 1s {
    camera insert eye_level zoom_in
    light low_key
    action "The string slips through her fingers."
  }
}
"""
PROBE = ("import sys; from filmc.cli import main; code = main(sys.argv[1:]); "
         "print('dask imported:', any(m == 'dask' or m.startswith(('dask.', 'distributed')) "
         "for m in sys.modules)); sys.exit(code)")


def project(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "tiny.film").write_text(FILM, encoding="utf-8")
    return where


def build(where: Path, *args: str) -> subprocess.CompletedProcess:
    """`filmc build --offline` in a process of its own, saying whether it imported Dask."""
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", PROBE, "build", "--offline", *args,
                           "tiny.film"], cwd=where, env=env, capture_output=True, text=True,
                          timeout=600)


def outputs(where: Path) -> dict[str, str]:
    """Every file under build/tiny/ by digest: the film, its stems and subtitles, the shots,
    clips, keyframes, storyboard pages, dialogue.  Not the report (times), the review page
    nor the exports (they name the project's own folder, which differs)."""
    out = where / "build" / "tiny"
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()
            and p.name != "report.json" and p.relative_to(out).parts[0] not in ("review", "export")}


def ran(where: Path) -> list[str]:
    report = json.loads((where / "build" / "tiny" / "report.json").read_text())
    return [s["id"] for s in report["steps"] if s["status"] == "ran"]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as c, distributed.Client(c) as client:
        yield c, client


@pytest.fixture(scope="module")
def here(tmp_path_factory) -> tuple[Path, str]:
    """The film built on this machine, without a cluster; what its process imported."""
    where = project(tmp_path_factory.mktemp("here"))
    r = build(where)
    assert r.returncode == 0, r.stderr
    return where, r.stdout


def test_a_build_without_a_cluster_never_imports_dask(here) -> None:
    _where, said = here
    assert "dask imported: False" in said


def test_the_cluster_renders_the_film_byte_for_byte_as_this_machine_does(cluster, here,
                                                                         tmp_path) -> None:
    c, client = cluster
    where = project(tmp_path / "there")
    with distributed.get_task_stream(client) as stream:
        r = build(where, "--cluster", c.scheduler_address)
    assert r.returncode == 0, r.stderr
    assert "dask imported: True" in r.stdout
    assert f"rendering on the Dask cluster at {c.scheduler_address}: 2 workers" in r.stderr
    mine, theirs = outputs(here[0]), outputs(where)
    assert {"film.mp4", "shots/a1.mp4", "shots/a2.mp4", "keyframes/a1.local-1.png",
            "keyframes/a2.local-1.png", "storyboard/one.png", "dialogue/a1.1.wav"} <= set(mine)
    assert theirs == mine
    # The workers made every step of a kind the cluster makes, each once, from the store
    # they share with this machine (the same disk): tasks that carry paths.
    tasks = [t for t in stream.data if str(t["key"]).startswith("filmc-")]
    made = sorted(s.split(".")[0] for s in ran(where) if s.split(".")[0] in CLUSTER_KINDS)
    assert sorted(str(t["key"]).split("-")[1] for t in tasks) == made
    assert all(str(t["key"]).split("-")[2] == "paths" for t in tasks)
    assert {t["worker"] for t in tasks} <= set(c.scheduler_info["workers"])


def test_workers_that_cannot_see_the_store_get_bytes_and_send_bytes_back(
        cluster, here, tmp_path, monkeypatch, capsys) -> None:
    c, client = cluster
    where = project(tmp_path / "apart")
    # As if every worker were on another machine: the probe of the store finds none.
    async def apart(self, folder: Path) -> None:
        return None

    monkeypatch.setattr(dask_cluster.Cluster, "sharing", apart)
    with distributed.get_task_stream(client) as stream:
        code = main(["build", "--offline", "--quiet", "--cluster", c.scheduler_address,
                     str(where / "tiny.film")])
    assert code == 0, capsys.readouterr().err
    assert outputs(where) == outputs(here[0])
    keys = [str(t["key"]) for t in stream.data if str(t["key"]).startswith("filmc-")]
    assert keys and all(k.split("-")[2] == "bytes" for k in keys)


def test_a_step_whose_worker_dies_is_rendered_by_another(cluster, tmp_path) -> None:
    """As a local render process that dies fails its step, a Dask worker that dies gives
    its task back to the scheduler, which runs it on another (Dask's allowed-failures)."""
    c, client = cluster
    work = tmp_path / "tmp" / "work"
    work.mkdir(parents=True)
    # A clip long enough to be killed in the middle of: 40 s of 640x360 from a still (under
    # a second's work on a fast machine, so the worker dies a tenth of a second in).
    from PIL import Image

    still = work / "in.png"
    Image.new("RGB", (640, 360), (90, 120, 150)).save(still)
    from fractions import Fraction

    spec = {"width": 640, "height": 360, "fps": Fraction(24), "duration": Fraction(40),
            "camera": {"motion": "push_in", "amount": 1}}
    job = {"kind": "clip", "spec": spec, "prompt": "", "workdir": str(work),
           "inputs": [["first_frame", str(still), "", "", "", "keyframe.x"]]}

    victims: list[str] = []

    async def render_and_kill() -> dict:
        found = await dask_cluster.open_cluster(c.scheduler_address)
        try:
            return await kill_while(found)
        finally:
            await found.close()

    async def kill_while(found: dask_cluster.Cluster) -> dict:
        task = asyncio.ensure_future(found.call(job, [(str(still), "x")], work))
        victim = None
        for _ in range(400):  # the worker that took it, as soon as it runs
            await asyncio.sleep(0.05)
            busy = [w for w, keys in client.processing().items() if keys]
            if busy or task.done():
                victim = busy[0] if busy else None
                break
        assert victim is not None, task.result() if task.done() else "never ran"
        victims.append(victim)
        await asyncio.sleep(0.1)
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        return await asyncio.wait_for(task, 120)

    with distributed.get_task_stream(client) as stream:
        answer = asyncio.run(render_and_kill())
    assert "files" in answer, answer
    # Killed in the middle: the render that came back is another worker's.
    done = [t["worker"] for t in stream.data if str(t["key"]).startswith("filmc-clip-")]
    assert done and victims[0] not in done
    assert Path(answer["files"]["video"][0]).stat().st_size > 0
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


def test_ctrl_c_cancels_the_builds_tasks_on_the_cluster(cluster, tmp_path) -> None:
    """A terminal's Ctrl-C while the workers render: the build stops as it does on this
    machine (exit 130, finished steps kept) and leaves no task of its on the cluster."""
    c, client = cluster
    where = project(tmp_path / "stopped")
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "filmc", "build", "--offline", "--cluster",
                             c.scheduler_address, "tiny.film"], cwd=where, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not any(
            str(k).startswith("filmc-") for keys in client.processing().values() for k in keys):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    _out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15
    assert proc.returncode == 130, err
    assert "interrupted; every finished step is kept" in err and "Traceback" not in err
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
            str(k).startswith("filmc-") for k in c.scheduler.tasks):
        time.sleep(0.1)
    assert not [k for k in c.scheduler.tasks if str(k).startswith("filmc-")]


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path, monkeypatch, capsys) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT", 1.0)
    where = project(tmp_path / "p")
    started = time.monotonic()
    code = main(["build", "--offline", "--cluster", address, str(where / "tiny.film")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: cannot reach the Dask scheduler at `{address}`" in err
    assert "help: check the address" in err and "dask scheduler" in err
    assert "Traceback" not in err
    assert not (where / "build").exists()  # refused before anything ran
    assert time.monotonic() - started < 30
    # The same from filmc.toml, and the flag wins over it.
    (where / "filmc.toml").write_text(f'[build]\ncluster = "{address}"\n', encoding="utf-8")
    assert main(["build", "--offline", str(where / "tiny.film")]) == 1
    assert f"cannot reach the Dask scheduler at `{address}`" in capsys.readouterr().err
    (where / "filmc.toml").write_text('[build]\ncluster = 8786\n', encoding="utf-8")
    assert main(["check", str(where / "tiny.film")]) == 1
    err = capsys.readouterr().err
    assert "F0505" in err and "`cluster` must be a Dask scheduler's address" in err


def test_a_worker_with_another_panel_font_is_refused(cluster, tmp_path) -> None:
    """Its panels would differ under the same keys: the build refuses to start."""
    c, client = cluster
    font = tmp_path / "other.otf"
    font.write_bytes(b"not the bundled font")

    def use_font(path: str | None) -> None:
        from filmc.backends.local import cluster as module

        if path is None:
            os.environ.pop("FILMC_PANEL_FONT", None)
        else:
            os.environ["FILMC_PANEL_FONT"] = path
        module.facts.cache_clear()

    client.run(use_font, str(font))
    try:
        with pytest.raises(dask_cluster.ClusterError) as refused:
            dask_cluster.check(c.scheduler_address)
    finally:
        client.run(use_font, None)
    assert "has the panel font" in refused.value.message
    assert "FILMC_PANEL_FONT" in refused.value.hint
