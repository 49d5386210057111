"""The review page: the static one a build writes, the one `filmc review` serves, and a
real browser clicking a candidate until film.lock names it.

A tiny film built offline: shot `a1` has three keyframe candidates and two clip
takes, `c1` two candidates and Chinese dialogue.  The server runs as a user runs it
(`filmc review --port 0`, a subprocess) and is spoken to over real HTTP on loopback;
the browser test drives a headless Chromium over the DevTools protocol and is
skipped, saying why, where no Chromium is installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import html.parser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FILM = """\
use std.camera

film "Tiny" {
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
  shot a1 1s {
    camera wide
    cast ANA
    candidates 3
    takes 2
    action "Ana walks along the pier."
  }
  shot a2 1.5s {
    camera close_up
    cast ANA
    ANA: "There you are."
  }
}

scene three "风筝" EXT PIER DUSK {
  shot c1 1s {
    cast ANA
    candidates 2
    action "She waits."
    ANA: "明天再来。"
  }
}
"""
CANDIDATES = {"a1": (["local-1", "local-2", "local-3"], ["take1", "take2"]),
              "a2": (["local-1"], ["take1"]),
              "c1": (["local-1", "local-2"], ["take1"])}


@pytest.fixture(autouse=True)
def _no_user_state(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FILMC_"):
            monkeypatch.delenv(name)


def filmc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("tiny")
    (project / "tiny.film").write_text(FILM, encoding="utf-8")
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    return project


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "p"
    shutil.copytree(built, dest, symlinks=True)
    (dest / ".filmc" / "noop.json").unlink(missing_ok=True)  # it names the other folder
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Cards(html.parser.HTMLParser):
    """What a page shows: shot → {"keyframe": [names], "clip": [names], "picked": [...]},
    and every media link (src, poster)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.shots: dict[str, dict[str, list[str]]] = {}
        self.links: list[str] = []
        self.commands: list[str] = []
        self._shot: str | None = None
        self._kind: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "article" and "shot" in classes:
            self._shot = a["data-shot"]
            self.shots[self._shot] = {"keyframe": [], "clip": [], "picked": []}
        elif tag == "div" and "row" in classes:
            self._kind = a["data-kind"]
        elif tag == "figure" and self._shot and self._kind:
            self.shots[self._shot][self._kind].append(a["data-name"] or "")
            if "picked" in classes:
                self.shots[self._shot]["picked"].append(f"{self._kind}:{a['data-name']}")
        for key in ("src", "poster"):
            if tag in ("img", "video") and a.get(key):
                self.links.append(a[key] or "")
        if a.get("data-cmd"):
            self.commands.append(a["data-cmd"] or "")


def shown(cards: Cards) -> dict[str, tuple[list[str], list[str]]]:
    return {s: (c["keyframe"], c["clip"]) for s, c in cards.shots.items()}


# --- the static page --------------------------------------------------------------------------


def test_a_build_writes_the_static_page_with_every_shot_and_candidate(built: Path) -> None:
    folder = built / "build" / "tiny" / "review"
    page = (folder / "index.html").read_text(encoding="utf-8")
    cards = Cards(page)
    assert shown(cards) == {k: (list(v[0]), list(v[1])) for k, v in CANDIDATES.items()}
    # every candidate and take is linked, relatively, to a file the build laid out
    assert len(cards.links) == 6 + 4 + 4  # keyframes, clips, and the clips' posters
    for link in cards.links:
        assert link.startswith("../keyframes/") or link.startswith("../clips/"), link
        assert (folder / link).resolve().is_file(), link
    # a click shows the command that picks
    assert "filmc pick tiny.film a1 local-2" in cards.commands
    assert "filmc pick tiny.film a1 --clip take2" in cards.commands
    assert '<meta charset="utf-8">' in page and '<q lang="zh">明天再来。</q>' in page
    assert (folder / "FilmcPanelSans-Regular.otf").is_file()
    # the filters, as pages of their own
    assert set(Cards((folder / "unpicked.html").read_text(encoding="utf-8")).shots) \
        == {"a1", "c1"}
    assert Cards((folder / "stale.html").read_text(encoding="utf-8")).shots == {}


def test_a_pick_leaves_the_other_candidates_on_the_page_and_on_disk(project: Path) -> None:
    r = filmc("pick", "tiny.film", "a1", "local-2", cwd=project)
    assert r.returncode == 0, r.stderr
    r = filmc("build", "--offline", "tiny.film", cwd=project)
    assert r.returncode == 0, r.stderr
    out = project / "build" / "tiny"
    # the build made nothing of local-1 and local-3 now, yet the page still shows them
    for name in CANDIDATES["a1"][0]:
        assert (out / "keyframes" / f"a1.{name}.png").is_file()
    cards = Cards((out / "review" / "index.html").read_text(encoding="utf-8"))
    assert cards.shots["a1"]["keyframe"] == CANDIDATES["a1"][0]
    assert cards.shots["a1"]["picked"] == ["keyframe:local-2"]
    for link in cards.links:
        assert (out / "review" / link).resolve().is_file(), link
    # the clips are made from the pick now: their poster is local-2
    assert re.search(r'poster="\.\./keyframes/a1\.local-2\.png"',
                     (out / "review" / "index.html").read_text(encoding="utf-8"))


def test_your_own_takes_are_candidates_with_their_origin(project: Path) -> None:
    from filmc.compiler.pipeline import compile_film
    from filmc.engine.review import contact_sheet, media
    from filmc.engine.store import Store

    out = project / "build" / "tiny"
    shutil.copy(out / "keyframes" / "a1.local-2.png", project / "fixed.png")
    shutil.copy(out / "clips" / "c1.take1.mp4", project / "mine.mp4")
    for args in (("a1", "fixed.png", "--from", "local-2"), ("c1", "mine.mp4")):
        r = filmc("take", "add", "tiny.film", *args, cwd=project)
        assert r.returncode == 0, r.stderr
    program = compile_film(project / "tiny.film", offline=True).program()
    with Store.open(project / ".filmc") as store:
        cards = {c.shot: c for c in contact_sheet(program, store)}
        laid_out = dict(media(program, store))
    retouched = cards["a1"].keyframes[-1]
    assert (retouched.name, retouched.origin, retouched.seed) == \
        ("retouch-1", "retouched from local-2", None)
    assert retouched.digest == sha256(project / "fixed.png") and retouched.ext == ".png"
    imported = cards["c1"].clips[-1]
    assert (imported.name, imported.origin, imported.file) == \
        ("import-1", "imported", "clips/c1.import-1.mp4")
    assert laid_out["keyframes/a1.retouch-1.png"] == retouched.digest
    assert laid_out["clips/c1.import-1.mp4"] == imported.digest
    # the others are as the build left them: each with its backend, seed and output
    first = cards["a1"].keyframes[0]
    assert (first.name, first.origin, first.seed, first.used, first.picked) == \
        ("local-1", "local", 1, True, False)
    assert first.digest == sha256(out / "keyframes" / "a1.local-1.png")
    assert cards["a1"].keyframe.status == "unpicked" and cards["a2"].clip.status == "single"


def test_a_long_film_is_paged_with_a_scene_index(project: Path) -> None:
    from filmc.compiler.pipeline import compile_film
    from filmc.engine.review import contact_sheet, paginate, render, static_link

    program = compile_film(project / "tiny.film", offline=True).program()
    cards = contact_sheet(program, None) * 150  # 450 shots
    pages = paginate(cards, "all")
    assert [p.number for p in pages] == [1, 2, 3, 4, 5] and pages[0].pages == 5
    assert sum(len(cs) for p in pages for _f, cs in p.groups) == 450
    text = render(program, pages[1], served=False, link=static_link,
                  media_url=lambda c: c.file)
    assert 'href="index.html" rel="prev"' in text and 'href="page-3.html" rel="next"' in text
    assert 'href="index.html#scene-one"' in text  # the scene index: where each scene starts
    assert text.count("<article") == 100


# --- the served page ----------------------------------------------------------------------------


class Served:
    def __init__(self, project: Path) -> None:
        self.project = project
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "filmc", "review", "--port", "0", "--offline", "tiny.film"],
            cwd=project, env={**os.environ, "NO_COLOR": "1"}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            # Ctrl-C as at a terminal, even when the tests run as a background job (whose
            # SIGINT the shell ignores, and a child inherits that).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(30)
        assert line and line[0].startswith("serving http://127.0.0.1:"), \
            (line, self.proc.poll())
        assert line[0].rstrip().endswith("/ (Ctrl-C to stop)")
        self.url = line[0].split()[1]

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.url.rstrip("/") + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def post(self, data: Any, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        req = urllib.request.Request(self.url + "api/pick", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        _out, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        assert "Traceback" not in err, err
        return err


@pytest.fixture
def server(project: Path) -> Iterator[Served]:
    s = Served(project)
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.stop()


def lock_of(project: Path) -> str:
    path = project / "tiny.lock"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_the_served_page_lists_shots_and_filters_them(server: Served) -> None:
    status, headers, body = server.get("/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    cards = Cards(body.decode("utf-8"))
    assert shown(cards) == {k: (list(v[0]), list(v[1])) for k, v in CANDIDATES.items()}
    assert all(re.fullmatch(r"/media/[0-9a-f]{64}\.(png|mp4)", link) for link in cards.links)
    assert "明天再来。" in body.decode("utf-8")
    assert set(Cards(server.get("/?filter=unpicked")[2].decode()).shots) == {"a1", "c1"}
    assert Cards(server.get("/?filter=stale")[2].decode()).shots == {}
    assert server.get("/?filter=nonsense")[0] == 400
    assert server.get("/font.otf")[0] == 200
    assert server.get("/nowhere")[0] == 404
    # another host name (DNS rebinding) gets nothing
    assert server.get("/", {"Host": "evil.example:80"})[0] == 403


def test_media_is_served_with_ranges(server: Served) -> None:
    cards = Cards(server.get("/")[2].decode())
    link = next(x for x in cards.links if x.endswith(".mp4"))
    digest = link.split("/")[-1].split(".")[0]
    obj = server.project / ".filmc" / "objects" / digest[:2] / digest
    data = obj.read_bytes()
    status, headers, body = server.get(link)
    assert status == 200 and body == data and headers["Content-Type"] == "video/mp4"
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = server.get(link, {"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert server.get(link, {"Range": "bytes=-10"})[2] == data[-10:]
    assert server.get(link, {"Range": f"bytes={len(data) - 5}-"})[2] == data[-5:]
    status, headers, _ = server.get(link, {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
    png = next(x for x in cards.links if x.endswith(".png"))
    assert server.get(png)[1]["Content-Type"] == "image/png"
    assert server.get("/media/" + "0" * 64 + ".png")[0] == 404  # not a candidate


def test_a_posted_pick_writes_the_lock(server: Served) -> None:
    project = server.project
    status, answer = server.post({"shot": "a1", "kind": "keyframe", "name": "local-3"})
    assert status == 200, answer
    assert answer["keyframe"] == {"status": "picked", "used": "local-3", "why": "",
                                  "pick": "local-3"}
    digest = sha256(project / "build" / "tiny" / "keyframes" / "a1.local-3.png")
    assert 'keyframe = { pick = "local-3", key = ' in lock_of(project)
    assert digest in lock_of(project)
    assert Cards(answer["cards"]["a1"]).shots["a1"]["picked"] == ["keyframe:local-3"]
    # the takes of local-3 are not built: the pick is refused with what to do
    status, answer = server.post({"shot": "a1", "kind": "clip", "name": "take2"})
    assert status == 400 and "not built" in answer["error"] and answer["hint"]
    # back to the keyframe the takes were made from: now take2 can be picked
    assert server.post({"shot": "a1", "kind": "keyframe", "name": "local-1"})[0] == 200
    status, answer = server.post({"shot": "a1", "kind": "clip", "name": "take2"})
    assert status == 200, answer
    assert 'clip = { pick = "take2"' in lock_of(project)
    assert answer["counts"] == {"all": 3, "unpicked": 1, "stale": 0}
    # the page says so after a reload too
    assert Cards(server.get("/")[2].decode()).shots["a1"]["picked"] == \
        ["keyframe:local-1", "clip:take2"]


def test_bad_picks_get_a_reason_not_a_traceback(server: Served) -> None:
    status, answer = server.post({"shot": "a9", "kind": "keyframe", "name": "local-1"})
    assert status == 400 and answer["error"] == "no shot `a9` in the film"
    assert "a1" in answer["hint"]
    assert server.post({"shot": "a1", "kind": "poster", "name": "x"})[0] == 400
    assert server.post(b"{not json")[0] == 400
    assert server.post({"shot": "a1"})[0] == 400
    assert server.post({"shot": "a1", "kind": "keyframe", "name": "local-2"},
                       {"Content-Type": "text/plain"})[0] == 415
    assert server.post({"shot": "a1", "kind": "keyframe", "name": "local-2"},
                       {"Origin": "http://evil.example"})[0] == 403
    assert lock_of(server.project) == ""
    assert "Traceback" not in server.stop()


def test_an_edit_behind_the_servers_back_shows_as_stale(server: Served) -> None:
    assert server.post({"shot": "c1", "kind": "keyframe", "name": "local-2"})[0] == 200
    film = server.project / "tiny.film"
    film.write_text(film.read_text(encoding="utf-8").replace("She waits.", "She leaves."),
                    encoding="utf-8")
    page = server.get("/?filter=stale")[2].decode("utf-8")
    assert set(Cards(page).shots) == {"c1"}
    assert "`local-2` changed since it was picked" in page


def test_a_broken_film_or_a_busy_port_is_an_error_not_a_traceback(project: Path) -> None:
    (project / "broken.film").write_text(FILM.replace("cast ANA\n", "cast ANNA\n", 1),
                                         encoding="utf-8")
    r = filmc("review", "--port", "0", "broken.film", cwd=project)
    assert r.returncode == 1 and "error[" in r.stderr and "ANNA" in r.stderr
    assert "Traceback" not in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = filmc("review", "--port", str(busy.getsockname()[1]), "tiny.film", cwd=project)
    assert r.returncode == 1 and "cannot listen on 127.0.0.1:" in r.stderr
    assert "Traceback" not in r.stderr


# --- a real browser -----------------------------------------------------------------------------


def chromium() -> str | None:
    for name in (os.environ.get("CHROME"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class DevTools:
    """A page of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.n = ws, 0
        self.errors: list[str] = []

    async def call(self, method: str, **params: Any) -> dict:
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=30)
            if msg.get("method") == "Runtime.exceptionThrown":
                self.errors.append(json.dumps(msg["params"]["exceptionDetails"])[:500])
            if msg.get("id") == self.n:
                assert "error" not in msg, msg
                return msg["result"]

    async def eval(self, expression: str) -> Any:
        found = await self.call("Runtime.evaluate", expression=expression,
                                returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in found, found
        return found["result"].get("value")

    async def until(self, expression: str, seconds: float = 10) -> Any:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            value = await self.eval(expression)
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"never true: {expression}")

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.until("document.readyState === 'complete' && !!document.querySelector("
                         "'article.shot')")

    async def click(self, selector: str) -> None:
        """Click the element as a person does: the mouse, pressed and released on it."""
        box = await self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            f" if (!e) return null; e.scrollIntoView({{block: 'center'}});"
            f" const r = e.getBoundingClientRect();"
            f" return [r.left + r.width / 2, r.top + r.height / 2]; }})()")
        assert box, f"no {selector} on the page"
        x, y = box
        await self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                            clickCount=1)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[int]:
    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium or Chrome found (chromium, chromium-browser, google-chrome, "
                    "or $CHROME): the review page's click is not tested in a browser")
    profile = tmp_path / "chromium"
    profile.mkdir()
    args = [binary, "--headless=new", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-dev-shm-usage", "--disable-extensions",
            "--mute-audio", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            "--window-size=1280,900", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            assert proc.poll() is None, "Chromium exited at start"
            assert time.monotonic() < end, "Chromium did not open its DevTools port"
            time.sleep(0.05)
        yield int(port_file.read_text().split()[0])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_clicking_a_candidate_in_a_real_browser_picks_it(server: Served, browser: int) -> None:
    import aiohttp

    project = server.project
    static = (project / "build" / "tiny" / "review" / "index.html").as_uri()

    async def drive() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{browser}/json/list") as r:
                targets = await r.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tab = DevTools(ws)
                await tab.call("Page.enable")
                await tab.call("Runtime.enable")
                await tab.open(server.url)
                # the page is the film: every shot, the Chinese line in a face that draws it
                assert await tab.eval("document.querySelectorAll('article.shot').length") == 3
                assert await tab.eval("document.fonts.load('14px FilmcPanelSans', '明天')"
                                      ".then(f => f.length)") == 1
                await tab.click('#shot-a1 figure[data-name="local-2"] button.thumb')
                end = time.monotonic() + 15
                while 'pick = "local-2"' not in lock_of(project):
                    assert time.monotonic() < end, f"film.lock never changed:\n{lock_of(project)}"
                    await asyncio.sleep(0.05)
                # the marks move without a reload
                await tab.until("document.querySelector('#shot-a1 figure.picked')"
                                "?.dataset.name === 'local-2'")
                assert await tab.eval("document.querySelector('#bar').textContent"
                                      ".includes('a1: keyframe local-2 picked')")
                # a refused pick says why, in the page
                await tab.click('#shot-a1 .row[data-kind="clip"] figure[data-name="take2"] '
                                'button.pick')
                await tab.until("document.querySelector('#bar.error')?.textContent"
                                ".includes('not built')")
                # the static page cannot write the lock: a click shows the command
                await tab.open(static)
                await tab.click('#shot-a1 figure[data-name="local-3"] button.thumb')
                assert await tab.until("document.getElementById('command')?.value") \
                    == "filmc pick tiny.film a1 local-3"
                assert tab.errors == []

    asyncio.run(drive())
    assert 'pick = "local-3"' not in lock_of(project)
    entry = lock_of(project).split("[a1]")[1]
    digest = sha256(project / "build" / "tiny" / "keyframes" / "a1.local-2.png")
    assert 'pick = "local-2"' in entry and digest in entry
