"""`filmc build` when paid services misbehave, and when the build is killed or interrupted.

The film, the project and the helpers are test_services.py's: keyframes at a
loopback ComfyUI, the sheet, b2's keyframe and the dialogue at a loopback OpenAI,
real HTTP, the CLI in a subprocess.  Each fault is injected at the server; each
test asserts what the user is told (exit code, stderr, report.json), what is
left for the next build (the job journal), and on the server's own counters
that nothing was paid twice and nothing was sent that should not have been.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_build import marked, wait_gone
from test_services import (
    COMFY_STEPS,
    OPENAI_STEPS,
    USE_FIRST,
    Services,
    assert_paid_once,
    build,
    config,
    env_for,
    filmc,
    journal,
    keys,
    make_project,
    plan,
    planned,
    report,
    running_services,
    steps,
    with_status,
)

A1 = "keyframe.one.a1.comfyui-1"
ONE_JOB = ("--until", "keyframe", "--select", "shot:a1")  # sheet.ANA at OpenAI, a1 at ComfyUI
LINE = "speech.one.a2.1"


@pytest.fixture
def services() -> Iterator[Services]:
    with running_services() as s:
        yield s


@pytest.fixture
def project(tmp_path: Path, services: Services) -> Path:
    return make_project(tmp_path / "svc", services)


def failure(project: Path, step: str) -> str:
    """The error report.json gives for `step`, which must have failed."""
    s = steps(project)[step]
    assert s["status"] == "failed", s
    return s["error"]


def wait_for(condition: Callable[[], bool], seconds: float = 30, what: str = "") -> None:
    """Poll `condition` until it holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def accepted(project: Path) -> int:
    """How many jobs the journal holds as accepted by their service."""
    return sum(1 for j in journal(project).values() if j.op == "accepted")


# -- retried, and paid once ---------------------------------------------------------------------


@pytest.mark.parametrize("service,status", [("comfyui", 429), ("comfyui", 503),
                                            ("openai", 429), ("openai", 500)])
def test_a_throttled_or_failing_submit_is_sent_again_and_paid_once(
        project: Path, services: Services, service: str, status: int) -> None:
    """429 with Retry-After, or a 5xx, on submitting: the build waits, sends it again and
    succeeds; the service made (and billed) the step once."""
    headers = {"Retry-After": "1"} if status == 429 else {}
    if service == "comfyui":
        services.comfy.fail_submits.append((status, headers, "busy, try again"))
        build(project, services, *ONE_JOB)
        assert A1 in with_status(project, "ran")
        assert (services.comfy.prompt_posts, len(services.comfy.submit_ids)) == (2, 1)
        first, again = services.comfy.prompt_times
    else:
        services.openai.faults.append(("status", status, headers or None, None))
        build(project, services, "--select", LINE)
        assert with_status(project, "ran") == {LINE}
        assert (services.openai.requests["audio/speech"], services.openai.billed) == (2, 1)
        first, again = services.openai.request_times
    if status == 429:
        assert again - first >= 0.99, "Retry-After: 1 was not honoured"
    assert_paid_once(services)


def test_a_comfyui_submit_whose_answer_is_lost_is_found_not_sent_again(
        project: Path, services: Services) -> None:
    """The connection drops after ComfyUI queued the prompt: the build asks for the job by
    the prompt id it chose, finds it, and waits for it: one POST, one job."""
    services.comfy.reset_submit = 1
    build(project, services, *ONE_JOB)
    assert A1 in with_status(project, "ran")
    assert (services.comfy.prompt_posts, len(services.comfy.submit_ids)) == (1, 1)
    assert not journal(project)


def test_an_openai_request_whose_answer_is_lost_is_not_sent_again(
        project: Path, services: Services) -> None:
    """OpenAI has no job id to ask about: a connection that drops after the request was
    sent may have been billed, so the step fails and says so, and is not sent again by
    this build; the next build sends it anew (the user's explicit choice)."""
    services.openai.faults.append(("reset",))
    r = build(project, services, "--select", LINE, code=1)
    error = failure(project, LINE)
    assert ("may have reached `openai` and been billed, so it is not sent again: "
            "`filmc build` submits it anew when you choose to") in error
    assert f"failed {LINE} (shot one/a2): {error}" in r.stderr
    assert (services.openai.requests["audio/speech"], services.openai.billed) == (1, 1)
    assert not journal(project)
    build(project, services, "--select", LINE)
    assert with_status(project, "ran") == {LINE}
    assert (services.openai.requests["audio/speech"], services.openai.billed) == (2, 2)


# -- jobs that fail, never finish, or come back broken ----------------------------------------


def test_a_job_that_fails_at_comfyui_shows_the_node_and_its_message(
        project: Path, services: Services) -> None:
    """A node raises on the server: the step fails with the node's id, type and message;
    it is not sent again, and nothing stays journaled."""
    services.comfy.job_errors["walks along the pier"] = ("6", "CUDA out of memory")
    r = build(project, services, *ONE_JOB, code=1)
    error = "node 6 (KSampler) failed: RuntimeError: CUDA out of memory"
    assert failure(project, A1) == error
    assert f"failed {A1} (shot one/a1): {error}" in r.stderr
    assert len(services.comfy.submit_ids) == 1 and not journal(project)


def test_a_job_that_never_finishes_is_picked_up_by_the_next_build(
        project: Path, services: Services) -> None:
    """ComfyUI never finishes: past `timeout_s` each keyframe fails with "still running",
    the journal keeps the jobs and `plan` shows them running.  Once the server finishes
    them, the next build polls them (attached), submits nothing, and runs what plan said."""
    (project / "filmc.toml").write_text(config(services, comfy={"timeout_s": 1}))
    services.comfy.never_finish = True
    r = build(project, services, "--until", "keyframe", code=1)
    for sid in COMFY_STEPS:
        assert "still running at `comfyui` after 1 s; it stays recorded, and the next build " \
               "picks it up" in failure(project, sid)
    assert "4 paid jobs still running at the service; the next build picks them up" in r.stderr
    assert report(project)["jobs_running"] == 4
    ids = keys(project)
    assert set(journal(project)) == {ids[s] for s in COMFY_STEPS}
    doc = plan(project, services, "--until", "keyframe")
    assert {s["id"] for s in doc["steps"] if s["status"] == "running"} == COMFY_STEPS

    services.comfy.never_finish = False
    build(project, services, "--until", "keyframe")
    assert with_status(project, "ran") == planned(doc) >= COMFY_STEPS
    assert all(steps(project)[s]["attached"] for s in COMFY_STEPS)
    assert len(services.comfy.submit_ids) == 4 and not journal(project)
    assert_paid_once(services)


@pytest.mark.parametrize("status", [403, 500])
def test_a_download_that_fails_once_is_fetched_again(
        project: Path, services: Services, status: int) -> None:
    """/view answers 403 (expired: the job is asked again for its result) or 500 (retried):
    the image arrives; the job ran once."""
    services.comfy.view_fail.append(status)
    build(project, services, *ONE_JOB)
    assert A1 in with_status(project, "ran")
    assert services.comfy.views == 2 and len(services.comfy.submit_ids) == 1


def test_a_download_that_keeps_failing_is_a_clear_error(project: Path,
                                                        services: Services) -> None:
    """/view answers 404 for good: the step fails saying the paid result cannot be
    downloaded, and why; the result was asked for once more (fresh links), not forever."""
    services.comfy.view_fail.extend([404] * 20)
    r = build(project, services, *ONE_JOB, code=1)
    error = failure(project, A1)
    assert "cannot be downloaded: cannot download `" in error
    assert "/view answered 404" in error and error in r.stderr
    assert services.comfy.views == 2 and len(services.comfy.submit_ids) == 1


@pytest.mark.parametrize("service", ["comfyui", "openai"])
def test_an_image_that_does_not_decode_is_not_stored(project: Path, services: Services,
                                                     service: str) -> None:
    """The service says "done" and sends bytes that are not an image: the step fails with
    "does not decode", and nothing enters the store under its key."""
    if service == "comfyui":
        services.comfy.corrupt = True
        sid, args = A1, ONE_JOB
    else:
        services.openai.faults.append(("corrupt",))
        sid, args = "keyframe.one.b2.openai-1", ("--until", "keyframe", "--select", "shot:b2")
    r = build(project, services, *args, code=1)
    error = failure(project, sid)
    assert "sent an image that does not decode" in error and error in r.stderr
    key = keys(project)[sid]
    assert key not in (project / ".filmc" / "actions.log").read_text()
    from filmc.engine.store import Store

    with Store.open(project / ".filmc") as store:  # type: ignore[union-attr]
        assert store.get_actions([key]) == {}
    if service == "openai":
        assert (services.openai.requests["images/edits"], services.openai.billed) == (1, 1)


def test_a_corrupt_result_is_made_anew_by_the_next_build(project: Path,
                                                         services: Services) -> None:
    """A job whose finished result does not decode is over: the next build submits the
    step again (at the user's choice, as any failed step) rather than fetching the same
    broken file for ever."""
    services.comfy.corrupt = True
    build(project, services, *ONE_JOB, code=1)
    assert not journal(project)
    services.comfy.corrupt = False
    build(project, services, *ONE_JOB)
    assert A1 in with_status(project, "ran") and len(services.comfy.submit_ids) == 2


def test_a_job_announced_twice_is_made_once(project: Path, services: Services) -> None:
    """ComfyUI sends its completion messages twice: harmless, one job and one image each."""
    services.comfy.duplicate_completion = True
    build(project, services, "--until", "keyframe")
    made = steps(project)
    assert all(made[s]["status"] == "ran" and len(made[s]["outputs"]) == 1 for s in COMFY_STEPS)
    assert len(services.comfy.submit_ids) == 4
    assert_paid_once(services)


# -- refusals ----------------------------------------------------------------------------------


def test_out_of_credit_stops_submitting_to_that_service(tmp_path: Path,
                                                        services: Services) -> None:
    """OpenAI answers `insufficient_quota`: that step fails saying so, and every other OpenAI
    step of the build is "not submitted" (no request reaches the server after the first)."""
    project = make_project(tmp_path / "svc", services, openai={"concurrency": 1})
    services.openai.faults.append(("quota",))
    r = build(project, services, "--keep-going", code=1)
    errors = {s: failure(project, s) for s in OPENAI_STEPS}
    [first] = [s for s, e in errors.items() if not e.startswith("not submitted")]
    assert "You exceeded your current quota" in errors[first]
    assert "add credit or raise the spend limit" in errors[first]
    for s in OPENAI_STEPS - {first}:
        assert errors[s].startswith("not submitted: `openai` is out of credit ("), errors[s]
        assert f"failed {s}" in r.stderr
    assert sum(services.openai.requests.values()) == 1 and services.openai.billed == 0


def test_a_refused_prompt_fails_its_shot_only_and_is_not_retried(
        project: Path, services: Services) -> None:
    """The safety system refuses b2's keyframe: that shot fails with the service's reason
    and what to do; the request is not sent again; the other OpenAI steps go on."""
    services.openai.refuse.append("kite rises over the water")
    r = build(project, services, "--keep-going", code=1)
    error = failure(project, "keyframe.one.b2.openai-1")
    assert "rejected by the safety system" in error and "reword the shot's prompt" in error
    assert "failed keyframe.one.b2.openai-1 (shot one/b2): " in r.stderr
    assert services.openai.requests["images/edits"] == 1  # b2's, once
    assert with_status(project, "ran") >= OPENAI_STEPS - {"keyframe.one.b2.openai-1"}
    assert with_status(project, "failed") == {"keyframe.one.b2.openai-1"}


def test_a_refused_key_stops_the_service(tmp_path: Path, services: Services) -> None:
    """OpenAI answers 401: the step fails naming `api_key_env`; the others are not sent."""
    project = make_project(tmp_path / "svc", services, openai={"concurrency": 1})
    services.openai.key = "sk-another-key-altogether"
    r = build(project, services, "--keep-going", code=1)
    errors = {s: failure(project, s) for s in OPENAI_STEPS}
    [first] = [s for s, e in errors.items() if not e.startswith("not submitted")]
    assert "the API key was refused" in errors[first]
    assert "the environment variable named by `api_key_env`" in errors[first]
    for s in OPENAI_STEPS - {first}:
        assert errors[s].startswith("not submitted: `openai` refused the key ("), errors[s]
    assert services.openai.auth_failures == 1 and services.openai.billed == 0
    assert services.key not in r.stderr


def test_the_key_appears_nowhere(project: Path, services: Services) -> None:
    """The API key (a canary) after builds with a policy refusal and a 401 whose body echoes
    the key: in no file of the project (.filmc, build/, logs, databases), not on stdout or
    stderr, not in `plan --json`."""
    services.openai.refuse.append("kite rises over the water")
    said = [build(project, services, "--keep-going", "--until", "keyframe", code=1)]
    services.openai.refuse.clear()
    services.openai.faults.append(("status", 401, None, {"error": {
        "message": f"Incorrect API key provided: {services.key}.", "type": "invalid_request_error",
        "param": None, "code": "invalid_api_key"}}))
    said.append(build(project, services, "--keep-going", "--until", "keyframe", code=1))
    assert "the API key was refused" in failure(project, "keyframe.one.b2.openai-1")
    assert "Incorrect API key provided: ***." in said[-1].stderr  # the echoed key, masked
    said.append(filmc(project, "plan", "--json", "svc.film", services=services))
    said.append(filmc(project, "plan", "-v", "svc.film", services=services))
    canary = services.key.encode()
    for r in said:
        assert services.key not in r.stdout + r.stderr
    files = [p for p in project.rglob("*") if p.is_file()]
    assert any(p.name == "report.json" for p in files) and any(p.suffix == ".db" for p in files)
    leaks = [p for p in files if canary in p.read_bytes()]
    assert not leaks, f"the key is in {leaks}"
    assert services.openai.auth_failures == 0  # the server did get the key, each time


# -- a build killed or interrupted while jobs run -----------------------------------------------


def start(project: Path, services: Services, mark: str, *args: str) -> subprocess.Popen:
    """`filmc build` in the background, in its own session (as a terminal's job)."""
    return subprocess.Popen([sys.executable, "-m", "filmc", "build", USE_FIRST, *args,
                             "svc.film"], cwd=project, env=env_for(services, mark),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_kill_9_while_jobs_run_then_the_next_build_attaches_to_them(
        project: Path, services: Services) -> None:
    """`kill -9` of a build whose four ComfyUI jobs are running: no process of it survives;
    the next build polls those jobs (attached), submits none of them again, and finishes
    the film.  (The build is killed once OpenAI's answers are stored: a synchronous request
    under way when a build is killed is paid for and lost, and there is no job to ask for.)"""
    services.comfy.latency = 3.0
    ids = keys(project)
    log = project / ".filmc" / "actions.log"
    mark = f"filmc-test-{uuid.uuid4()}"
    proc = start(project, services, mark)

    def stored(step: str) -> bool:
        return log.exists() and ids[step] in log.read_text()

    try:
        wait_for(lambda: len(services.comfy.submit_ids) == 4 and accepted(project) == 4
                 and all(stored(s) for s in OPENAI_STEPS),
                 what="four jobs submitted and journaled, OpenAI's steps stored")
        assert services.comfy.in_flight == 4
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert wait_gone(mark), f"processes of the killed build are alive: {marked(mark)}"
    services.comfy.latency = 0.05
    r = build(project, services)
    assert r.stdout.strip().endswith("build/svc/film.mp4")
    assert all(steps(project)[s]["attached"] for s in COMFY_STEPS)
    assert len(services.comfy.submit_ids) == 4 and not journal(project)
    assert_paid_once(services)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_leaves_the_jobs_running_for_the_next_build(project: Path, services: Services,
                                                          how: str) -> None:
    """Ctrl-C (SIGINT to the build's process group), or SIGTERM to the build, while four
    ComfyUI jobs run: exit 130 at once, the message counts the paid jobs still running;
    the next build attaches to them."""
    services.comfy.never_finish = True  # they run until the test lets them finish
    mark = f"filmc-test-{uuid.uuid4()}"
    proc = start(project, services, mark, "--until", "keyframe")
    try:
        wait_for(lambda: accepted(project) == 4, what="four jobs journaled")
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        sent = time.monotonic()
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - sent < 5  # at once, not when the jobs finish
    assert proc.returncode == 130, err
    assert "filmc: interrupted; every finished step is kept in the store; 4 paid jobs still " \
           "running, and the next build picks them up" in err
    assert "Traceback" not in err
    assert wait_gone(mark), marked(mark)
    doc = report(project)
    assert doc["interrupted"] is True and doc["jobs_running"] == 4
    assert len(journal(project)) == 4
    assert {s["id"] for s in plan(project, services, "--until", "keyframe")["steps"]
            if s["status"] == "running"} == COMFY_STEPS
    services.comfy.never_finish = False
    build(project, services, "--until", "keyframe")
    assert all(steps(project)[s]["attached"] for s in COMFY_STEPS)
    assert len(services.comfy.submit_ids) == 4 and not journal(project)
    assert_paid_once(services)


def test_ctrl_c_lets_a_paid_request_under_way_come_back(project: Path,
                                                       services: Services) -> None:
    """Ctrl-C while OpenAI is answering a line (a synchronous request, paid, with no job to
    ask for later): the build says it waits for it, stores the answer and exits 130; the
    next build has nothing to send."""
    services.openai.latency = 2.0
    mark = f"filmc-test-{uuid.uuid4()}"
    proc = start(project, services, mark, "--select", LINE)
    try:
        wait_for(lambda: services.openai.in_flight == 1, what="the request under way")
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "waiting for 1 paid request(s) under way to come back" in err
    assert "interrupted; every finished step is kept in the store" in err
    assert with_status(project, "ran") == {LINE} and services.openai.billed == 1
    services.openai.latency = 0.0
    r = build(project, services, "--select", LINE)
    assert "cached" in r.stderr and with_status(project, "ran") == set()
    assert sum(services.openai.requests.values()) == 1


def test_ctrl_c_while_a_paid_answer_downloads_keeps_it(project: Path,
                                                      services: Services) -> None:
    """OpenAI answered with a URL (paid), and the image is downloading when Ctrl-C comes:
    the build lets the download finish and stores it; the next build pays nothing."""
    services.openai.use_urls = True
    services.openai.file_latency = 1.5
    mark = f"filmc-test-{uuid.uuid4()}"
    proc = start(project, services, mark, "--select", "sheet.ANA")
    try:
        wait_for(lambda: services.openai.requests["files"] == 1, what="the download")
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "waiting for 1 paid request(s) under way to come back" in err
    assert with_status(project, "ran") == {"sheet.ANA"} and services.openai.billed == 1
    services.openai.file_latency = 0.0
    build(project, services, "--select", "sheet.ANA")
    assert with_status(project, "ran") == set() and services.openai.billed == 1
