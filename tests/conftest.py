"""Shared test switches: `pytest --bless` rewrites golden files (review the diff)."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bless", action="store_true",
                     help="rewrite golden files from the current output (also FILMC_BLESS=1)")


@pytest.fixture
def bless(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--bless") or os.environ.get("FILMC_BLESS"))
