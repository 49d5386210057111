"""The `comfyui` adapter against a loopback ComfyUI (real HTTP and websockets on 127.0.0.1).

Each test drives the adapter as the engine does: prepare, submit, poll until
done (the handle round-tripped through JSON, as the journal keeps it), fetch;
and asserts on what the server received and what came back: the filled
workflow, the uploads, real PNG and MP4 files, the failure kinds.  With
`COMFYUI_URL` set, one more test runs the weight-free workflow on a real
ComfyUI (`python main.py --cpu`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import imageio_ffmpeg
import pytest
from adapter_harness import Uploads
from loopback import serve
from loopback.comfyui import ComfyState, make_app
from PIL import Image

from filmc.backends.comfyui.adapter import ComfyUI
from filmc.backends.protocol import (
    Done,
    FailureKind,
    Handle,
    Input,
    Pending,
    Request,
    ServiceError,
    Setup,
)
from filmc.lang.steps import CHARACTER, FIRST_FRAME, KINDS, LOCATION, Fields, StepId

TESTS = Path(__file__).parent
EXAMPLE = TESTS.parent / "examples" / "wolfpack" / "workflows" / "keyframe_api.json"
WEIGHTFREE = TESTS / "comfyui" / "weightfree_api.json"
CLIP = {  # a keyframe held for the clip's length: LoadImage → RepeatImageBatch → SaveVideo
    "1": {"class_type": "LoadImage", "inputs": {"image": "{{first_frame}}"}},
    "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear",
                                                 "width": "{{width}}", "height": "{{height}}",
                                                 "crop": "center"}},
    "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": "{{frames}}"}},
    "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": "{{fps}}"}},
    "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": "filmc/clip",
                                                "format": "mp4", "codec": "h264"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["1", 0]}},
}


def no_secret(name: str) -> str:
    raise AssertionError(f"the comfyui backend needs no secret, and asked for `{name}`")


def adapter(settings: Mapping[str, Any], root: Path, uploads: Uploads | None = None) -> ComfyUI:
    return ComfyUI(Setup("comfy", settings, root, no_secret, uploads or Uploads()))


def picture(folder: Path, name: str, size: tuple[int, int], role: str = CHARACTER) -> Input:
    path = folder / f"{name}.png"
    Image.new("RGB", size, (200, 40, 40)).save(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Input(role, path, digest, "image", f"sheet.{name}")


def request(folder: Path, kind: str = "keyframe", inputs: tuple[Input, ...] = (), take: int = 1,
            **fields: Any) -> Request:
    step = (StepId.clip("hunt", "ridge", f"take{take}") if kind == "clip"
            else StepId.keyframe("hunt", "ridge", f"comfyui-{take}"))
    key = hashlib.sha256(f"{step}{fields}".encode()).hexdigest()
    workdir = folder / "work" / uuid.uuid4().hex
    workdir.mkdir(parents=True)
    base = {"prompt": "Chen on the ridge at dusk", "negative": "blurry", "width": 320,
            "height": 180, "take": take}
    return Request(step, key, "comfy", Fields(**{**base, **fields}), {}, inputs,
                   KINDS[kind].outputs, workdir)


def journaled(handle: Handle) -> Handle:
    """The handle as a later build reads it back from the journal."""
    return Handle(**json.loads(json.dumps(attrs.asdict(handle))))


async def run(comfy: ComfyUI, req: Request, timeout: float = 10.0) -> Mapping[str, Path]:
    """What the engine does with one step: prepare, submit, poll until done, fetch."""
    handle = journaled(comfy.prepare(req))
    return await finish(comfy, req, handle, await comfy.submit(req, handle), timeout)


async def finish(comfy: ComfyUI, req: Request, handle: Handle, got: Handle | Done | None = None,
                 timeout: float = 10.0) -> Mapping[str, Path]:
    """Poll a submitted job until it is done (as `run`), then fetch its files."""
    got = got or handle
    deadline = time.monotonic() + timeout
    while not isinstance(got, Done):
        assert time.monotonic() < deadline, "the job did not finish"
        got = await comfy.poll(journaled(handle))
        if isinstance(got, Pending) and got.wait:
            await asyncio.sleep(got.wait)
    assert got.cost == 0.0
    return {name: Path(str(p)) for name, p in (await comfy.fetch(got, req)).items()}


@pytest.fixture
def comfy() -> Iterator[tuple[ComfyState, str]]:
    state = ComfyState(latency=0.05)
    with serve(make_app(state)) as url:
        yield state, url


def write(folder: Path, graph: Mapping[str, Any], name: str = "flow.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(graph))
    return path


def failure(coro: Any) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        asyncio.run(coro)
    return caught.value


# -- a step, end to end ------------------------------------------------------------------------


def test_a_keyframe_runs_through_the_example_workflow(comfy, tmp_path):
    state, url = comfy
    sheet = picture(tmp_path, "chen", (300, 400))
    plate = picture(tmp_path, "steppe", (640, 360), role=LOCATION)
    req = request(tmp_path, inputs=(sheet, plate))

    async def go() -> Mapping[str, Path]:
        c = adapter({"url": url, "workflow": str(EXAMPLE)}, tmp_path)
        try:
            return await run(c, req)
        finally:
            await c.close()

    files = asyncio.run(go())
    [sent] = state.prompts.values()
    assert sent["6"]["inputs"]["text"] == "cinematic film still, Chen on the ridge at dusk"
    assert sent["7"]["inputs"]["text"] == "blurry"
    assert sent["3"]["inputs"]["seed"] == int(req.key[:8], 16)  # no seed given: one from the key
    assert (sent["5"]["inputs"]["width"], sent["5"]["inputs"]["height"]) == (320, 180)
    assert sent["11"]["inputs"]["height"] == 180 and sent["11"]["inputs"]["width"] == 0
    assert sent["10"]["inputs"]["image"] == f"filmc/filmc-{sheet.digest[:20]}.png"  # the cast first
    assert state.uploads == 1  # only what a placeholder shows is uploaded
    assert files["image"] == req.workdir / "image.png"
    with Image.open(files["image"]) as img:
        assert img.size == (320, 180)
    # The websocket brought the news: no HTTP polling was needed.
    assert state.history_gets == 0 and state.queue_gets == 0


def test_seeds_and_text_reach_the_server_as_typed_values(comfy, tmp_path):
    state, url = comfy
    flow = write(tmp_path, {
        "1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{ height }}",
                                                     "batch_size": 1, "color": 0}},
        "2": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "{{prompt}}, {{seed}}, {{fps}} fps", "clip": ["1", 0]}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": "{{seed}}", "steps": 1, "cfg": 1.0, "sampler_name": "euler",
            "scheduler": "normal", "positive": ["2", 0], "negative": ["2", 0],
            "latent_image": ["1", 0], "denoise": "{{duration}}"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}})
    req = request(tmp_path, seed=42, fps=Fraction(24), duration=Fraction(1, 2))

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(flow)}, tmp_path)
        try:
            await run(c, req)
        finally:
            await c.close()

    asyncio.run(go())
    [sent] = state.prompts.values()
    assert sent["3"]["inputs"]["seed"] == 42 and isinstance(sent["3"]["inputs"]["seed"], int)
    assert sent["1"]["inputs"]["height"] == 180
    assert sent["2"]["inputs"]["text"] == "Chen on the ridge at dusk, 42, 24 fps"
    assert sent["3"]["inputs"]["denoise"] == 0.5


def test_a_clip_comes_back_as_a_real_mp4(comfy, tmp_path):
    state, url = comfy
    frame = picture(tmp_path, "keyframe", (320, 180), role=FIRST_FRAME)
    req = request(tmp_path, kind="clip", inputs=(frame,), fps=Fraction(24), duration=Fraction(2))

    async def go() -> Mapping[str, Path]:
        c = adapter({"url": url, "workflow_clip": str(write(tmp_path, CLIP))}, tmp_path)
        try:
            return await run(c, req)
        finally:
            await c.close()

    files = asyncio.run(go())
    [sent] = state.prompts.values()
    assert sent["3"]["inputs"]["amount"] == 48 and sent["4"]["inputs"]["fps"] == 24.0
    assert files["video"] == req.workdir / "video.mp4"
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(files["video"]))
    assert frames == 48 and abs(seconds - 2.0) < 0.1


def test_references_are_uploaded_once_per_server(comfy, tmp_path):
    state, url = comfy
    sheet = picture(tmp_path, "chen", (300, 400))
    uploads = Uploads()

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(EXAMPLE)}, tmp_path, uploads)
        try:  # two takes at once, then a third: one upload
            await asyncio.gather(run(c, request(tmp_path, inputs=(sheet,), take=1)),
                                 run(c, request(tmp_path, inputs=(sheet,), take=2)))
            await run(c, request(tmp_path, inputs=(sheet,), take=3))
        finally:
            await c.close()
        again = adapter({"url": url, "workflow": str(EXAMPLE)}, tmp_path, uploads)
        try:  # a later build with the same cache: still none
            await run(again, request(tmp_path, inputs=(sheet,), take=4))
        finally:
            await again.close()

    asyncio.run(go())
    assert state.uploads == 1 and state.submits == 4
    name = f"filmc/filmc-{sheet.digest[:20]}.png"
    assert uploads.values == {(f"comfyui:{url}", sheet.digest): name}
    assert len({p["3"]["inputs"]["seed"] for p in state.prompts.values()}) == 4  # a seed per take


def test_an_image_the_server_lost_is_uploaded_again(comfy, tmp_path):
    state, url = comfy
    sheet = picture(tmp_path, "chen", (300, 400))
    uploads = Uploads()
    uploads.put(f"comfyui:{url}", sheet.digest, "filmc/gone.png")  # the server was reset since

    async def go() -> Mapping[str, Path]:
        c = adapter({"url": url, "workflow": str(EXAMPLE)}, tmp_path, uploads)
        try:
            return await run(c, request(tmp_path, inputs=(sheet,)))
        finally:
            await c.close()

    assert asyncio.run(go())["image"].is_file()
    assert state.uploads == 1 and state.prompt_posts == 2 and state.submits == 1


# -- failures, by kind ------------------------------------------------------------------------


def test_node_errors_are_invalid_and_name_each_node(comfy, tmp_path):
    state, url = comfy
    state.models = ("flux1-dev.safetensors",)
    sheet = picture(tmp_path, "chen", (300, 400))
    c = adapter({"url": url, "workflow": str(EXAMPLE)}, tmp_path)

    async def go() -> None:
        try:
            await run(c, request(tmp_path, inputs=(sheet,)))
        finally:
            await c.close()

    e = failure(go())
    assert e.kind is FailureKind.INVALID and e.status == 400
    assert "keyframe_api.json" in e.message and "Prompt outputs failed validation" in e.message
    assert ("node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: "
            "'sd_xl_base_1.0.safetensors' not in ['flux1-dev.safetensors']") in e.message
    assert state.submits == 0


def test_a_workflow_without_an_output_node_is_invalid(comfy, tmp_path):
    _, url = comfy
    flow = write(tmp_path, {"1": {"class_type": "CLIPTextEncode",
                                  "inputs": {"text": "{{prompt}}", "clip": ["1", 0]}}})

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(flow)}, tmp_path)
        try:
            await run(c, request(tmp_path))
        finally:
            await c.close()

    e = failure(go())
    assert e.kind is FailureKind.INVALID and "Prompt has no outputs" in e.message


def test_an_execution_error_fails_the_step_with_its_node(comfy, tmp_path):
    state, url = comfy
    state.job_errors = {"lava": ("3", "CUDA out of memory. Tried to allocate 2.00 GiB")}
    sheet = picture(tmp_path, "chen", (300, 400))

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(EXAMPLE)}, tmp_path)
        try:
            await run(c, request(tmp_path, inputs=(sheet,), prompt="lava flows"))
        finally:
            await c.close()

    e = failure(go())
    assert e.kind is FailureKind.FAILED
    assert e.message == ("node 3 (KSampler) failed: RuntimeError: CUDA out of memory. "
                         "Tried to allocate 2.00 GiB")


@pytest.mark.parametrize("status, headers, kind, retry_after", [
    (429, {"Retry-After": "1"}, FailureKind.RATE_LIMITED, 1.0),
    (500, {}, FailureKind.TRANSIENT, None),
    (503, {}, FailureKind.TRANSIENT, None),
])
def test_a_refused_submit_says_how_to_retry(comfy, tmp_path, status, headers, kind, retry_after):
    state, url = comfy
    state.fail_submits = [(status, headers, "busy")]

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            await run(c, request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),)))
        finally:
            await c.close()

    e = failure(go())
    assert (e.kind, e.retry_after, e.status) == (kind, retry_after, status)
    assert state.submits == 0


def test_a_lost_submit_answer_is_found_by_polling_not_sent_again(comfy, tmp_path):
    state, url = comfy
    state.reset_submit = 1  # the server queues the job and drops the connection
    req = request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),))

    async def go() -> Pending | Done:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            handle = journaled(c.prepare(req))
            with pytest.raises(ServiceError) as caught:
                await c.submit(req, handle)
            assert caught.value.kind is FailureKind.TRANSIENT and not caught.value.unbilled
            got = await c.poll(handle)  # what the engine asks before sending it again
            while isinstance(got, Pending):
                got = await c.poll(handle)
            return got
        finally:
            await c.close()

    assert isinstance(asyncio.run(go()), Done)
    assert state.submits == 1 and len(set(state.submit_ids)) == 1


def test_a_server_that_names_its_jobs_itself_is_followed_by_its_names(comfy, tmp_path):
    state, url = comfy
    state.own_ids = True
    req = request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),))

    async def go() -> tuple[Handle, Handle | Done]:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            handle = c.prepare(req)
            got = await c.submit(req, handle)
            assert isinstance(got, Handle)
            assert (await finish(c, req, got))["image"].is_file()
            return handle, got
        finally:
            await c.close()

    prepared, accepted = asyncio.run(go())
    assert accepted.id != prepared.id and state.submit_ids == [accepted.id]
    assert accepted.data == prepared.data


def test_an_unknown_prompt_id_is_not_found(comfy, tmp_path):
    _, url = comfy

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            await c.poll(Handle(str(uuid.uuid4()), {"server": url, "client": "x",
                                                    "kind": "keyframe"}))
        finally:
            await c.close()

    e = failure(go())
    assert e.kind is FailureKind.NOT_FOUND and "does not know the job" in e.message


def test_an_expired_download_is_expired(comfy, tmp_path):
    state, url = comfy
    state.view_fail = [403]

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            await run(c, request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),)))
        finally:
            await c.close()

    e = failure(go())
    assert e.kind is FailureKind.EXPIRED and e.status == 403


def test_a_missing_reference_is_invalid_before_anything_is_sent(comfy, tmp_path):
    state, url = comfy

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(EXAMPLE)}, tmp_path)
        try:
            await run(c, request(tmp_path))
        finally:
            await c.close()

    e = failure(go())
    assert e.kind is FailureKind.INVALID and e.unbilled
    assert "takes a reference image (`{{reference_1}}`)" in e.message
    assert state.prompt_posts == 0


# -- following jobs ---------------------------------------------------------------------------


def test_without_a_websocket_jobs_are_polled_over_http(comfy, tmp_path):
    state, url = comfy
    state.websocket = False
    req = request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),))

    async def go() -> Mapping[str, Path]:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            return await run(c, req)
        finally:
            await c.close()

    with Image.open(asyncio.run(go())["image"]) as img:
        assert img.size == (320, 180)
    assert state.history_gets >= 1


def test_a_new_adapter_reattaches_to_a_journaled_job(comfy, tmp_path):
    state, url = comfy
    state.latency = 0.3
    req = request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),))
    settings = {"url": url, "workflow": str(WEIGHTFREE)}

    async def first_build() -> str:
        c = adapter(settings, tmp_path)
        handle = c.prepare(req)
        await c.submit(req, handle)
        await c.close()  # the build dies here
        return json.dumps(attrs.asdict(handle))

    async def next_build(saved: str) -> list[Pending | Done]:
        c = adapter(settings, tmp_path)
        handle = Handle(**json.loads(saved))
        seen = [await c.poll(handle)]
        while isinstance(seen[-1], Pending):
            await asyncio.sleep(0.05)
            seen.append(await c.poll(handle))
        done = seen[-1]
        assert isinstance(done, Done)
        assert (await c.fetch(done, req))["image"].is_file()
        await c.close()
        return seen

    seen = asyncio.run(next_build(asyncio.run(first_build())))
    assert isinstance(seen[0], Pending) and seen[0].status == "running"
    assert state.submits == 1


def test_duplicate_completion_messages_are_harmless(comfy, tmp_path):
    state, url = comfy
    state.duplicate_completion = True

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            for take in (1, 2, 3):
                req = request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),), take=take)
                assert (await run(c, req))["image"].is_file()
        finally:
            await c.close()

    asyncio.run(go())
    assert state.submits == 3


def test_a_job_that_never_finishes_is_cancelled(comfy, tmp_path, monkeypatch):
    monkeypatch.setattr("filmc.backends.comfyui.adapter.NEWS_WAIT", 0.2)
    state, url = comfy
    state.never_finish = True
    req = request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),))

    async def go() -> None:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            handle = c.prepare(req)
            await c.submit(req, handle)
            got = await c.poll(handle)
            assert isinstance(got, Pending) and got.status == "running"
            await c.cancel(handle)
            await c.poll(handle)
        finally:
            await c.close()

    e = failure(go())
    assert e.kind is FailureKind.FAILED and "interrupted" in e.message
    assert state.interrupts == 1


def test_a_serial_server_queues_jobs_and_a_queued_one_can_be_cancelled(comfy, tmp_path):
    state, url = comfy
    state.serial, state.websocket, state.latency = True, False, 0.2
    sheet = picture(tmp_path, "chen", (64, 64))
    reqs = [request(tmp_path, inputs=(sheet,), take=take) for take in (1, 2, 3)]

    async def go() -> list[Pending | Done]:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            handles = [c.prepare(r) for r in reqs]
            for r, h in zip(reqs, handles):
                await c.submit(r, h)
            seen = [await c.poll(h) for h in handles]
            await c.cancel(handles[2])
            for r, h in zip(reqs[:2], handles[:2]):
                assert (await finish(c, r, h))["image"].is_file()
            with pytest.raises(ServiceError) as caught:
                await c.poll(handles[2])
            assert caught.value.kind is FailureKind.NOT_FOUND
            return seen
        finally:
            await c.close()

    seen = asyncio.run(go())
    assert [(type(p), getattr(p, "status", "")) for p in seen] == [
        (Pending, "running"), (Pending, "queued"), (Pending, "queued")]
    assert state.max_in_flight == 1 and len(state.history) == 2 and state.interrupts == 0


def test_corrupt_files_are_handed_over_for_the_engine_to_reject(comfy, tmp_path):
    state, url = comfy
    state.corrupt = True

    async def go() -> Mapping[str, Path]:
        c = adapter({"url": url, "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            return await run(c, request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),)))
        finally:
            await c.close()

    assert not asyncio.run(go())["image"].read_bytes().startswith(b"\x89PNG")


def test_a_pool_sends_each_job_to_the_least_busy_server(tmp_path):
    states = [ComfyState(latency=0.05), ComfyState(latency=0.05)]
    with serve(make_app(states[0])) as one, serve(make_app(states[1])) as two:
        sheet = picture(tmp_path, "chen", (64, 64))
        reqs = [request(tmp_path, inputs=(sheet,), take=t) for t in range(1, 7)]

        async def go() -> list[str]:
            c = adapter({"url": [one, two], "workflow": str(WEIGHTFREE)}, tmp_path)
            try:
                picked = [str(c.prepare(r).data["server"]) for r in reqs[:4]]  # none finished
                await asyncio.gather(*(run(c, r) for r in reqs))
                return picked
            finally:
                await c.close()

        assert asyncio.run(go()) == [one, two, one, two]
    assert states[0].submits == states[1].submits == 3
    assert states[0].uploads == states[1].uploads == 1  # an upload per server


# -- what the class declares --------------------------------------------------------------------


def test_capabilities_follow_the_placeholders(tmp_path):
    clip = write(tmp_path, CLIP)
    settings = {"workflow": str(EXAMPLE), "workflow_clip": str(clip)}
    keyframe = ComfyUI.capabilities("keyframe", settings, tmp_path)
    assert keyframe is not None
    assert (keyframe.seed, keyframe.negative, keyframe.references) == (True, True, 1)
    assert (keyframe.first_frame, keyframe.last_frame) == (False, False)
    made = ComfyUI.capabilities("clip", settings, tmp_path)
    assert made is not None and (made.seed, made.first_frame, made.references) == (False, True, 0)
    assert ComfyUI.capabilities("speech", settings, tmp_path) is None
    assert ComfyUI.capabilities("clip", {"workflow_keyframe": str(EXAMPLE)}, tmp_path) is None
    relative = ComfyUI.capabilities("clip", {"workflow": "flow.json"}, tmp_path)
    assert relative is not None and relative.first_frame  # relative to the project root


def test_key_fields_are_what_the_workflow_reads():
    assert ComfyUI.key_fields("keyframe", {"workflow": str(EXAMPLE)}) == {
        "prompt", "negative", "seed", "width", "height", "take"}
    assert ComfyUI.key_fields("keyframe", {"workflow": str(WEIGHTFREE)}) == {
        "width", "height", "take"}


def test_key_fields_of_a_clip_count_frames_as_fps_and_duration(tmp_path):
    fields = ComfyUI.key_fields("clip", {"workflow": str(write(tmp_path, CLIP))})
    assert fields == {"prompt", "width", "height", "fps", "duration", "take"}
    assert "params" not in fields


def test_check_settings_finds_what_a_user_should_fix(tmp_path):
    def problems(**settings: Any) -> list[tuple[str, str, str | None, bool]]:
        return [(p.setting, p.message, p.help, p.warning) for p in ComfyUI.check_settings(settings)]

    assert problems(workflow=str(EXAMPLE)) == []
    assert problems(workflow=str(EXAMPLE), url=["http://a:8188", "http://b:8188"]) == []
    [(setting, message, help, _)] = problems(url="http://a:8188")
    assert setting == "workflow" and message.startswith("no `workflow` is set")
    ui = write(tmp_path, {"last_node_id": 9, "nodes": [], "links": []}, "ui.json")
    [(setting, message, help, warning)] = problems(workflow=str(ui))
    assert "UI format" in message and help == "in ComfyUI, export it with Workflow → Export (API)"
    typo = write(tmp_path, {"1": {"class_type": "SaveImage",
                                  "inputs": {"filename_prefix": "{{promt}}"}}})
    found = problems(workflow_keyframe=str(typo))
    assert [(s, w) for s, _, _, w in found] == [("workflow_keyframe", False),
                                                ("workflow_keyframe", True)]
    assert "`{{promt}}`, which filmc does not fill" in found[0][1]
    assert (found[0][2] or "").startswith("did you mean `{{prompt}}`?")
    assert "has no `{{prompt}}`" in found[1][1]
    assert [s for s, *_ in problems(workflow=str(EXAMPLE), url=8188)] == ["url"]
    assert [s for s, *_ in problems(workflow=str(EXAMPLE), url="127.0.0.1:8188")] == ["url"]
    assert [s for s, *_ in problems(workflow=str(EXAMPLE), workflow_speech=str(EXAMPLE))] == [
        "workflow_speech"]
    assert [s for s, *_ in problems(workflow=str(EXAMPLE), output_node="99")] == ["output_node"]
    assert problems(workflow=str(tmp_path / "missing.json")) == []  # the compiler says so


def test_output_node_picks_among_several_outputs(comfy, tmp_path):
    state, url = comfy
    graph = json.loads(WEIGHTFREE.read_text())
    graph["6"] = {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                        "filename_prefix": "canvas"}}
    flow = write(tmp_path, graph)
    req = request(tmp_path, inputs=(picture(tmp_path, "chen", (64, 64)),))

    async def go(node: str) -> str:
        c = adapter({"url": url, "workflow": str(flow), "output_node": node}, tmp_path)
        try:
            handle = c.prepare(req)
            got = await c.submit(req, handle)
            while not isinstance(got, Done):
                got = await c.poll(handle)
            return str(got.outputs["image"]["filename"])
        finally:
            await c.close()

    assert asyncio.run(go("6")).startswith("canvas_")
    assert asyncio.run(go("5")).startswith("weightfree_")


# -- the loopback on its own, and a real ComfyUI ------------------------------------------------


def test_the_loopback_runs_as_its_own_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "loopback.comfyui", "--port", str(port),
                             "--latency", "0.01"], cwd=TESTS, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"GET /api/system_stats HTTP/1.0\r\n\r\n")
                    assert b"200 OK" in conn.recv(200)
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "it did not start"
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(not os.environ.get("COMFYUI_URL"),
                    reason="set COMFYUI_URL to a ComfyUI server (`python main.py --cpu`) to run it")
def test_the_weightfree_workflow_on_a_real_comfyui(tmp_path):
    req = request(tmp_path, inputs=(picture(tmp_path, f"ref{uuid.uuid4().hex[:6]}", (96, 128)),),
                  width=256, height=144)

    async def go() -> Mapping[str, Path]:
        c = adapter({"url": os.environ["COMFYUI_URL"], "workflow": str(WEIGHTFREE)}, tmp_path)
        try:
            return await run(c, req, timeout=120)
        finally:
            await c.close()

    with Image.open(asyncio.run(go())["image"]) as img:
        assert img.size == (256, 144)
