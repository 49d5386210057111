"""A small team: two clones, two local stores, one remote cache (docs/team.md).

The remote cache is a real S3-protocol server on loopback (moto in server mode,
started by these tests; boto3 is not mocked) or a shared folder; the paid service
is the loopback ComfyUI of tests/loopback, in this process, so that its counters
say how often each keyframe was paid for, whichever build (or killed build) asked.
Builds run as a user runs them: `python -m filmc build` in a subprocess, each clone
with its own `.filmc/` store.  What is asserted is what a team checks: jobs
submitted, what each report says, the bytes under build/, what each local store
holds, and what the bucket holds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_services import Services, config, env_for, running_services
from test_services_faults import wait_for

from filmc.engine.objects import hash_file
from filmc.engine.remotecache import FolderRemote, Remote, holder
from filmc.engine.s3remote import S3Remote

FILM = """\
use std.camera

film "Team" {
  aspect 2.4:1
  size 192x80
  fps 24
  takes 1
}

location PIER "Pier" {
  look "a wooden pier over grey water"
}

scene one "Morning" EXT PIER DAWN {
  shot a1 1s {
    camera wide eye_level static
    action "A gull lands on the rail."
  }
  shot a2 1s {
    camera close_up eye_level static
    action "Water laps at the posts."
  }
}
"""
# A keyframe workflow the loopback ComfyUI runs for real, from the prompt and seed alone.
WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}",
                                                 "batch_size": 1, "color": 0}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["1", 0]}},
    "6": {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": "{{seed}}", "steps": 1, "cfg": 1.0, "sampler_name": "euler",
        "scheduler": "normal", "positive": ["5", 0], "negative": ["5", 0],
        "latent_image": ["1", 0], "denoise": 1.0}},
    "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0],
                                                "filename_prefix": "filmc/keyframe"}},
}
KEYFRAMES = {"keyframe.one.a1.comfyui-1", "keyframe.one.a2.comfyui-1"}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
               "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


# -- the S3 server, the bucket ------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line a request, otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh bucket (named `s3.bucket`), and a client of the test's own to look inside."""
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", endpoint_url=moto_url)
    bucket = f"filmc-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket
    client.url = moto_url
    yield client


def bucket_keys(s3: Any, prefix: str = "") -> dict[str, int]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for p in pages for o in p.get("Contents", ())}


@pytest.fixture
def services() -> Iterator[Services]:
    with running_services() as s:
        yield s


# -- the clones ---------------------------------------------------------------------------------


def clone(folder: Path, services: Services, remote: str, **cache: Any) -> Path:
    """A clone of the project: the film, its workflow, filmc.toml with `[cache]`."""
    folder.mkdir(parents=True)
    (folder / "team.film").write_text(FILM, encoding="utf-8")
    (folder / "workflows").mkdir()
    (folder / "workflows" / "keyframe_api.json").write_text(json.dumps(WORKFLOW))
    text = config(services, steps={"sheet": None, "speech": None})
    table = {"remote": remote, **cache}
    text += "[cache]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    (folder / "filmc.toml").write_text(text, encoding="utf-8")
    return folder


def env(services: Services, s3: Any | None) -> dict[str, str]:
    out = env_for(services)
    if s3 is not None:
        out.update(CREDENTIALS, FILMC_S3_ENDPOINT=s3.url)
    return out


def filmc(project: Path, services: Services, s3: Any | None, *args: str,
          timeout: float = 180) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "filmc", *args], cwd=project,
                       env=env(services, s3), capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def build(project: Path, services: Services, s3: Any | None, code: int = 0
          ) -> subprocess.CompletedProcess:
    r = filmc(project, services, s3, "--debug", "build", "team.film")
    assert r.returncode == code, r.stderr
    return r


def start(project: Path, services: Services, s3: Any | None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "filmc", "build", "team.film"], cwd=project,
                            env=env(services, s3), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def steps(project: Path) -> dict[str, dict]:
    report = json.loads((project / "build" / "team" / "report.json").read_text())
    return {s["id"]: s for s in report["steps"]}


def digests(step: dict) -> set[str]:
    """The digests of a report step's outputs."""
    return {o["digest"] if isinstance(o, dict) else o for o in step.get("outputs") or ()}


def local_objects(project: Path) -> set[str]:
    root = project / ".filmc" / "objects"
    return {p.name for p in root.glob("*/*")} if root.is_dir() else set()


def keyframe_files(project: Path) -> dict[str, str]:
    folder = project / "build" / "team" / "keyframes"
    return {p.name: hash_file(p) for p in sorted(folder.iterdir())}


def paid_jobs(services: Services) -> int:
    return len(services.comfy.submit_ids)


# -- two clones, one cache ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["s3", "folder"])
def test_a_second_clone_pays_nothing_and_fetches_only_what_it_needs(
        tmp_path: Path, services: Services, s3: Any, kind: str) -> None:
    """Clone A builds (two keyframes paid at ComfyUI); clone B, another store, builds the
    same film: nothing is submitted again, its keyframes are A's bytes, and it fetched only
    what build/ needs (not A's location plate, which nothing B runs is made from)."""
    remote = f"s3://{s3.bucket}/wolfpack" if kind == "s3" else str(tmp_path / "shared")
    a = clone(tmp_path / "a", services, remote)
    b = clone(tmp_path / "b", services, remote)
    build(a, services, s3)
    assert paid_jobs(services) == 2
    assert {s for s, v in steps(a).items() if v["status"] == "ran"} >= KEYFRAMES
    r = build(b, services, s3)
    assert paid_jobs(services) == 2, "the second clone paid again"
    got = steps(b)
    assert all(got[k]["status"] == "cached" for k in KEYFRAMES)
    assert not [s for s, v in got.items() if v["status"] == "ran" and v.get("cost")], r.stderr
    assert keyframe_files(b) == keyframe_files(a)
    assert (b / "build" / "team" / "film.mp4").is_file()
    # Build without the bytes: besides what B made itself (the exports, which name files by
    # absolute path), B's store holds A's objects, and not those nothing needed here: the
    # location plate, which only the (reused) keyframes were made from.
    made = {d for v in got.values() if v["status"] == "ran" for d in digests(v)}
    mine, theirs = local_objects(b) - made, local_objects(a)
    assert mine < theirs
    plates = [v for s, v in got.items() if s.startswith("plate.")]
    assert plates and all(v["status"] == "cached" for v in plates)
    assert not {d for v in plates for d in digests(v)} & local_objects(b)
    assert {d for v in plates for d in digests(v)} <= theirs
    # What B made itself went up too (write-through), and no claim is left.
    if kind == "s3":
        assert {f"wolfpack/cas/{d}" for d in made} <= set(bucket_keys(s3, "wolfpack/cas/"))
        assert not bucket_keys(s3, "wolfpack/leases/")
    else:
        assert not list((tmp_path / "shared" / "leases").rglob("*.json"))


def test_two_simultaneous_builds_pay_once(tmp_path: Path, services: Services, s3: Any) -> None:
    """Two clones (two processes, two stores) build the same paid keyframes at the same time:
    each keyframe is submitted once; the build that lost the claim waits and reuses it."""
    services.comfy.latency = 2.0
    remote = f"s3://{s3.bucket}/team"
    a, b = (clone(tmp_path / n, services, remote) for n in "ab")
    procs = [start(p, services, s3) for p in (a, b)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert paid_jobs(services) == 2
    statuses = sorted(steps(p)[k]["status"] for p in (a, b) for k in KEYFRAMES)
    assert statuses == ["cached", "cached", "ran", "ran"]
    assert any("waiting for its result" in err for _o, err in outs)
    assert keyframe_files(a) == keyframe_files(b)


def test_a_killed_claimant_is_taken_over_and_its_job_re_attached(
        tmp_path: Path, services: Services, s3: Any) -> None:
    """A build killed (SIGKILL) after submitting leaves its claims, with its jobs in them;
    once they expire (`lease = "2s"`), another clone takes them over and polls the same
    jobs: the service sees each keyframe submitted once, and the second build gets them."""
    services.comfy.latency = 12.0  # running long enough to be seen shared, on a busy machine
    remote = f"s3://{s3.bucket}/team"
    a = clone(tmp_path / "a", services, remote, lease="2s")
    b = clone(tmp_path / "b", services, remote, lease="2s")
    proc = start(a, services, s3)

    def shared_jobs() -> int:
        leases = bucket_keys(s3, "team/leases/")
        got = [json.loads(s3.get_object(Bucket=s3.bucket, Key=k)["Body"].read())
               for k in leases]
        return sum(1 for lease in got if (lease.get("job") or {}).get("op") == "accepted")

    try:
        wait_for(lambda: paid_jobs(services) == 2 and shared_jobs() == 2, 60,
                 "two jobs submitted and shared in their claims")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    r = build(b, services, s3)
    assert paid_jobs(services) == 2, "a job was submitted again"
    got = steps(b)
    assert all(got[k]["status"] == "ran" and got[k]["attached"] for k in KEYFRAMES), r.stderr
    assert "taking over job" in r.stderr
    assert (b / "build" / "team" / "film.mp4").is_file()


def test_a_corrupt_remote_object_is_detected_and_never_used(
        tmp_path: Path, services: Services, s3: Any) -> None:
    """A byte flipped in a keyframe in the bucket: the second clone names the object, does
    not use it (the keyframe is made again), and keeps no corrupt bytes."""
    remote = f"s3://{s3.bucket}/team"
    a, b = (clone(tmp_path / n, services, remote) for n in "ab")
    build(a, services, s3)
    digest = steps(a)["keyframe.one.a1.comfyui-1"]["outputs"][0]
    key = f"team/cas/{digest}"
    data = bytearray(s3.get_object(Bucket=s3.bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=s3.bucket, Key=key, Body=bytes(data))
    r = build(b, services, s3)
    assert f"remote object {digest}" in r.stderr and "corrupt" in r.stderr
    assert steps(b)["keyframe.one.a1.comfyui-1"]["status"] == "ran"
    assert paid_jobs(services) == 3  # a1 made again, a2 reused
    for d in local_objects(b):
        assert hash_file(b / ".filmc" / "objects" / d[:2] / d) == d


@pytest.mark.parametrize("how", ["toml", "env"])
def test_a_read_only_client_never_writes(tmp_path: Path, services: Services, s3: Any,
                                         how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`write = false` (or `FILMC_CACHE_WRITE=0` on this machine over a `write = true`): the
    build runs what it must, and the bucket stays empty (no object, no action, no claim)."""
    if how == "toml":
        c = clone(tmp_path / "c", services, f"s3://{s3.bucket}/team", write=False)
    else:
        c = clone(tmp_path / "c", services, f"s3://{s3.bucket}/team", write=True)
        monkeypatch.setenv("FILMC_CACHE_WRITE", "0")  # the builds' environment inherits it
    build(c, services, s3)
    assert paid_jobs(services) == 2
    assert bucket_keys(s3) == {}
    r = filmc(c, services, s3, "cache", "push")
    assert r.returncode == 1 and "read-only" in r.stderr


def test_cache_status_push_pull(tmp_path: Path, services: Services, s3: Any) -> None:
    """A project built before it had a remote cache: `status` counts what the remote
    lacks, `push` sends it, `status` then says nothing is missing; another clone `pull`s
    it all and builds without paying or fetching anything more."""
    a = clone(tmp_path / "a", services, f"s3://{s3.bucket}/team")
    toml = (a / "filmc.toml").read_text()
    (a / "filmc.toml").write_text(toml.split("[cache]")[0])
    build(a, services, s3)
    (a / "filmc.toml").write_text(toml)
    assert bucket_keys(s3) == {}
    r = filmc(a, services, s3, "cache", "status")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "missing remotely" in x)
    assert int(line.split("sends): ")[1].split()[0]) == len(steps(a)) > 0, line
    r = filmc(a, services, s3, "cache", "push")
    assert r.returncode == 0, r.stderr
    assert "pushed" in r.stderr
    pushed = bucket_keys(s3, "team/cas/")
    assert {f"team/cas/{d}" for d in local_objects(a)} <= set(pushed)
    r = filmc(a, services, s3, "cache", "status")
    assert "missing remotely (`filmc cache push` sends): 0 steps, 0 outputs" in r.stdout
    b = clone(tmp_path / "b", services, f"s3://{s3.bucket}/team")
    r = filmc(b, services, s3, "cache", "pull")
    assert r.returncode == 0, r.stderr
    assert local_objects(b) >= {d for d in local_objects(a)
                                if f"team/cas/{d}" in pushed} - set()
    r = filmc(b, services, s3, "cache", "status")
    assert "missing locally (`filmc cache pull` fetches): 0 steps, 0 outputs" in r.stdout
    build(b, services, s3)
    assert paid_jobs(services) == 2
    assert all(steps(b)[k]["status"] == "cached" for k in KEYFRAMES)


# -- the claims themselves, on both kinds of storage ------------------------------------------


@pytest.fixture(params=["s3", "folder"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    if request.param == "folder":
        return FolderRemote(tmp_path / "shared", str(tmp_path / "shared"))
    s3 = request.getfixturevalue("s3")
    return S3Remote(f"s3://{s3.bucket}/p", s3.bucket, "p", s3.url)


def test_of_many_simultaneous_claims_exactly_one_wins(remote: Remote) -> None:
    """Eight threads claim one key at once, then eight take its expired claim over at once:
    each time exactly one holds it, and the taker inherits the job the holder shared."""
    key = "k" * 64
    barrier = threading.Barrier(8)
    won: list[Any] = []

    def claim(seconds: float) -> None:
        barrier.wait()
        ok, lease = remote.claim(holder(key, "p", seconds), seconds)
        if ok:
            won.append(lease)

    def race(seconds: float) -> None:
        threads = [threading.Thread(target=claim, args=(seconds,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    race(2.0)
    assert len(won) == 1
    first = won.pop()
    job = {"op": "accepted", "backend": "comfyui", "step": "s",
           "handle": {"id": "job-1", "data": {}}}
    first = remote.renew(first, 1.0, job)
    assert first is not None and remote.lease(key).job == job
    ok, current = remote.claim(holder(key, "p", 5), 5)
    assert not ok and current.token == first.token  # live: held by the first
    time.sleep(1.1)
    race(5)
    assert len(won) == 1 and won[0].gen == first.gen + 1 and won[0].job == job
    assert remote.renew(first, 5) is None  # the dead holder cannot renew any more
    remote.release(won[0])
    assert remote.lease(key) is None


def test_objects_are_verified_both_ways(remote: Remote, tmp_path: Path) -> None:
    from filmc.engine.objects import Objects
    from filmc.engine.remotecache import Corrupt

    local = Objects(tmp_path / "store", {})
    digest = local.put(b"frame" * 1000)
    remote.put_object(digest, local.path(digest))
    other = Objects(tmp_path / "other", {})
    assert remote.fetch_object(digest, other) == 5000
    assert hash_file(other.path(digest)) == digest
    # A damaged copy in the remote: named, and never enters a store.
    if isinstance(remote, FolderRemote):
        path = remote._path(f"cas/{digest}")
        os.chmod(path, 0o644)
        path.write_bytes(b"frame" * 999 + b"framX")
    else:
        remote.client.put_object(Bucket=remote.bucket, Key=f"p/cas/{digest}",
                                 Body=b"frame" * 999 + b"framX")
    third = Objects(tmp_path / "third", {})
    with pytest.raises(Corrupt, match=digest):
        remote.fetch_object(digest, third)
    assert not third.exists(digest) and not list((tmp_path / "third" / "tmp").iterdir())
    with contextlib.suppress(FileNotFoundError):
        assert not list((tmp_path / "third" / "objects").rglob("*"))


def test_an_unreachable_remote_cache_never_fails_a_build(tmp_path: Path,
                                                         services: Services) -> None:
    """The bucket's server is down: the build runs on the local store alone, says so once,
    and says that what it made is waiting for `filmc cache push`."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = clone(tmp_path / "c", services, "s3://filmc-nowhere/team")
    r = subprocess.run([sys.executable, "-m", "filmc", "build", "--offline", "team.film"],
                       cwd=c, env={**env(services, None), **CREDENTIALS,
                                   "FILMC_S3_ENDPOINT": f"http://127.0.0.1:{port}"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("cannot be read") == 1
    assert "`filmc cache push` sends them" in r.stderr
    assert (c / "build" / "team" / "film.mp4").is_file()


# -- `[cache]` in filmc.toml ---------------------------------------------------------------------


def load(tmp_path: Path, text: str) -> tuple[Any, list[str]]:
    from filmc.compiler.config import load_config
    from filmc.lang.diagnostics import Diagnostics

    (tmp_path / "filmc.toml").write_text(text, encoding="utf-8")
    diags = Diagnostics()
    config = load_config(tmp_path, diags, installed={"local"})
    return config, [f"{d.code}: {d.message}" + (f" ({d.help})" if d.help else "")
                    for d in diags]


def test_the_cache_table(tmp_path: Path) -> None:
    config, errors = load(tmp_path, '[cache]\nremote = "s3://studio/wolfpack"\nwrite = false\n'
                                    'lease = "90s"\nendpoint_env = "MINIO_URL"\n')
    assert not errors
    c = config.cache
    assert (c.remote, c.write, c.lease, c.endpoint_env) == ("s3://studio/wolfpack", False,
                                                            90.0, "MINIO_URL")
    config, errors = load(tmp_path, '[cache]\nremote = "/mnt/team"\n')
    assert not errors and config.cache.write and config.cache.lease == 300.0
    assert load(tmp_path, "")[0].cache is None


@pytest.mark.parametrize("line,expected", [
    ('remote = "s3://"', "F0505: `remote` must be an `s3://bucket/prefix` URL or a folder"),
    ('remote = 3', "F0505: `remote` must be"),
    ('remote = "/x"\nlease = "2 parsecs"', "F0506: `lease` must be a duration"),
    ('remote = "/x"\nlease = 0', "F0506: `lease` must be a duration"),
    ('remote = "/x"\nwrite = "no"', "F0506: `write` must be true or false"),
    ('remote = "/x"\nendpoint_env = "not a name"', "F0506: `endpoint_env` must name"),
    ('remote = "/x"\nremtoe = 1', "F0502: unknown key `remtoe`"),
])
def test_a_bad_cache_table_is_a_diagnostic(tmp_path: Path, line: str, expected: str) -> None:
    _config, errors = load(tmp_path, f"[cache]\n{line}\n")
    assert any(e.startswith(expected) for e in errors), errors


def test_a_teammates_pick_is_fetched_from_the_remote_cache(
        tmp_path: Path, services: Services, s3: Any) -> None:
    """A picks a1's second candidate and commits film.lock; B, with that lock and an empty
    store, builds: the pinned keyframe is fetched from the bucket (not made, not paid), and
    B's build/ holds the very bytes A picked."""
    remote = f"s3://{s3.bucket}/team"
    a, b = (clone(tmp_path / n, services, remote) for n in "ab")
    for p in (a, b):
        text = (p / "team.film").read_text().replace(
            'action "A gull lands on the rail."',
            'action "A gull lands on the rail."\n    candidates 2')
        (p / "team.film").write_text(text)
    build(a, services, s3)
    assert paid_jobs(services) == 3
    r = filmc(a, services, s3, "pick", "team.film", "a1", "comfyui-2")
    assert r.returncode == 0, r.stderr
    build(a, services, s3)
    picked = steps(a)["keyframe.one.a1.comfyui-2"]["outputs"][0]
    shutil.copy(a / "team.lock", b / "team.lock")
    build(b, services, s3)
    assert paid_jobs(services) == 3
    got = steps(b)["keyframe.one.a1.comfyui-2"]
    assert got["status"] == "cached" and got["outputs"] == [picked]
    assert picked in local_objects(b)
    assert keyframe_files(b)["a1.comfyui-2.png"] == picked
