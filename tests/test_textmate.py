"""The TextMate grammar (editors/vscode/syntaxes/film.tmLanguage.json) in VS Code's own engine.

`vscode-textmate` with `vscode-oniguruma` (npm, installed into this test's temp folder)
tokenises the example film, the standard library and the Chinese test film; the test
then walks each file's AST from filmc's own parser and asserts the scope of every
declaration keyword and id, string, typed literal, comment, dialogue speaker and cast
member at the place the parser found it.  Without node and npm, or when npm cannot
install the two packages, it is skipped and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from filmc.lang import ast
from filmc.lang.diagnostics import Diagnostics
from filmc.lang.parser import parse

ROOT = Path(__file__).resolve().parents[1]
GRAMMAR = ROOT / "editors" / "vscode" / "syntaxes" / "film.tmLanguage.json"
FILES = sorted([*(ROOT / "examples" / "wolfpack").rglob("*.film"), *(ROOT / "stdlib").glob("*.film"),
                ROOT / "tests" / "errors" / "full_width.film"])
FILES = [f for f in FILES if "build" not in f.parts]
PACKAGES = ("vscode-textmate@9", "vscode-oniguruma@2")

TOKENIZE_JS = r"""
// Prints {file: [[ [text, [scopes...]], ... ] per line]} for each file (JSON).
const fs = require('fs');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');
(async () => {
  const [grammarPath, ...files] = process.argv.slice(2);
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (p) => new oniguruma.OnigScanner(p),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scope) => scope === 'source.film'
      ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, 'utf8'), grammarPath) : null,
  });
  const grammar = await registry.loadGrammar('source.film');
  const out = {};
  for (const file of files) {
    let stack = vsctm.INITIAL;
    out[file] = fs.readFileSync(file, 'utf8').split('\n').map((line) => {
      const r = grammar.tokenizeLine(line, stack);
      stack = r.ruleStack;
      return r.tokens.map((t) => [line.substring(t.startIndex, t.endIndex), t.scopes]);
    });
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
"""

LITERALS = """\
preset camera sample {
  lens 35mm
}

film "Literals" {
  aspect 2.39:1
  size 1920x1080
  fps 23.976
  duration 0:04
}

scene s "S" {
  shot a 4s {
    seed 7
  }
  shot b 1.5s {
  }
  shot c 500ms {
  }
  shot d 96f {
  }
  shot e 1:02.5 {
  }
}
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run VS Code's TextMate engine "
                    f"(node: {node or 'not found'}, npm: {npm or 'not found'})")
    folder = tmp_path_factory.mktemp("textmate")
    env = {**os.environ, "npm_config_cache": str(folder / ".npm-cache"),
           "npm_config_update_notifier": "false"}
    try:
        r = subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund",
                            "--loglevel=error", *PACKAGES], capture_output=True, text=True,
                           timeout=240, env=env)
    except subprocess.TimeoutExpired:
        pytest.skip("npm could not install vscode-textmate and vscode-oniguruma in 240 s")
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        pytest.skip("npm could not install vscode-textmate and vscode-oniguruma: "
                    + " / ".join(tail))
    (folder / "tokenize.js").write_text(TOKENIZE_JS, encoding="utf-8")
    return folder


def tokenize(engine: Path, files: list[Path]) -> dict[str, list[list[tuple[int, int, list[str]]]]]:
    """Each file's lines as (start, end, scopes) tokens, columns 0-based."""
    r = subprocess.run(["node", str(engine / "tokenize.js"), str(GRAMMAR), *map(str, files)],
                       capture_output=True, text=True, timeout=120, cwd=engine)
    assert r.returncode == 0, r.stderr
    out = {}
    for file, lines in json.loads(r.stdout).items():
        rows = []
        for tokens in lines:
            at, row = 0, []
            for text, scopes in tokens:
                row.append((at, at + len(text), scopes))
                at += len(text)
            rows.append(row)
        out[file] = rows
    return out


class Scopes:
    """The scopes the grammar gave each place of one file."""

    def __init__(self, rows: list[list[tuple[int, int, list[str]]]]) -> None:
        self.rows = rows

    def over(self, span: ast.Span) -> list[list[str]]:
        """The scopes of every token that covers part of `span` (one line of it)."""
        end = span.end_col - 1 if span.end_line == span.line else 1 << 30
        found = [scopes for start, stop, scopes in self.rows[span.line - 1]
                 if start < max(end, span.col) and stop > span.col - 1]
        assert found, f"no token at {span}"
        return found


def _items(items: tuple) -> Iterator[ast.Attr | ast.Block | ast.Dialogue | ast.Shot]:
    for item in items:
        yield item
        if isinstance(item, (ast.Block, ast.Shot)):
            yield from _items(item.items)


def _assert_scope(tokens: list[list[str]], wanted: str, what: str) -> None:
    """Every token of the place has the scope (a string's quotes and text alike)."""
    for scopes in tokens:
        assert any(s == wanted or s.startswith(wanted + ".") for s in scopes), (what, scopes)


def check_file(module: ast.Module, found: Scopes, text: str) -> int:
    """Assert every scope the AST says there should be; the number of places checked."""
    n = 0

    def expect(span: ast.Span, scope: str, what: str) -> None:
        nonlocal n
        _assert_scope(found.over(span), scope, what)
        n += 1

    lines = text.split("\n")

    def word(span: ast.Span) -> ast.Span:
        """The span of the word a longer span starts with (a keyword, a setting)."""
        line = lines[span.line - 1]
        end = span.col - 1
        while end < len(line) and not line[end].isspace():
            end += 1
        return ast.Span(span.file, span.line, span.col, span.line, end + 1)

    keyword_of = {ast.Use: "use", ast.Film: "film", ast.Character: "character",
                  ast.Location: "location", ast.Preset: "preset", ast.Scene: "scene"}
    for d in module.decls:
        kw = keyword_of[type(d)]
        expect(word(d.span), f"keyword.declaration.{kw}", f"`{kw}`")
        if isinstance(d, ast.Character):
            expect(d.id.span, "entity.name.type.character", d.id.text)
        elif isinstance(d, ast.Location):
            expect(d.id.span, "entity.name.type.location", d.id.text)
        elif isinstance(d, ast.Preset):
            expect(d.kind.span, "storage.type.preset", d.kind.text)
            expect(d.id.span, "entity.name.function.preset", d.id.text)
        elif isinstance(d, ast.Scene):
            expect(d.id.span, "entity.name.section.scene", d.id.text)
            if d.slug is not None:
                expect(word(d.slug.span), "keyword.other.setting", "the setting")
                expect(d.slug.location.span, "variable.other.location", d.slug.location.text)
                if d.slug.time is not None:
                    expect(d.slug.time.span, "constant.language.time", d.slug.time.text)
        elif isinstance(d, ast.Use) and not d.is_file:
            start = lines[d.span.line - 1].index("std.") + 1
            expect(ast.Span("", d.span.line, start, d.span.line, start + len(d.target)),
                   "entity.name.namespace", d.target)
        for title in (getattr(d, "title", None), getattr(d, "name", None)):
            if isinstance(title, ast.Str):
                expect(title.span, "string.quoted", repr(title.value))
        for item in _items(getattr(d, "items", ())):
            if isinstance(item, ast.Shot):
                expect(word(item.span), "keyword.declaration.shot", "`shot`")
                expect(item.id.span, "entity.name.function.shot", item.id.text)
                if item.duration is not None:
                    expect(item.duration.span, "constant.numeric.duration", item.duration.text)
            elif isinstance(item, ast.Dialogue):
                expect(item.speaker.span, "entity.name.tag.speaker", item.speaker.text)
                expect(item.text.span, "string.quoted", "a line of dialogue")
            else:
                for v in item.values:
                    _value(item.key.text, v, expect)
    for c in module.comments:
        expect(c.span, "comment.line.double-slash", c.text)
    return n


_LITERAL_SCOPES = {"aspect": "constant.numeric.ratio", "size": "constant.numeric.size",
                   "lens": "constant.numeric.lens", "duration": "constant.numeric.duration",
                   "fps": "constant.numeric", "seed": "constant.numeric"}


def _value(key: str, v: ast.Value, expect) -> None:
    if isinstance(v, ast.Str):
        expect(v.span, "string.quoted", repr(v.value))
    elif isinstance(v, ast.Literal):
        scope = _LITERAL_SCOPES.get(key, "constant.numeric")
        if key == "camera" and v.text.endswith("mm"):
            scope = "constant.numeric.lens"
        expect(v.span, scope, f"{key} {v.text}")
    elif isinstance(v, ast.Color):
        expect(v.span, "constant.other.color", v.text)
    elif isinstance(v, ast.Ref):
        expect(v.name.span, "variable.other.character", v.name.text)
        expect(v.arg.span, "variable.other.outfit", v.arg.text)
    elif key == "cast":
        expect(v.span, "variable.other.character", v.text)
    elif key in ("camera", "light", "style"):
        expect(v.span, "support.constant.preset", v.text)


def test_the_grammar_scopes_what_the_parser_reads(engine: Path, tmp_path: Path) -> None:
    literals = tmp_path / "literals.film"
    literals.write_text(LITERALS, encoding="utf-8")
    files = [*FILES, literals]
    tokens = tokenize(engine, files)
    checked = 0
    for f in files:
        text = f.read_text(encoding="utf-8")
        diags = Diagnostics()
        module = parse(text, str(f), diags)
        assert not diags.errors, f
        checked += check_file(module, Scopes(tokens[str(f)]), text)
    assert checked > 1200  # every place of the 11 files (1,297 when written), not a sample


def test_the_extension_folder_uses_the_grammar_and_starts_filmc_lsp(engine: Path) -> None:
    folder = ROOT / "editors" / "vscode"
    manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    grammar = manifest["contributes"]["grammars"][0]
    assert grammar["scopeName"] == json.loads(GRAMMAR.read_text(encoding="utf-8"))["scopeName"]
    assert (folder / grammar["path"]).resolve() == GRAMMAR
    language = manifest["contributes"]["languages"][0]
    assert language["extensions"] == [".film"] and grammar["language"] == language["id"]
    assert (folder / language["configuration"]).is_file()
    main = folder / manifest["main"]
    r = subprocess.run(["node", "--check", str(main)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    source = main.read_text(encoding="utf-8")
    assert "args: ['lsp']" in source and "language: 'film'" in source
