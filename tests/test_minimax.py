"""The `minimax` adapter against a loopback MiniMax API (tests/loopback/minimax.py).

Real HTTP on 127.0.0.1, real MP4 bodies.  The first part drives the adapter as the
engine does (submit, poll with the handle round-tripped through JSON, fetch: task →
file id → download URL → file) and asserts what MiniMax was sent, the file that
landed, and for each documented `base_resp` code the kind the engine acts on,
whether it may be sent again, what the user reads, and how many tasks MiniMax
created (each one is paid).  The second part runs the command line: the example
film with its clips made by MiniMax, a build killed with `kill -9` while its task
runs, and a task that ends `Fail`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from adapter_harness import filmc, raised, report, request
from loopback import serve
from loopback.minimax import MiniMaxState, make_app
from test_seedance import (
    FAST,
    TINY_BUILD,
    example_through,
    killed_then_attached,
    picture,
    run,
    sent_image,
    tiny_project,
)

from filmc.backends.ffmpeg import probe
from filmc.backends.minimax import REGIONS, MiniMax, base_url
from filmc.backends.protocol import (
    FailureKind,
    Handle,
    Pending,
    Request,
    ServiceError,
    Setup,
)
from filmc.backends.registry import adapter_class
from filmc.engine.journal import read_open
from filmc.lang.steps import FIRST_FRAME, LAST_FRAME, StepId

KEY = "mm-canary-93be11f04a"  # must never appear in a message, a file or a log
KEYS = {"MINIMAX_API_KEY": KEY}


@pytest.fixture
def state() -> MiniMaxState:
    return MiniMaxState(key=KEY)


@pytest.fixture
def api(state: MiniMaxState) -> Iterator[str]:
    with serve(make_app(state)) as url:
        yield url


def adapter(api: str, root: Path, key: str = KEY, **settings: Any) -> MiniMax:
    return MiniMax(Setup(name="minimax", settings={"base_url": api, **settings}, root=root,
                         secret=lambda name: key if name == "api_key" else "", uploads=None))


def clip(tmp: Path, *, last: bool = True, **fields: Any) -> Request:
    inputs = (picture(tmp, "first", FIRST_FRAME),)
    if last:
        inputs += (picture(tmp, "last", LAST_FRAME),)
    fields = {"prompt": "The wolves run down the ridge in the snow.", "seed": 1, "width": 192,
              "height": 80, "fps": Fraction(24), "duration": Fraction(3), "take": 1, **fields}
    return request(StepId.clip("hunt", "wolves", "take1"), "minimax", tmp / "work", inputs,
                   key="9" * 64, **fields)


def failure(a: MiniMax, req: Request) -> ServiceError:
    return raised(lambda: run(a, req), KEY)


# -- clips ------------------------------------------------------------------------------------


def test_a_clip_goes_task_then_file_then_download(state, api, tmp_path):
    """Hailuo 02 (the default model) gets the first and the last frame as data URLs, scaled
    up to MiniMax's 300 px minimum, and the 3 s shot asked at 6 s; the task goes Preparing,
    Queueing, Processing, Success; its file is retrieved and downloaded: a real MP4 shaped
    like the first frame, at 768P."""
    req = clip(tmp_path)
    done, files, seen = run(adapter(api, tmp_path, resolution="768P"), req)

    [body] = state.received
    assert {k: v for k, v in body.items() if not k.endswith("_image")} == {
        "model": "MiniMax-Hailuo-02", "prompt": req.fields.prompt, "duration": 6,
        "resolution": "768P"}
    assert [sent_image(body[k]).size for k in ("first_frame_image", "last_frame_image")] == \
        [(723, 301)] * 2
    assert seen == ["preparing", "queued", "processing", "done"]
    assert files == {"video": req.workdir / "video.mp4"}
    video = probe(files["video"])
    assert (video["width"], video["height"]) == (1844, 768)
    assert video["duration"] == pytest.approx(6, abs=0.1)
    assert done.note == f"MiniMax task {state.created[0]}, 1844x768"
    assert len(state.created) == 1
    assert (state.requests["retrieve"], state.requests["download"]) == (1, 1)


def test_a_model_without_last_frames_gets_the_first_and_the_step_says_so(state, api, tmp_path):
    req = clip(tmp_path, duration=Fraction(8))
    done, _, _ = run(adapter(api, tmp_path, model="MiniMax-Hailuo-2.3",
                             prompt_optimizer=False), req)
    [body] = state.received
    assert "last_frame_image" not in body and "first_frame_image" in body
    assert (body["model"], body["duration"], body["prompt_optimizer"]) == (
        "MiniMax-Hailuo-2.3", 10, False)
    assert done.note.endswith("made without its last frame (MiniMax-Hailuo-2.3 takes none)")


def test_a_prompt_minimax_would_refuse_is_not_sent(state, api, tmp_path):
    e = failure(adapter(api, tmp_path), clip(tmp_path, prompt="wolf " * 401))
    assert e.kind is FailureKind.INVALID and e.unbilled and "takes 2000" in e.message
    assert not state.requests


# -- MiniMax's faults -------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "message", "kind", "said"), [
    (1027, "output new_sensitive", FailureKind.POLICY, "refused the video it made"),
    (1000, "unknown error", FailureKind.FAILED, "build again to submit it anew"),
])
def test_a_task_that_ends_fail_fails_the_step_and_says_why(state, api, tmp_path, code, message,
                                                          kind, said):
    """`Fail`: the task was paid for and made nothing; the step fails (a safety refusal of
    the output as a policy refusal), is not polled again, and nothing is downloaded."""
    state.fail["wolves run"] = (code, message)
    e = failure(adapter(api, tmp_path), clip(tmp_path))
    assert e.kind is kind and not e.retryable
    assert f"MiniMax task `{state.created[0]}` failed ({code}, {message})" in e.message
    assert said in e.message
    assert len(state.created) == 1 and state.requests["retrieve"] == 0


@pytest.mark.parametrize(("fault", "kind", "unbilled", "said"), [
    (("code", 1002, "rate limit"), FailureKind.RATE_LIMITED, True, "1002 (rate limit)"),
    (("code", 1039, "token limit"), FailureKind.RATE_LIMITED, True, "1039"),
    (("code", 1008, "insufficient balance"), FailureKind.CREDIT, False, "top it up"),
    (("code", 2056, "usage limit exceeded"), FailureKind.CREDIT, False, "5-hour window"),
    (("code", 1026, "input new_sensitive"), FailureKind.POLICY, False, "another backend"),
    (("code", 1024, "internal error"), FailureKind.TRANSIENT, True, "1024"),
    (("code", 1001, "request timeout"), FailureKind.TRANSIENT, False, "1001"),
    (("http", 429, {"Retry-After": "3"}), FailureKind.RATE_LIMITED, True, "429"),
    (("http", 502, None), FailureKind.TRANSIENT, False, "502"),
])
def test_each_answer_means_what_minimax_documents(state, api, tmp_path, fault, kind, unbilled,
                                                  said):
    state.faults.append(fault)
    e = failure(adapter(api, tmp_path), clip(tmp_path))
    assert (e.kind, e.unbilled) == (kind, unbilled) and said in e.message
    if fault[0] == "http" and fault[1] == 429:
        assert e.retry_after == pytest.approx(3)
    assert not state.created


def test_sensitive_words_are_refused_at_submit_every_time(state, api, tmp_path):
    state.sensitive.append("wolves run")
    for attempt in ("a", "b"):
        e = failure(adapter(api, tmp_path), clip(tmp_path / attempt))
        assert e.kind is FailureKind.POLICY and "1026 (input new_sensitive)" in e.message
        assert "reword the shot's prompt or change its keyframe" in e.message
    assert state.requests["create"] == 2 and not state.created


def test_a_refused_key_names_the_variable_and_never_shows(state, api, tmp_path):
    e = failure(adapter(api, tmp_path, key="mm-not-this-one"), clip(tmp_path))
    assert e.kind is FailureKind.AUTH and "2049 (invalid api key)" in e.message
    assert "api_key_env" in e.message
    e = failure(adapter(api, tmp_path, key=""), clip(tmp_path / "b"))
    assert e.kind is FailureKind.AUTH and "1004" in e.message
    assert state.auth_failures == 2 and not state.created


def test_a_request_minimax_does_not_take_is_invalid(state, api, tmp_path):
    e = failure(adapter(api, tmp_path, durations=[8]), clip(tmp_path))
    assert e.kind is FailureKind.INVALID and "2013" in e.message and "does not make 8s" in \
        e.message and "check `model`, `resolution` and `durations`" in e.message


def test_a_connection_dropped_after_submitting_may_have_been_billed(state, api, tmp_path):
    state.faults.append(("reset",))
    e = failure(adapter(api, tmp_path), clip(tmp_path))
    assert e.kind is FailureKind.TRANSIENT and not e.unbilled
    assert len(state.created) == 1


def test_an_expired_or_broken_download_is_not_kept(state, api, tmp_path):
    state.url_ttl = 0
    e = failure(adapter(api, tmp_path), clip(tmp_path / "a"))
    assert e.kind is FailureKind.EXPIRED and e.status == 403
    state.url_ttl, state.corrupt = 3600, True
    req = clip(tmp_path / "b")
    e = failure(adapter(api, tmp_path), req)
    assert e.kind is FailureKind.FAILED and "not an MP4 video" in e.message
    assert list(req.workdir.iterdir()) == []


def test_a_task_minimax_does_not_know_is_not_found_and_an_odd_answer_is_asked_again(
        state, api, tmp_path):
    """Polling: an unknown task is NOT_FOUND (the engine forgets it); a code this adapter
    does not know is TRANSIENT, so a task that may be running, and paid for, stays
    journaled rather than being given up."""
    a = adapter(api, tmp_path)

    async def poll(handle: Handle) -> ServiceError:
        with pytest.raises(ServiceError) as info:
            await a.poll(handle)
        return info.value

    async def go() -> None:
        try:
            assert (await poll(Handle("1", {"base": api}))).kind is FailureKind.NOT_FOUND
            handle = await a.submit(clip(tmp_path), None)
            assert isinstance(handle, Handle)
            state.faults.append(("code", 1234, "something new"))
            e = await poll(handle)
            assert e.kind is FailureKind.TRANSIENT and "1234 (something new)" in e.message
            assert isinstance(await a.poll(handle), Pending)
        finally:
            await a.close()

    asyncio.run(go())


# -- what the class declares ------------------------------------------------------------------


def test_it_is_the_registered_minimax_adapter_and_the_region_picks_the_host():
    assert adapter_class("minimax") is MiniMax
    assert base_url({}) == REGIONS["international"] == "https://api.minimax.io"
    assert base_url({"region": "china"}) == "https://api.minimaxi.com"


def test_capabilities_and_keys(tmp_path):
    caps = MiniMax.capabilities("clip", {}, tmp_path)
    assert caps is not None
    assert (caps.seed, caps.negative, caps.references, caps.first_frame, caps.last_frame) == \
        (False, False, 0, True, True)
    assert caps.durations == (6, 10) and caps.aspect_ratios is None
    other = MiniMax.capabilities("clip", {"model": "MiniMax-Hailuo-2.3", "resolution": "1080P"},
                                 tmp_path)
    assert other is not None and not other.last_frame and other.durations == (6,)
    assert MiniMax.capabilities("keyframe", {}, tmp_path) is None
    assert MiniMax.key_fields("clip", {}) == {"prompt", "duration", "take"}
    assert MiniMax.key_extra("clip", {}) == {"model": "MiniMax-Hailuo-02"}
    assert MiniMax.key_extra("clip", {"model": "MiniMax-Hailuo-02"}) == {}
    assert MiniMax.key_settings("clip", {"model": "m", "resolution": "768P", "retries": 2}) == {
        "model": "m", "resolution": "768P"}


def problems(**settings: Any) -> dict[str, tuple[bool, str]]:
    return {p.setting: (p.warning, p.message + " " + (p.help or ""))
            for p in MiniMax.check_settings(settings)}


def test_check_settings():
    assert problems() == {}
    assert problems(model="MiniMax-Hailuo-02", region="china", resolution="1080P",
                    durations=[6], last_frame=True, aigc_watermark=False, timeout_s=600) == {}
    assert not problems(region="eu")["region"][0]
    assert not problems(resolution="768p")["resolution"][0]
    assert not problems(durations=[6.5])["durations"][0]
    assert problems(model="MiniMax-Hailuo-2.3", last_frame=True)["last_frame"][0]
    warning, text = problems(prompt_optimiser=False)["prompt_optimiser"]
    assert warning and "did you mean `prompt_optimizer`?" in text


# -- the command line -------------------------------------------------------------------------


def backend_table(api: str) -> dict[str, dict[str, Any]]:
    return {"backends.minimax": {"type": "minimax", "api_key_env": "MINIMAX_API_KEY",
                                 "base_url": api, "resolution": "512P", **FAST,
                                 "prices": {"clip": 0.28}}}


def test_the_example_film_is_made_through_minimax(tmp_path, state, api):
    """examples/wolfpack as it is in git, its clips routed to MiniMax at the loopback
    server: the shot's clip is MiniMax's video byte for byte, from one task paid once, 6 s
    cut to the shot's 3 s; building again sends nothing."""
    example_through(tmp_path, "minimax", backend_table(api), state, KEYS)
    assert state.received[0]["duration"] == 6 and "last_frame_image" not in state.received[0]


def test_kill_9_mid_poll_then_the_next_build_attaches_and_pays_nothing_twice(tmp_path, state,
                                                                             api):
    killed_then_attached(tiny_project(tmp_path / "tiny", "minimax", backend_table(api)), state,
                         "query", KEYS)


def test_a_task_that_fails_at_minimax_fails_the_shot_once(tmp_path, state, api):
    """The task ends `Fail` (its output refused): the build fails the shot with MiniMax's
    code and what to do, polls no more, downloads nothing, keeps nothing journaled."""
    project = tiny_project(tmp_path / "tiny", "minimax", backend_table(api))
    state.fail["walks along the pier"] = (1027, "output new_sensitive")
    r = filmc(project, "build", *TINY_BUILD, keys=KEYS, code=1)
    error = report(project, "tiny")["clip.one.a1.take1"]["error"]
    assert "failed (1027, output new_sensitive)" in error and "another backend" in error
    assert f"failed clip.one.a1.take1 (shot one/a1): {error}" in r.stderr
    assert len(state.created) == 1 and state.requests["retrieve"] == 0
    assert not read_open(project / ".filmc" / "journal.log")
