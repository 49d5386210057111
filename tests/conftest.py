"""Shared test switches and the rule that tests touch nothing but their own temp dirs.

`pytest --bless` rewrites golden files (review the diff).  Every test runs with
no `FILMC_*` variable of the user's (their store, their ffmpeg, their font), a
cache folder of its session's own (the parser's table), and copies of the
example without the store and build/ that `make demo` leaves in it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wolfpack"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bless", action="store_true",
                     help="rewrite golden files from the current output (also FILMC_BLESS=1)")


def pytest_configure(config: pytest.Config) -> None:
    """Before any test (and any subprocess a test starts): no user state leaks in."""
    bless = os.environ.get("FILMC_BLESS")
    for name in list(os.environ):
        if name.startswith("FILMC_"):
            del os.environ[name]
    if bless:
        os.environ["FILMC_BLESS"] = bless
    os.environ["XDG_CACHE_HOME"] = _CACHE[0] = tempfile.mkdtemp(prefix="filmc-tests-cache-")


_CACHE: list[str] = [""]  # this process's per-user cache for the tests (each xdist worker's own)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CACHE[0]:
        shutil.rmtree(_CACHE[0], ignore_errors=True)


@pytest.fixture
def bless(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--bless") or os.environ.get("FILMC_BLESS"))


def copy_example(dest: Path) -> Path:
    """The example film, as it is in git: without the store and outputs a demo left."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".filmc", "build"))
    return dest
