"""Golden files: the AST of every tests/golden/*.film, and the diagnostics of every
tests/errors/*.film exactly as `filmc check` prints them.  `pytest --bless`
rewrites them; reviewing that diff is the test."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from golden_files import compare, dump, to_json

from filmc.cli import main
from filmc.lang.diagnostics import Diagnostics
from filmc.lang.parser import parse

HERE = Path(__file__).parent
GOLDEN = sorted((HERE / "golden").glob("*.film"))
ERRORS = sorted((HERE / "errors").glob("*.film"))


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_parse_golden(path: Path, bless: bool) -> None:
    diags = Diagnostics()
    module = parse(path.read_text(encoding="utf-8"), path.name, diags)
    out = {"decls": dump(module.decls), "comments": dump(module.comments),
           "diagnostics": [d.to_json() for d in diags]}
    compare(path.with_suffix(".ast.json"), to_json(out), bless)


def run_check(folder: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", *args])
    finally:
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.stem)
def test_diagnostics_golden(path: Path, bless: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, err = run_check(path.parent, path.name)
    text = f"exit: {code}\n--- stdout\n{out}--- stderr\n{err}"
    compare(path.with_suffix(".stderr"), text, bless)
    assert "Traceback" not in err


def test_every_error_case_reports_something() -> None:
    for path in ERRORS:
        golden = path.with_suffix(".stderr")
        if golden.exists():
            text = golden.read_text(encoding="utf-8")
            assert "error[" in text or "warning[" in text, f"{path.name} reports nothing"
