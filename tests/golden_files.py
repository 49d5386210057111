"""Golden-file helpers shared by the golden tests."""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from filmc.lang import ast


def dump(node) -> object:
    """A JSON-able view of an AST: class names, fields, and spans as `line:col-line:col`."""
    if isinstance(node, ast.Span):
        return f"{node.line}:{node.col}-{node.end_line}:{node.end_col}"
    if attrs.has(type(node)):
        out: dict = {"_": type(node).__name__}
        for f in attrs.fields(type(node)):
            if f.name == "path":
                continue
            out[f.name] = dump(getattr(node, f.name))
        return out
    if isinstance(node, (tuple, list)):
        return [dump(x) for x in node]
    return node


def compare(path: Path, actual: str, bless: bool) -> None:
    """Assert `actual` equals the golden file, or rewrite it when blessing."""
    if bless or not path.exists():
        path.write_text(actual, encoding="utf-8")
        if not bless:
            raise AssertionError(f"wrote new golden file {path}; review it and run again")
        return
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path.name} differs from its golden file (pytest --bless rewrites it)"


def to_json(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"
