"""The `flux` adapter against a loopback Black Forest Labs API (tests/loopback/flux.py).

Real HTTP, real PNG and JPEG bodies.  The first part drives the adapter as the
engine does (submit → poll the returned `polling_url` → fetch) and asserts what
BFL was sent, the image that landed, and for each of FLUX's own faults the
failure kind the engine acts on, the message the user reads, and how many tasks
BFL started (each is paid).  The second part runs `filmc build` in a
subprocess and kills it with `kill -9` while FLUX tasks are polled: the next
build re-attaches to the task BFL still has and reports the one whose
`polling_url` expired; the build after makes that one anew.  (The example film
made through FLUX and Runway together is in test_runway.py.)
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adapter_harness as harness
import pytest
from loopback import serve
from loopback.flux import FluxState, make_app
from PIL import Image
from test_services_faults import accepted

from filmc.backends.flux import Family, Flux, frame_size
from filmc.backends.protocol import (
    Done,
    FailureKind,
    Handle,
    Input,
    Json,
    Pending,
    Request,
    ServiceError,
    Setup,
)
from filmc.backends.registry import adapter_class
from filmc.lang.steps import CHARACTER, LOCATION, REFERENCE, StepId
from filmc.lang.steps import Tags as T

KEY = "bfl-canary-3f9a0c2d71e84b56"  # must never appear in a message or a file


class Uploads:
    def get(self, scope: str, digest: str) -> Json | None:
        return None

    def put(self, scope: str, digest: str, value: Json) -> None:
        raise AssertionError("FLUX sends references inline: nothing is uploaded")


@pytest.fixture
def state() -> FluxState:
    return FluxState(key=KEY)


@pytest.fixture
def api(state: FluxState) -> Iterator[str]:
    with serve(make_app(state)) as url:
        yield url


def adapter(url: str, root: Path, key: str = KEY, **settings: Any) -> Flux:
    return Flux(Setup(name="flux", settings={"base_url": url, **settings}, root=root,
                      secret=lambda name: key if name == "api_key" else "", uploads=Uploads()))


def picture(tmp: Path, name: str, role: str, tags: T) -> Input:
    path = tmp / f"{name}.png"
    Image.new("RGB", (48, 64), tuple(hashlib.sha256(name.encode()).digest()[:3])).save(path)
    return harness.image(path, role, f"sheet.{name}", tags)


def keyframe(tmp: Path, *inputs: Input, **fields: Any) -> Request:
    fields = {"prompt": "Chen raises a pair of old army binoculars.", "width": 1920,
              "height": 804, "seed": 7, "take": 1, **fields}
    return harness.request(StepId.keyframe("hunt", "chen_watches", "flux-1"), "flux",
                           tmp / "work" / uuid.uuid4().hex[:8], inputs, **fields)


def run(a: Flux, req: Request, seen: list[str] | None = None) -> tuple[Done, Any, Handle]:
    async def go() -> tuple[Done, Any, Handle]:
        handle = await a.submit(req, a.prepare(req))
        assert isinstance(handle, Handle)
        while isinstance(got := await a.poll(handle), Pending):
            if seen is not None:
                seen.append(got.status)
        return got, await a.fetch(got, req), handle

    return harness.closing(a, go())


def failure(a: Flux, req: Request) -> ServiceError:
    return harness.raised(lambda: run(a, req), KEY)


CAST = (("CHEN", CHARACTER, T(character="CHEN", outfit="winter")),
        ("STEPPE", LOCATION, T(location="STEPPE", time="DUSK")),
        ("REF", REFERENCE, T(character="CHEN")))


# -- images -------------------------------------------------------------------------------


def test_a_keyframe_with_references_polls_the_returned_url_and_downloads_at_once(
        state: FluxState, api: str, tmp_path: Path) -> None:
    """FLUX.2: the references inline as input_image, input_image_2…, described in order;
    the film's frame in multiples of 32; the take's seed; the handle keeps the polling_url
    BFL answered and every poll asks it; the image is the one BFL made."""
    refs = [picture(tmp_path, n, role, tags) for n, role, tags in CAST]
    seen: list[str] = []
    done, files, handle = run(adapter(api, tmp_path), keyframe(tmp_path, *refs, take=2),
                              seen=seen)
    [body] = state.created
    assert [k for k in body if k.startswith("input_image")] == [
        "input_image", "input_image_2", "input_image_3"]
    assert state.received_images == [r.digest for r in refs]
    assert body["prompt"] == ("Image 1 shows CHEN (winter outfit). Image 2 shows the location "
                              "STEPPE (DUSK). Image 3 is a reference image of CHEN.\n"
                              "Chen raises a pair of old army binoculars.")
    assert (body["width"], body["height"], body["seed"]) == (1920, 800, 8)
    assert seen == ["pending"]
    assert handle.data["polling_url"].endswith(f"/v1/get_result?id={handle.id}&cluster=loop1")
    assert state.poll_queries == [f"id={handle.id}&cluster=loop1"] * 2
    image = files["image"]
    assert hashlib.sha256(image.read_bytes()).hexdigest() in state.made
    with Image.open(image) as img:
        assert (img.format, img.size) == ("PNG", (1920, 800))
    assert state.downloads == 1


def test_kontext_takes_an_aspect_ratio_and_at_most_four_images(state: FluxState, api: str,
                                                                tmp_path: Path) -> None:
    refs = [picture(tmp_path, f"c{i}", CHARACTER, T(character=f"C{i}")) for i in range(5)]
    _, files, _ = run(adapter(api, tmp_path, model="flux-kontext-pro", output_format="jpeg",
                              safety_tolerance=4), keyframe(tmp_path, *refs))
    [body] = state.created
    assert body["aspect_ratio"] == "21:9" and "width" not in body
    assert len(state.received_images) == 4 and "input_image_5" not in body
    assert (body["output_format"], body["safety_tolerance"]) == ("jpeg", 4)
    assert files["image"].suffix == ".jpg"


def test_frame_sizes_fit_each_family() -> None:
    flux2 = Family(8, True)
    assert frame_size(1920, 804, flux2) == (1920, 800)
    assert frame_size(192, 80, flux2) == (192, 96)
    assert frame_size(4000, 3000, flux2) == (2048, 1536)  # at most 2048 a side, 4 MP
    assert frame_size(1920, 1080, Family(0, True, (256, 1440), 2.0736, 32)) == (1440, 800)


# -- FLUX's own faults --------------------------------------------------------------------


@pytest.mark.parametrize("status,words", [
    ("Content Moderated", ["its moderation withheld it", "raise `safety_tolerance`"]),
    ("Request Moderated", ["refused the request before making it", "nothing was charged"]),
    ("Error", ["(Error (", "`filmc build` tries again"]),
])
def test_moderation_arrives_as_a_status(state: FluxState, api: str, tmp_path: Path,
                                        status: str, words: list[str]) -> None:
    """Moderation is a status of the task, not an HTTP error: POLICY, never retried, with
    BFL's reasons; one task started, nothing downloaded."""
    {"Content Moderated": state.moderate_output, "Request Moderated": state.moderate_request,
     "Error": state.error}[status].append("binoculars")
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    kind = FailureKind.FAILED if status == "Error" else FailureKind.POLICY
    assert e.kind is kind and not e.retryable
    assert all(w in e.message for w in words), e.message
    assert len(state.created) == 1 and state.downloads == 0


@pytest.mark.parametrize("how", ["status", "404"])
def test_an_expired_polling_url_is_not_found(state: FluxState, api: str, tmp_path: Path,
                                             how: str) -> None:
    """A task BFL no longer keeps (`Task not found`, or a 404 after a restart): NOT_FOUND,
    which the engine reports as lost and the next build submits anew."""
    state.not_found = how
    a = adapter(api, tmp_path)

    async def go() -> ServiceError:
        try:
            handle = await a.submit(keyframe(tmp_path), None)
            assert isinstance(handle, Handle)
            state.forget()
            with pytest.raises(ServiceError) as info:
                await a.poll(handle)
            return info.value
        finally:
            await a.close()

    e = asyncio.run(go())
    assert e.kind is FailureKind.NOT_FOUND and "Task not found" in e.message


def test_an_expired_sample_url_is_expired(state: FluxState, api: str, tmp_path: Path) -> None:
    """The result's URL lives 10 minutes: past that the download is EXPIRED, said so."""
    state.sample_ttl = -1
    e = failure(adapter(api, tmp_path), keyframe(tmp_path))
    assert e.kind is FailureKind.EXPIRED and e.status == 403
    assert "FLUX keeps a result for 10 minutes" in e.message
    assert len(state.created) == 1 and state.downloads == 1


@pytest.mark.parametrize("fault,kind,unbilled,said", [
    (("status", 402, None, "Insufficient credits"), FailureKind.CREDIT, False,
     "out of credits: add credits"),
    (("active",), FailureKind.RATE_LIMITED, True, "too many tasks are running"),
    (("key",), FailureKind.AUTH, False, "`api_key_env` holds a current BFL key"),
    (("tolerance",), FailureKind.INVALID, False, "`safety_tolerance`: Input should be between"),
    (("status", 503, None, None), FailureKind.TRANSIENT, True, "answered 503"),
    (("status", 504, None, None), FailureKind.TRANSIENT, False, "answered 504"),
])
def test_refused_submits(state: FluxState, api: str, tmp_path: Path, fault: tuple[Any, ...],
                         kind: FailureKind, unbilled: bool, said: str) -> None:
    """402 stops the backend; 429 (too many active tasks) and 5xx other than 504 provably
    started nothing and may be sent again; nothing else is."""
    settings: dict[str, Any] = {}
    if fault[0] == "active":
        state.max_active = 0
    elif fault[0] == "key":
        state.key = "another"
    elif fault[0] == "tolerance":
        settings["safety_tolerance"] = 9
    else:
        state.faults.append(fault)
    e = failure(adapter(api, tmp_path, **settings), keyframe(tmp_path))
    assert (e.kind, e.unbilled) == (kind, unbilled) and said in e.message, e.message
    assert state.created == []


def test_the_key_goes_to_bfl_hosts_only(tmp_path: Path) -> None:
    a = adapter("https://api.eu.bfl.ai", tmp_path)
    assert a._trusted("https://api.us1.bfl.ai/v1/get_result?id=x")
    assert a._trusted("https://api.eu.bfl.ai/v1/get_result?id=x")
    assert not a._trusted("https://delivery.example.net/v1/get_result?id=x")
    assert not a._trusted("https://bfl.ai.example.net/x")


# -- what the class declares --------------------------------------------------------------


def test_capabilities_keys_and_settings(tmp_path: Path) -> None:
    assert adapter_class("flux") is Flux
    caps = Flux.capabilities("keyframe", {}, tmp_path)
    assert (caps.seed, caps.negative, caps.references, caps.sizes) == (True, False, 8, None)
    kontext = Flux.capabilities("plate", {"model": "flux-kontext-max"}, tmp_path)
    assert kontext.references == 4 and "21:9" in kontext.aspect_ratios
    assert Flux.capabilities("sheet", {"model": "flux-pro-1.1"}, tmp_path).references == 0
    assert Flux.capabilities("keyframe", {"max_references": 2}, tmp_path).references == 2
    assert Flux.capabilities("clip", {}, tmp_path) is None
    assert Flux.key_fields("keyframe", {"size": "1024x768"}) == {"prompt", "seed", "take"}
    assert Flux.key_settings("keyframe", {"model": "flux-2-pro", "region": "eu",
                                          "safety_tolerance": 2}) == {
        "model": "flux-2-pro", "safety_tolerance": 2}
    assert Flux.key_extra("keyframe", {}) == {"model": "flux-2-pro"}
    assert Flux(Setup("flux", {"region": "eu"}, tmp_path, lambda _: KEY, Uploads())
                ).base_url == "https://api.eu.bfl.ai"
    problems = {p.setting: p for p in Flux.check_settings(
        {"model": "Flux 2", "region": "mars", "size": "1000x700", "safety_tolerance": 7,
         "output_format": "webp", "max_referencs": 2})}
    assert set(problems) == {"model", "region", "size", "safety_tolerance", "output_format",
                             "max_referencs"}
    assert problems["max_referencs"].help == "did you mean `max_references`?"
    assert Flux.check_settings({"model": "flux-3-ultra"})[0].warning


# -- `filmc build`, killed mid-poll ----------------------------------------------------------

FILM = harness.film("Svc", harness.walks("2s"),
                    harness.shot("a2", "2s", "close_up low_angle dolly_in", "Ana looks out to sea.",
                                 cast="ANA"),
                    ana=harness.REF_ANA, pier=("at DAWN {", f"  {harness.REF_PIER[0]}", "}"))
FAST = harness.fast(3)
KEYFRAMES = ("keyframe.one.a1.flux-1", "keyframe.one.a2.flux-1")
ONLY = ("--select", "kind:keyframe")  # and what they need: not the storyboard


def svc_project(folder: Path, steps: dict[str, str], **backends: dict[str, Any]) -> Path:
    """The two-shot film, its cast's and location's images (nothing for this machine to draw
    before the services' steps), and a filmc.toml with `steps` and a table per backend."""
    config = harness.toml({"steps": steps, **{f"backends.{name}": {**FAST, **t}
                                              for name, t in backends.items()}})
    return harness.project(folder, "svc", FILM, config,
                           refs={"ana.png": harness.png((64, 96), noise="ana"),
                                 "pier.png": harness.png((192, 80), noise="pier")})


def kill_mid_poll(folder: Path, keys: dict[str, str], args: tuple[str, ...], jobs: int,
                  polled: Any) -> None:
    """`filmc build ARGS` killed with `kill -9` once `jobs` paid jobs are journaled and
    `polled()`."""
    with harness.killed(folder, "--use-first", *args, "svc.film", keys=keys) as build:
        build.wait_for(lambda: accepted(folder) == jobs and polled(),
                       f"{jobs} jobs journaled and polled")


def test_kill_9_mid_poll_then_the_next_build_attaches_or_says_the_task_is_gone(
        tmp_path: Path, state: FluxState, api: str) -> None:
    """Two keyframes at FLUX, the build killed while both are polled.  BFL still has a1's
    task: the next build polls its journaled `polling_url` (attached) and pays nothing again.
    a2's `polling_url` has expired (`Task not found`): that step fails saying so, and the
    build after submits it anew, as the user chooses.  The key is in no file."""
    folder = svc_project(tmp_path / "svc", {"keyframe": "flux"}, flux={
        "type": "flux", "api_key_env": "BFL_API_KEY", "base_url": api, "model": "flux-2-pro",
        "prices": {"keyframe": 0.03}})
    env = {"BFL_API_KEY": KEY}
    state.hold = True
    kill_mid_poll(folder, env, ONLY, jobs=2, polled=lambda: state.polls >= 4)
    assert len(state.created) == 2
    [gone] = [t for t, task in state.tasks.items() if "looks out to sea" in task.body["prompt"]]
    del state.tasks[gone]
    state.hold = False

    again = harness.filmc(folder, "build", "--use-first", *ONLY, "svc.film", keys=env, code=1)
    made = harness.report(folder, "svc")
    assert made[KEYFRAMES[0]]["status"] == "ran" and made[KEYFRAMES[0]]["attached"]
    assert made[KEYFRAMES[0]]["outputs"][0] in state.made
    error = made[KEYFRAMES[1]]["error"]
    assert f"`flux` no longer knows job {gone}" in error and "submits it anew" in error
    assert len(state.created) == 2  # nothing submitted again

    last = harness.filmc(folder, "build", "--use-first", *ONLY, "svc.film", keys=env)
    made = harness.report(folder, "svc")
    assert made[KEYFRAMES[1]]["status"] == "ran" and not made[KEYFRAMES[1]]["attached"]
    assert len(state.created) == 3 and state.auth_failures == 0
    harness.no_key_in(folder, [KEY], [again, last])
