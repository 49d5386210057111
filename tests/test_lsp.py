"""`filmc lsp` as an editor meets it: a real server process, spoken to over stdio.

Each test starts `filmc lsp` on a copy of the example film, speaks JSON-RPC to it
(initialize, didOpen, didChange, requests), applies the edits it answers with as an
editor would, and checks what a writer would look at: the error and where it is, the
fix, the names offered, the prompt and cost shown, the files a rename touches, and
that `filmc check` agrees afterwards.  `LspClient` is also what bench/bench_lsp.py
measures with.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_example

from filmc.lang.diagnostics import Diagnostics
from filmc.lang.fmt import format_text

HERE = Path(__file__).parent


class LspClient:
    """A minimal LSP client: Content-Length framing over a `filmc lsp` child's pipes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        env = {**os.environ, "NO_COLOR": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "filmc", "lsp", *args], cwd=cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.notes: list[tuple[float, dict]] = []
        self.responses: dict[int, dict] = {}
        self.stderr: queue.Queue[bytes] = queue.Queue()
        self.cv = threading.Condition()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.put(line)

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    with self.cv:
                        self.cv.notify_all()
                    return
                if not line.strip():
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert length is not None, "a message without Content-Length"
            body = json.loads(out.read(length))
            with self.cv:
                if "method" in body:
                    self.notes.append((time.perf_counter(), body))
                    if "id" in body:  # a request from the server (e.g. registration): accept
                        self._send({"jsonrpc": "2.0", "id": body["id"], "result": None})
                else:
                    self.responses[body["id"]] = body
                self.cv.notify_all()

    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode("utf-8")
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.proc.stdin.flush()

    def request(self, method: str, params: Any, timeout: float = 60) -> dict:
        """The whole response (`result` or `error`)."""
        self.next_id += 1
        rid = self.next_id
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        with self.cv:
            if not self.cv.wait_for(lambda: rid in self.responses or self.proc.poll() is not None,
                                    timeout):
                raise TimeoutError(f"no answer to {method} in {timeout} s")
            if rid not in self.responses:
                raise RuntimeError(f"the server died: {self.errors()}")
            return self.responses.pop(rid)

    def result(self, method: str, params: Any, timeout: float = 60) -> Any:
        answer = self.request(method, params, timeout)
        assert "error" not in answer, answer
        return answer["result"]

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def mark(self) -> int:
        with self.cv:
            return len(self.notes)

    def wait(self, accept: Callable[[dict], bool], since: int = 0, timeout: float = 60) -> dict:
        """The first notification from index `since` on that `accept` takes."""
        def found() -> dict | None:
            return next((n for _t, n in self.notes[since:] if accept(n)), None)
        with self.cv:
            if not self.cv.wait_for(lambda: found() is not None or self.proc.poll() is not None,
                                    timeout):
                raise TimeoutError("no such notification in time")
            hit = found()
            if hit is None:
                raise RuntimeError(f"the server died: {self.errors()}")
            return hit

    def diagnostics(self, uri: str, since: int = 0, timeout: float = 60) -> list[dict]:
        note = self.wait(lambda n: n["method"] == "textDocument/publishDiagnostics"
                         and n["params"]["uri"] == uri, since, timeout)
        return note["params"]["diagnostics"]

    def errors(self) -> str:
        out = b""
        while not self.stderr.empty():
            out += self.stderr.get()
        return out.decode("utf-8", "replace")

    # -- an editor's moves ---------------------------------------------------------------------

    def start(self, root: Path, **options: Any) -> dict:
        caps = self.result("initialize", {"processId": os.getpid(), "rootUri": root.as_uri(),
                                          "capabilities": {}, "initializationOptions": options})
        self.notify("initialized", {})
        self.versions: dict[str, int] = {}
        return caps

    def open(self, path: Path, text: str | None = None) -> list[dict]:
        """Open a file as the editor does and wait for its first diagnostics."""
        mark = self.mark()
        self.versions[path.as_uri()] = 1
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": path.as_uri(), "languageId": "film", "version": 1,
            "text": path.read_text(encoding="utf-8") if text is None else text}})
        return self.diagnostics(path.as_uri(), mark)

    def change(self, path: Path, text: str) -> list[dict]:
        """Replace the file's text (unsaved) and wait for the diagnostics that follow."""
        mark = self.mark()
        uri = path.as_uri()
        self.versions[uri] = self.versions.get(uri, 1) + 1
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri,
                                                                "version": self.versions[uri]},
                                               "contentChanges": [{"text": text}]})
        return self.diagnostics(uri, mark)

    def close(self) -> int:
        self.result("shutdown", None)
        self.notify("exit", None)
        return self.proc.wait(timeout=30)


def apply_edits(text: str, edits: list[dict]) -> str:
    """LSP TextEdits applied to `text` (UTF-16 columns, as the server said it uses)."""
    lines = text.split("\n")

    def offset(pos: dict) -> int:
        before = sum(len(line) + 1 for line in lines[: pos["line"]])
        line = lines[pos["line"]] if pos["line"] < len(lines) else ""
        units, i = 0, 0
        while i < len(line) and units < pos["character"]:
            units += 2 if ord(line[i]) > 0xFFFF else 1
            i += 1
        return before + i

    for e in sorted(edits, key=lambda e: (e["range"]["start"]["line"],
                                          e["range"]["start"]["character"]), reverse=True):
        a, b = offset(e["range"]["start"]), offset(e["range"]["end"])
        text = text[:a] + e["newText"] + text[b:]
        lines = text.split("\n")
    return text


def where(text: str, needle: str, after: str = "") -> dict:
    """The LSP position of `needle` (after the first `after`) in `text`."""
    start = text.index(after) if after else 0
    at = text.index(needle, start)
    line = text.count("\n", 0, at)
    return {"line": line, "character": at - (text.rfind("\n", 0, at) + 1)}


def filmc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "filmc", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture
def film(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "wolfpack")


@pytest.fixture
def server(film: Path):
    client = LspClient(film)
    client.start(film, debounce=0.02)
    yield client
    if client.proc.poll() is None:
        assert client.close() == 0
    assert "Traceback" not in client.errors()


# --- diagnostics and quick fixes -----------------------------------------------------------------


def test_a_typo_is_an_error_at_its_place_with_a_fix_that_clears_it(server: LspClient,
                                                                   film: Path) -> None:
    hunt = film / "scenes" / "01_hunt.film"
    text = hunt.read_text(encoding="utf-8")
    assert server.open(hunt) == []

    typo = text.replace("camera wide eye_level telephoto", "camera wdie eye_level telephoto")
    found = server.change(hunt, typo)
    assert [d["code"] for d in found] == ["F0204"]
    d = found[0]
    start = where(typo, "wdie")
    assert d["range"] == {"start": start, "end": {**start, "character": start["character"] + 4}}
    assert d["severity"] == 1 and d["source"] == "filmc"
    assert d["message"].startswith("unknown camera preset `wdie`")
    assert "did you mean `wide`?" in d["message"]

    actions = server.result("textDocument/codeAction", {
        "textDocument": {"uri": hunt.as_uri()}, "range": d["range"],
        "context": {"diagnostics": [d]}})
    assert [a["title"] for a in actions] == ["Change to `wide`"]
    fixed = apply_edits(typo, actions[0]["edit"]["changes"][hunt.as_uri()])
    assert fixed == text
    assert server.change(hunt, fixed) == []


def test_a_part_is_checked_in_its_film(server: LspClient, film: Path) -> None:
    """02_yurt.film alone lacks the cast; in its film it is clean.  An outfit renamed in
    cast.film (unsaved) breaks the shots of another file that wear it."""
    yurt = film / "scenes" / "02_yurt.film"
    assert server.open(yurt) == []
    cast = film / "cast.film"
    text = cast.read_text(encoding="utf-8")
    assert server.open(cast) == []
    mark = server.mark()
    server.change(cast, text.replace("outfit deel ", "outfit robe "))
    errors = server.diagnostics(yurt.as_uri(), mark)
    assert errors and {d["code"] for d in errors} == {"F0203"}
    assert all("has no outfit `deel`" in d["message"] for d in errors)
    lines = yurt.read_text(encoding="utf-8").split("\n")
    for d in errors:
        r = d["range"]["start"]
        assert lines[r["line"]][r["character"]:].startswith("deel")


def test_full_width_punctuation_is_fixed_to_ascii(server: LspClient, film: Path) -> None:
    hunt = film / "scenes" / "01_hunt.film"
    text = hunt.read_text(encoding="utf-8")
    server.open(hunt)
    typed = (text.replace("cast CHEN(winter), BILGEE(hunting_coat)",
                          "cast CHEN（winter），BILGEE(hunting_coat)")
             .replace('BILGEE (whispering): "Don\'t move. Watch the grass."',
                      "BILGEE （whispering）： “Don't move. Watch the grass.”"))
    assert typed != text
    found = server.change(hunt, typed)
    assert [d["code"] for d in found] == ["W0101"] and found[0]["severity"] == 2
    actions = server.result("textDocument/codeAction", {
        "textDocument": {"uri": hunt.as_uri()}, "range": found[0]["range"],
        "context": {"diagnostics": found}})
    assert [a["title"] for a in actions] == ["Write the full-width punctuation in ASCII"]
    fixed = apply_edits(typed, actions[0]["edit"]["changes"][hunt.as_uri()])
    assert not re.search("[，：（）“”]", fixed)
    assert server.change(hunt, fixed) == []
    # Only the punctuation changed: what `filmc fmt` makes of both is the same.
    assert format_text(fixed, "a", Diagnostics()) == format_text(text, "a", Diagnostics())


def test_unquoted_words_get_their_quotes(server: LspClient, film: Path) -> None:
    hunt = film / "scenes" / "01_hunt.film"
    text = hunt.read_text(encoding="utf-8")
    server.open(hunt)
    typed = text.replace('action "Mongolian gazelles, fat from the summer grass, graze with '
                         'their heads down, unaware."', "action Mongolian gazelles graze")
    found = server.change(hunt, typed)
    assert [d["code"] for d in found] == ["F0302"]
    actions = server.result("textDocument/codeAction", {
        "textDocument": {"uri": hunt.as_uri()}, "range": found[0]["range"],
        "context": {"diagnostics": found}})
    fixed = apply_edits(typed, actions[0]["edit"]["changes"][hunt.as_uri()])
    assert 'action "Mongolian gazelles graze"' in fixed
    assert server.change(hunt, fixed) == []


# --- completion -------------------------------------------------------------------------------


def _labels(server: LspClient, path: Path, position: dict) -> set[str]:
    found = server.result("textDocument/completion", {"textDocument": {"uri": path.as_uri()},
                                                      "position": position})
    return {i["label"] for i in found["items"]}


def test_completion_offers_the_films_own_names(server: LspClient, film: Path) -> None:
    hunt = film / "scenes" / "01_hunt.film"
    text = hunt.read_text(encoding="utf-8")
    server.open(hunt)
    characters = {"CHEN", "BILGEE", "GAMA", "BATU", "ALPHA"}

    # `cast ` in the shot `ridge_lookout`: the characters, and nothing else.
    typed = text.replace("cast CHEN(winter), BILGEE(hunting_coat)", "cast ")
    server.change(hunt, typed)
    at = where(typed, "cast ", after="shot ridge_lookout")
    at["character"] += len("cast ")
    assert _labels(server, hunt, at) == characters

    # `CHEN(`: CHEN's outfits.
    typed = text.replace("cast CHEN(winter), BILGEE(hunting_coat)", "cast CHEN(")
    server.change(hunt, typed)
    at = where(typed, "CHEN(", after="shot ridge_lookout")
    at["character"] += len("CHEN(")
    assert _labels(server, hunt, at) == {"student", "winter"}

    # `camera `: the camera presets in scope, the film's own `hero` among them.
    at = where(text, "camera wide eye_level")
    at["character"] += len("camera ")
    offered = _labels(server, hunt, at)
    assert {"hero", "wide", "close_up", "low_angle", "establishing"} <= offered
    assert "golden_hour" not in offered  # a light preset

    # A new line in a shot: its attributes, and the characters as speakers.
    typed = text.replace("    takes 2\n", "    takes 2\n    \n", 1)
    server.change(hunt, typed)
    at = where(typed, "    \n", after="takes 2")
    at["character"] = 4
    offered = _labels(server, hunt, at)
    assert {"action", "camera", "light", "cast", "framing", "takes", "seed"} <= offered
    assert characters <= offered
    assert "look" not in offered and "aspect" not in offered  # a character's, a film's

    # `backend ` then `backend keyframe `: step kinds, then filmc.toml's backends.
    for line, expected in (("    backend ", {"keyframe", "clip", "speech", "sheet", "plate"}),
                           ("    backend keyframe ", {"local", "openai", "comfyui"})):
        typed = text.replace("    takes 2\n", f"    takes 2\n{line}\n", 1)
        server.change(hunt, typed)
        at = where(typed, line + "\n")
        at["character"] = len(line)
        assert expected <= _labels(server, hunt, at), line

    # A scene heading: the locations after the setting.
    at = where(text, "STEPPE DUSK {")
    assert _labels(server, hunt, at) == {"STEPPE", "YURT", "LAKE"}


# --- hover ---------------------------------------------------------------------------------------


def test_hover_on_a_shot_shows_its_prompt_cost_and_status(server: LspClient, film: Path) -> None:
    hunt = film / "scenes" / "01_hunt.film"
    text = hunt.read_text(encoding="utf-8")
    server.open(hunt)
    hover = server.result("textDocument/hover", {"textDocument": {"uri": hunt.as_uri()},
                                                 "position": where(text, "chen_watches")})
    shown = hover["contents"]["value"]

    explained = json.loads(filmc("explain", "--json", "chen_watches", cwd=film).stdout)
    prompt = next(s["prompt"] for s in explained if s["id"] ==
                  "keyframe.hunt.chen_watches.openai-1")
    assert prompt.strip() in shown
    r = filmc("plan", "--json", "--select", "shot:chen_watches", cwd=film)
    plan = json.loads(r.stdout)["summary"]
    assert f"**status: will run** {plan['to_run']} steps" in shown
    assert f"estimated **${plan['cost']:.2f}**" in shown
    assert "**shot** `hunt/chen_watches` · 3s" in shown and "cast: `CHEN` (winter)" in shown

    # After an edit the hover is of the text as it is now (unsaved).
    typed = text.replace("Chen raises a pair of old army binoculars",
                         "Chen lowers a pair of old army binoculars")
    server.change(hunt, typed)
    hover = server.result("textDocument/hover", {"textDocument": {"uri": hunt.as_uri()},
                                                 "position": where(typed, "chen_watches")})
    assert "Chen lowers a pair" in hover["contents"]["value"]


KLING = """
[backends.kling]
type = "kling"
access_key_env = "KLING_ACCESS_KEY"
secret_key_env = "KLING_SECRET_KEY"
model = "kling-v2-1"
prices = { clip = 0.49 }
"""


def test_hover_says_a_shot_awaits_a_pick_when_its_clips_are_paid(film: Path) -> None:
    """chen_watches has four keyframe candidates and no pick: with its clips on a paid
    service, they wait for one, as `filmc plan` says."""
    toml = film / "filmc.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace(
        'keyframe = "openai"\n', 'keyframe = "openai"\nclip = "kling"\n') + KLING,
        encoding="utf-8")
    client = LspClient(film)
    try:
        client.start(film, debounce=0.02)
        hunt = film / "scenes" / "01_hunt.film"
        text = hunt.read_text(encoding="utf-8")
        client.open(hunt)
        shown = client.result("textDocument/hover", {"textDocument": {"uri": hunt.as_uri()},
                                                     "position": where(text, "chen_watches")})
        shown = shown["contents"]["value"]
        plan = json.loads(filmc("plan", "--json", "--select", "shot:chen_watches", cwd=film)
                          .stdout)["summary"]
        assert plan["waiting"] == 3
        assert ("**status: awaiting pick** (awaiting a keyframe pick for chen_watches): 3 steps"
                f" wait, estimated ${plan['waiting_cost']:.2f} once picked") in shown
        assert f"**status: will run** {plan['to_run']} steps" in shown
    finally:
        assert client.close() == 0


def test_hover_says_cached_after_a_build(film: Path) -> None:
    """Built (on this machine: every step of the shot is local), the shot is cached."""
    toml = film / "filmc.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('keyframe = "openai"', "")
                    .replace('speech = "openai"', ""), encoding="utf-8")
    r = filmc("build", "--select", "shot:gazelles_graze", cwd=film)
    assert r.returncode == 0, r.stderr
    client = LspClient(film)
    try:
        client.start(film, debounce=0.02)
        hunt = film / "scenes" / "01_hunt.film"
        text = hunt.read_text(encoding="utf-8")
        client.open(hunt)
        shown = client.result("textDocument/hover", {"textDocument": {"uri": hunt.as_uri()},
                                                     "position": where(text, "gazelles_graze")})
        assert "**status: cached**" in shown["contents"]["value"]
        assert "will run" not in shown["contents"]["value"]
        shown = client.result("textDocument/hover", {"textDocument": {"uri": hunt.as_uri()},
                                                     "position": where(text, "ridge_lookout")})
        assert "**status: will run**" in shown["contents"]["value"]  # not built
    finally:
        assert client.close() == 0


def test_hover_on_a_preset_and_a_character(server: LspClient, film: Path) -> None:
    hunt = film / "scenes" / "01_hunt.film"
    text = hunt.read_text(encoding="utf-8")
    server.open(hunt)
    hover = server.result("textDocument/hover", {"textDocument": {"uri": hunt.as_uri()},
                                                 "position": where(text, "wide eye_level")})
    shown = hover["contents"]["value"]
    stdlib = (HERE.parent / "stdlib" / "camera.film").read_text(encoding="utf-8")
    words = re.search(r'preset camera wide \{\n(?:.*\n)*?\s*prompt "([^"]*)"', stdlib)
    assert words is not None and words.group(1) in shown
    assert "camera preset" in shown and "std.camera" in shown

    at = where(text, "CHEN(winter)")
    shown = server.result("textDocument/hover", {"textDocument": {"uri": hunt.as_uri()},
                                                 "position": at})["contents"]["value"]
    assert "thin scar above the left eyebrow" in shown
    assert "refs/chen_front.png" in shown and "refs/chen_winter.png" in shown
    assert (film / "refs" / "chen_front.png").as_uri() in shown


# --- navigation and rename ---------------------------------------------------------------------


def test_definition_of_a_character_is_in_another_file(server: LspClient, film: Path) -> None:
    hunt = film / "scenes" / "01_hunt.film"
    text = hunt.read_text(encoding="utf-8")
    server.open(hunt)
    found = server.result("textDocument/definition", {
        "textDocument": {"uri": hunt.as_uri()}, "position": where(text, "BILGEE(hunting_coat)")})
    cast = film / "cast.film"
    at = where(cast.read_text(encoding="utf-8"), "BILGEE")
    assert found == [{"uri": cast.as_uri(), "range": {
        "start": at, "end": {**at, "character": at["character"] + len("BILGEE")}}}]

    refs = server.result("textDocument/references", {
        "textDocument": {"uri": hunt.as_uri()}, "position": where(text, "BILGEE(hunting_coat)"),
        "context": {"includeDeclaration": False}})
    files = {r["uri"] for r in refs}
    assert cast.as_uri() not in files
    expected = sum(len(re.findall(r"\bBILGEE\b", p.read_text(encoding="utf-8")))
                   for p in (film / "scenes").glob("*.film"))
    assert len(refs) == expected


def test_rename_a_character_across_the_film(server: LspClient, film: Path) -> None:
    hunt = film / "scenes" / "01_hunt.film"
    text = hunt.read_text(encoding="utf-8")
    server.open(hunt)
    before = filmc("check", cwd=film)
    assert before.returncode == 0, before.stderr

    refused = server.request("textDocument/rename", {
        "textDocument": {"uri": hunt.as_uri()}, "position": where(text, "CHEN(winter)"),
        "newName": "BILGEE"})
    assert refused["error"]["code"] == -32803
    assert "character `BILGEE` exists already" in refused["error"]["message"]
    refused = server.request("textDocument/rename", {
        "textDocument": {"uri": hunt.as_uri()}, "position": where(text, "wide eye_level"),
        "newName": "wider"})
    assert "standard library" in refused["error"]["message"]

    edit = server.result("textDocument/rename", {
        "textDocument": {"uri": hunt.as_uri()}, "position": where(text, "CHEN(winter)"),
        "newName": "ZHEN"})
    changed = set(edit["changes"])
    expected = {p.as_uri() for p in film.rglob("*.film") if re.search(r"\bCHEN\b", p.read_text())}
    assert changed == expected | {(film / "filmc.toml").as_uri()}  # its voice too
    for uri, edits in edit["changes"].items():
        path = Path(uri.removeprefix("file://"))
        path.write_text(apply_edits(path.read_text(encoding="utf-8"), edits), encoding="utf-8")
    for p in [*film.rglob("*.film"), film / "filmc.toml"]:
        assert not re.search(r"\bCHEN\b", p.read_text(encoding="utf-8")), p
    assert "ZHEN = \"onyx\"" in (film / "filmc.toml").read_text(encoding="utf-8")
    after = filmc("check", cwd=film)
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout  # the same film: 5 characters, 28 shots


def test_rename_a_shot_moves_its_picks_in_the_lock(server: LspClient, film: Path) -> None:
    lock = film / "film.lock"
    lock.write_text('version = 1\n\n[chen_watches]\nkeyframe = { pick = "openai-2", key = "'
                    + "a" * 64 + '", digest = "' + "b" * 64 + '" }\n', encoding="utf-8")
    hunt = film / "scenes" / "01_hunt.film"
    text = hunt.read_text(encoding="utf-8")
    server.open(hunt)
    edit = server.result("textDocument/rename", {
        "textDocument": {"uri": hunt.as_uri()}, "position": where(text, "chen_watches"),
        "newName": "chen_looks"})
    assert set(edit["changes"]) == {hunt.as_uri(), lock.as_uri()}
    moved = apply_edits(lock.read_text(encoding="utf-8"), edit["changes"][lock.as_uri()])
    assert "[chen_looks]\n" in moved and "chen_watches" not in moved


# --- formatting and the outline ---------------------------------------------------------------


def test_formatting_is_filmc_fmt_and_the_outline_lists_scenes_and_shots(
        server: LspClient, film: Path) -> None:
    yurt = film / "scenes" / "02_yurt.film"
    text = yurt.read_text(encoding="utf-8")
    messy = text.replace("\n  shot ", "\n      shot ").replace("\n    cast ", "\n cast   ")
    assert messy != text
    server.open(yurt, messy)
    edits = server.result("textDocument/formatting", {
        "textDocument": {"uri": yurt.as_uri()}, "options": {"tabSize": 2, "insertSpaces": True}})
    assert apply_edits(messy, edits) == text  # the example is formatted: `filmc fmt` agrees

    outline = server.result("textDocument/documentSymbol", {"textDocument": {"uri": yurt.as_uri()}})
    scenes = re.findall(r"^scene (\w+)", text, re.M)
    assert [s["name"] for s in outline] == scenes
    shots = re.findall(r"^  shot (\w+)", text, re.M)
    assert [c["name"] for s in outline for c in s["children"]] == shots
    first = outline[0]["children"][0]  # in the text as the editor holds it (not formatted)
    at = where(messy, f"shot {shots[0]} ")
    assert first["selectionRange"]["start"] == {**at, "character": at["character"] + 5}


def test_a_file_outside_any_film_and_a_bad_request_do_not_break_it(server: LspClient,
                                                                   tmp_path: Path) -> None:
    lone = tmp_path / "lone.film"
    lone.write_text('character A "A" {\n  look "x"\n}\n\nscene s "S" {\n  shot x 2s {\n'
                    '    cast B\n  }\n}\n', encoding="utf-8")
    found = server.open(lone)
    assert [d["code"] for d in found] == ["F0201"]  # checked alone, as `filmc check` would
    answer = server.request("textDocument/hover", {"textDocument": {"uri": "file:///nowhere.film"},
                                                   "position": {"line": 3, "character": 2}})
    assert answer.get("result") is None
    assert server.result("textDocument/documentSymbol",
                         {"textDocument": {"uri": lone.as_uri()}})[0]["name"] == "A"
