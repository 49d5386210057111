"""`filmc plan` with the team's remote cache (docs/team.md): what a clone's plan says of
the steps, and the picks, that another clone already paid for and wrote through.

The remote cache is the real S3-protocol server (moto on loopback) or a shared folder,
and the paid service the loopback ComfyUI, from tests/test_team.py; every command runs
as a user runs it (`python -m filmc` in a subprocess), each clone with its own store.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import test_team
from test_services import Services
from test_team import CREDENTIALS, KEYFRAMES, build, clone, env, filmc, paid_jobs, steps

from filmc.compiler.plan import SHARED

# The S3 server on loopback (one a module), a fresh bucket a test, the paid service.
moto_url = test_team.moto_url
s3 = test_team.s3
services = test_team.services

WARNING = "warning: cannot read the shared cache"


def plan(project: Path, services: Services, s3: Any | None, *args: str,
         extra: dict[str, str] | None = None) -> tuple[int, dict, str]:
    """`filmc plan --json` and `filmc plan`: (exit code, the JSON, the text)."""
    out = []
    for fmt in (("--json",), ()):
        r = subprocess.run([sys.executable, "-m", "filmc", "plan", *fmt, *args, "team.film"],
                           cwd=project, env={**env(services, s3), **(extra or {})},
                           capture_output=True, text=True, timeout=180)
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode in (0, 2), r.stderr
        out.append(r)
    j, t = out
    assert j.returncode == t.returncode
    return t.returncode, json.loads(j.stdout), t.stdout + t.stderr


def by_id(doc: dict) -> dict[str, dict]:
    return {s["id"]: s for s in doc["steps"]}


def store_is_empty(project: Path) -> bool:
    objects = project / ".filmc" / "objects"
    return not objects.is_dir() or not any(objects.rglob("*"))


def no_remote(project: Path) -> None:
    toml = project / "filmc.toml"
    toml.write_text(toml.read_text().split("[cache]")[0])


@pytest.mark.parametrize("kind", ["s3", "folder"])
def test_a_second_clone_plans_to_pay_nothing(tmp_path: Path, services: Services, s3: Any,
                                             kind: str) -> None:
    """Clone A builds (two keyframes paid at ComfyUI) and writes through; clone B, an
    empty store, plans the same film: nothing to run, cost 0, the paid keyframes reported
    in the shared cache; B's plan fetches nothing and pays nothing.  Without the remote,
    the same plan would have counted them to pay."""
    remote = f"s3://{s3.bucket}/wolfpack" if kind == "s3" else str(tmp_path / "shared")
    a = clone(tmp_path / "a", services, remote)
    b = clone(tmp_path / "b", services, remote)
    build(a, services, s3)
    assert paid_jobs(services) == 2

    code, doc, text = plan(b, services, s3)
    summary = doc["summary"]
    assert code == 0 and summary["to_run"] == 0, text
    assert summary["cost"] == 0 and summary["unpriced"] == 0
    got = by_id(doc)
    for k in KEYFRAMES:
        assert got[k]["status"] == "cached" and got[k]["reasons"] == [SHARED]
        assert got[k]["cost"] == 0
    shared = [s for s in doc["steps"] if SHARED in s["reasons"]]
    assert summary["shared_cache"] == {"url": remote, "read": True, "problem": None,
                                       "steps": len(shared)}
    assert len(shared) == summary["cached"] > len(KEYFRAMES)
    assert text.startswith(f"No changes: everything is cached (all in the shared cache "
                           f"`{remote}`).\n"), text
    assert WARNING not in text
    assert store_is_empty(b) and paid_jobs(services) == 2

    # A's own plan: all of it in A's store, none of it said to be shared.
    code, doc, text = plan(a, services, s3)
    assert code == 0 and doc["summary"]["shared_cache"]["steps"] == 0
    assert text.startswith("No changes: everything is cached.\n"), text

    # B edits one shot: only its keyframe is paid for; the other is still the team's.
    film = b / "team.film"
    film.write_text(film.read_text().replace("Water laps at the posts.",
                                             "Water laps at the old posts."))
    code, doc, text = plan(b, services, s3)
    got = by_id(doc)
    assert code == 2 and doc["summary"]["cost"] == pytest.approx(0.01)
    assert got["keyframe.one.a1.comfyui-1"]["reasons"] == [SHARED]
    assert got["keyframe.one.a2.comfyui-1"]["status"] == "new"
    n = doc["summary"]["shared_cache"]["steps"]
    assert 0 < n == doc["summary"]["cached"]
    assert f"{n} cached (all in the shared cache `{remote}`)" in text
    assert "estimated cost $0.01" in text

    # What B's plan said before this change: every paid keyframe to run, and priced.
    no_remote(b)
    code, doc, text = plan(b, services, s3)
    assert code == 2 and "shared_cache" not in doc["summary"]
    assert all(by_id(doc)[k]["status"] in ("new", "changed") for k in KEYFRAMES)
    assert doc["summary"]["cost"] == pytest.approx(0.02)


@pytest.mark.parametrize("kind", ["s3", "folder"])
def test_an_unreachable_remote_cache_leaves_a_local_plan_and_one_warning(
        tmp_path: Path, services: Services, kind: str) -> None:
    """The bucket's server is down (a port nobody listens on), or the shared folder is not
    mounted: the plan is the local store's (every keyframe to run, and priced), with one
    warning line; the exit code is the usual one (2: something would run); no traceback,
    no credential."""
    secret = "canary-secret-0c7f"
    if kind == "s3":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        remote = "s3://filmc-nowhere/team"
        extra = {**CREDENTIALS, "AWS_SECRET_ACCESS_KEY": secret,
                 "FILMC_S3_ENDPOINT": f"http://127.0.0.1:{port}"}
    else:
        remote = str(tmp_path / "not-mounted" / "filmc-cache")
        extra = {}
    c = clone(tmp_path / "c", services, remote)
    code, doc, text = plan(c, services, None, extra=extra)
    assert code == 2
    assert text.count(WARNING) == 1 and "cost may be overstated" in text, text
    warning = next(line for line in text.splitlines() if line.startswith(WARNING))
    assert remote in warning
    assert secret not in text and secret not in json.dumps(doc)
    info = doc["summary"]["shared_cache"]
    assert info["url"] == remote and info["read"] is False and info["steps"] == 0
    assert info["problem"] and info["problem"] in warning
    assert all(by_id(doc)[k]["status"] == "new" for k in KEYFRAMES)
    assert doc["summary"]["cost"] == pytest.approx(0.02)
    assert paid_jobs(services) == 0


def test_a_pick_whose_output_only_the_shared_cache_holds_is_not_lost(
        tmp_path: Path, services: Services) -> None:
    """A picks a1's second candidate and shares film.lock; B (an empty store) plans it:
    the pinned keyframe is in the shared cache, so not lost.  With its action gone from
    the remote (the object alone, as `filmc cache push` sends a pick's output) it is still
    not lost; with the object gone too, it is (exit 1)."""
    shared = tmp_path / "shared"
    a, b = (clone(tmp_path / n, services, str(shared)) for n in "ab")
    for p in (a, b):
        text = (p / "team.film").read_text().replace(
            'action "A gull lands on the rail."',
            'action "A gull lands on the rail."\n    candidates 2')
        (p / "team.film").write_text(text)
    build(a, services, None)
    r = filmc(a, services, None, "pick", "team.film", "a1", "comfyui-2")
    assert r.returncode == 0, r.stderr
    build(a, services, None)
    picked = "keyframe.one.a1.comfyui-2"
    digest = steps(a)[picked]["outputs"][0]
    shutil.copy(a / "team.lock", b / "team.lock")
    jobs = paid_jobs(services)

    code, doc, text = plan(b, services, None)
    assert doc["summary"]["lost"] == 0, text
    assert by_id(doc)[picked]["status"] == "cached"
    assert by_id(doc)[picked]["reasons"] == [SHARED]

    # The remote holds the picked object but no action for it.
    actions = [p for p in (shared / "ac").glob("*.json")
               if digest in {o["digest"] for o in json.loads(p.read_text())["outputs"]}]
    assert actions
    for p in actions:
        p.unlink()
    code, doc, text = plan(b, services, None)
    assert doc["summary"]["lost"] == 0, text
    assert by_id(doc)[picked]["status"] == "cached"
    assert by_id(doc)[picked]["reasons"] == [SHARED]

    # And nowhere: lost, as without a remote.
    obj = shared / "cas" / digest[:2] / digest
    obj.chmod(0o644)
    obj.unlink()
    r = filmc(b, services, None, "plan", "team.film")
    assert r.returncode == 1
    assert "pinned outputs not in the store" in r.stdout
    assert f"{picked}: team.lock pins output {digest[:12]}…, which neither the store nor the " \
           f"shared cache `{shared}` holds" in r.stdout
    assert paid_jobs(services) == jobs and store_is_empty(b)


def test_one_listing_a_plan_and_what_the_summary_says(tmp_path: Path,
                                                      services: Services) -> None:
    """In process, against a shared folder that counts what it is asked: a plan lists the
    remote's actions once (not a request a step) and reads none; a step the local store
    holds is cached without the shared reason, one only the remote holds with it."""
    from filmc.compiler.pipeline import compile_film
    from filmc.compiler.plan import make_plan, render_plan
    from filmc.engine.history import History, RemoteView
    from filmc.engine.remotecache import FolderRemote
    from filmc.engine.store import Store

    class Counting(FolderRemote):
        asked: list[str] = []

        def _list(self, prefix: str) -> Any:
            self.asked.append(f"list {prefix}")
            return super()._list(prefix)

        def _read(self, name: str) -> Any:
            self.asked.append(f"read {name}")
            return super()._read(name)

        def _exists(self, name: str) -> bool:
            self.asked.append(f"exists {name}")
            return super()._exists(name)

    project = clone(tmp_path / "p", services, str(tmp_path / "shared"))
    c = compile_film(project / "team.film")
    assert c.ok, [d.message for d in c.diags.errors]
    run = [c.graph.nodes[n]["step"] for n in c.graph if c.graph.nodes[n]["step"].backend]
    shared, local = [s for s in run if s.id in KEYFRAMES], [s for s in run if s.kind == "plate"]
    remote = Counting(tmp_path / "shared", str(tmp_path / "shared"))
    for s in shared + local:
        remote.put_action(s.key, [], {"backend": s.backend})
    store = Store.open(project / ".filmc", create=True)
    assert store is not None
    with store:
        for s in local:
            store.record_action(s.key, [], {"backend": s.backend})
        remote.asked.clear()
        history = History(store, None, project / ".filmc" / "journal.log",
                          RemoteView(remote.url, remote))
        p = make_plan(c.program(), history)
    assert remote.asked == ["list ac/"]
    got = {s.id: s for s in p.steps}
    assert all(got[s.id].status == "cached" and got[s.id].reasons == (SHARED,) for s in shared)
    assert all(got[s.id].status == "cached" and got[s.id].reasons == () for s in local)
    assert p.cost == 0 and p.shared_steps == len(shared) < p.counts["cached"]
    assert (f"{p.counts['cached']} cached ({len(shared)} in the shared cache "
            f"`{remote.url}`)") in render_plan(p)
