"""What the service adapters' tests share: an adapter driven as the engine drives it, and
`filmc` run as a user runs it, with canary keys that must appear in no message, on no
output and in no file.

In process, against a loopback server (tests/loopback):

    done, files, polls = closing(a, drive(a, req))   # submit → poll → fetch; then close
    e = raised(lambda: closing(a, drive(a, req)), KEY) # the ServiceError; it never says KEY

Through the command line, in a tiny project:

    text = film("Tiny", walks("1s"), shot("b1", "2s", "medium eye_level static", "Ana waves."),
                ana=REF_ANA)
    folder = project(tmp_path / "tiny", "tiny", text, toml({"steps": {"clip": "kling"}, ...}))
    r = filmc(folder, "build", "tiny.film", keys={"KLING_ACCESS_KEY": ACCESS}, code=0)
    report(folder, "tiny")["clip.one.a1.take1"]["status"]
    with killed(folder, "--until", "clip", "tiny.film", keys=KEYS) as build:
        build.wait_for(lambda: accepted(folder) == 1, "the clip journaled")
    no_key_in(folder, KEYS.values(), said=[r])

`killed` runs `filmc build` in its own session and kills it with `kill -9` when the
block ends; no process of it may survive (test_build.marked).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_build import marked, wait_gone
from test_services import toml_value
from test_services_faults import wait_for

from filmc.backends.protocol import Done, Handle, Input, Json, Pending, Request, ServiceError
from filmc.lang.steps import KINDS, Fields, StepId, Tags

# -- the adapter in process ------------------------------------------------------------------


class Uploads:
    """The engine's upload cache, in a dict."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], Json] = {}

    def get(self, scope: str, digest: str) -> Json | None:
        return self.values.get((scope, digest))

    def put(self, scope: str, digest: str, value: Json) -> None:
        self.values[(scope, digest)] = value


def image(path: Path, role: str, step: str, tags: Tags | None = None) -> Input:
    """The image at `path` as an input of a request, playing `role`, made by `step`."""
    return Input(role=role, path=path, digest=hashlib.sha256(path.read_bytes()).hexdigest(),
                 media="image", step=step, tags=tags or Tags())


def request(step: StepId, backend: str, workdir: Path, inputs: Sequence[Input] = (),
            key: str = "0" * 64, **fields: Any) -> Request:
    """A request for `step` with `fields`, its work folder made."""
    workdir.mkdir(parents=True, exist_ok=True)
    return Request(step=step, key=key, backend=backend, fields=Fields(**fields), params={},
                   inputs=tuple(inputs), outputs=KINDS[step.kind].outputs, workdir=workdir)


async def drive(a: Any, req: Request, pause: float = 0.0, journal: bool = False
                ) -> tuple[Done, Mapping[str, Any], list[Pending | Done]]:
    """One step as the engine drives it: submit, poll the handle (through JSON, as the
    journal keeps it, with `journal`) until it is done, fetch.  The Done, the files, and
    what each poll said."""
    got = await a.submit(req, a.prepare(req))
    polls: list[Pending | Done] = []
    while isinstance(got, Handle):
        handle = Handle(**json.loads(json.dumps({"id": got.id, "data": dict(got.data)}))) \
            if journal else got
        polls.append(await a.poll(handle))
        if isinstance(polls[-1], Pending):
            await asyncio.sleep(pause)
        else:
            got = polls[-1]
    return got, await a.fetch(got, req), polls


def statuses(polls: Iterable[Pending | Done]) -> list[str]:
    """What each poll said: the service's word while it ran, then `done`."""
    return [p.status if isinstance(p, Pending) else "done" for p in polls]


def closing(a: Any, job: Coroutine[Any, Any, Any]) -> Any:
    """`job` to its end, then the adapter closed (as a build ends)."""
    async def go() -> Any:
        try:
            return await job
        finally:
            await a.close()

    return asyncio.run(go())


def raised(attempt: Callable[[], Any], *keys: str) -> ServiceError:
    """The ServiceError `attempt()` raises; neither its message nor its arguments carry any
    of `keys`."""
    with pytest.raises(ServiceError) as info:
        attempt()
    e = info.value
    for key in keys:
        assert key not in str(e) and key not in repr(e.args)
    return e


# -- tiny projects ---------------------------------------------------------------------------

REF_ANA = ('ref "refs/ana.png"',)
REF_PIER = ('ref "refs/pier.png"',)


def film(title: str, *shots: str, uses: Sequence[str] = ("camera", "light"),
         settings: Sequence[str] = ("takes 1",), ana: Sequence[str] = (),
         pier: Sequence[str] = ()) -> str:
    """A film at 192x80 and 24 fps: ANA on the PIER one morning, in `shots` (`shot`).
    `settings` are more lines of its `film` block; `ana` and `pier` more lines of theirs."""
    lines = [*(f"use std.{u}" for u in uses), "", f'film "{title}" {{', "  aspect 2.4:1",
             "  size 192x80", "  fps 24", *(f"  {s}" for s in settings), "}", "",
             'character ANA "Ana" {', '  look "a tall woman in a red coat"',
             *(f"  {a}" for a in ana), "}", "", 'location PIER "Pier" {',
             '  look "a wooden pier over grey water"', *(f"  {p}" for p in pier), "}", "",
             'scene one "Morning" EXT PIER DAWN {', *shots, "}"]
    return "\n".join(lines) + "\n"


def shot(name: str, length: str, camera: str, action: str, cast: str | None = None) -> str:
    """A shot of scene one, as `film` takes it."""
    return "\n".join([f"  shot {name} {length} {{", f"    camera {camera}",
                      *([f"    cast {cast}"] if cast else []), f'    action "{action}"', "  }"])


def walks(length: str) -> str:
    """The shot every tiny film opens with: a1, Ana walks along the pier."""
    return shot("a1", length, "wide eye_level static", "Ana walks along the pier.", cast="ANA")


def png(size: tuple[int, int], colour: tuple[int, int, int] | None = None,
        noise: str = "") -> bytes:
    """A PNG of `size`: one colour, or noise made from `noise` (no two alike)."""
    if colour is None:
        img = Image.frombytes("RGB", size, hashlib.shake_256(noise.encode()).digest(
            size[0] * size[1] * 3))
    else:
        img = Image.new("RGB", size, colour)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def project(folder: Path, name: str, text: str, config: str,
            refs: Mapping[str, bytes] | None = None) -> Path:
    """A project: `name`.film, filmc.toml, and the images of refs/."""
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.film").write_text(text, encoding="utf-8")
    (folder / "filmc.toml").write_text(config, encoding="utf-8")
    for file, body in (refs or {}).items():
        (folder / "refs" / file).write_bytes(body)
    return folder


def toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """filmc.toml from tables of plain values (strings, numbers, lists, inline tables)."""
    return "\n".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in t.items())
                     for name, t in tables.items())


def fast(retries: int, backoff_cap_s: float = 0.2, timeout_s: float = 30) -> dict[str, Any]:
    """A backend's engine settings for a test: retried at once, polled often."""
    return {"retries": retries, "backoff_s": 0.05, "backoff_cap_s": backoff_cap_s,
            "poll_interval_s": 0.05, "timeout_s": timeout_s}


# -- the command line ------------------------------------------------------------------------


def environment(keys: Mapping[str, str], mark: str | None = None) -> dict[str, str]:
    """The user's environment with the test's keys (by variable) instead of any of theirs;
    `mark` tags every process of the build (test_build.marked)."""
    env = {k: v for k, v in os.environ.items() if k not in keys and not k.endswith("_API_KEY")}
    env.update(NO_COLOR="1", **keys)
    if mark is not None:
        env["FILMC_TEST_MARK"] = mark
    return env


def filmc(project: Path, *args: str, keys: Mapping[str, str], code: int | None = 0,
          timeout: float = 120) -> subprocess.CompletedProcess:
    """`filmc ARGS` in the project folder, as a user runs it: no traceback, the exit
    `code` (unless None), and none of the keys on its output."""
    r = subprocess.run([sys.executable, "-m", "filmc", *args], cwd=project,
                       env=environment(keys), capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    if code is not None:
        assert r.returncode == code, r.stderr
    assert not [k for k in keys.values() if k in r.stdout + r.stderr], "a key is on the output"
    return r


def report(project: Path, film: str) -> dict[str, dict]:
    """build/FILM/report.json's steps, by id."""
    doc = json.loads((project / "build" / film / "report.json").read_text())
    return {s["id"]: s for s in doc["steps"]}


class Build:
    """A `filmc build` running in the background."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def wait_for(self, condition: Callable[[], Any], what: str, seconds: float = 30) -> None:
        """Wait until `condition()` holds, while the build runs."""
        wait_for(lambda: condition() or self.proc.poll() is not None, seconds, what)
        assert condition(), f"the build ended before {what}"


@contextlib.contextmanager
def killed(project: Path, *args: str, keys: Mapping[str, str]) -> Iterator[Build]:
    """`filmc build ARGS` in its own session, killed with `kill -9` when the block ends;
    no process of it may survive."""
    mark = f"filmc-test-{uuid.uuid4()}"
    proc = subprocess.Popen([sys.executable, "-m", "filmc", "build", *args], cwd=project,
                            env=environment(keys, mark), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield Build(proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert wait_gone(mark), f"processes of the killed build are alive: {marked(mark)}"


def no_key_in(folder: Path, keys: Iterable[str],
              said: Iterable[subprocess.CompletedProcess] = ()) -> None:
    """None of `keys` is in a file of `folder`, nor on the output of the runs `said`."""
    secrets = [k.encode() for k in keys]
    for r in said:
        assert not [k for k in secrets if k.decode() in r.stdout + r.stderr]
    leaks = [p for p in folder.rglob("*")
             if p.is_file() and any(k in p.read_bytes() for k in secrets)]
    assert not leaks, f"a key is in {leaks}"
