"""`build/<film>/report.json`: what a build did, step by step, and what it cost.

    {"film": "Wolf Pack", "seconds": 12.3, "interrupted": false,
     "counts": {"ran": 9, "cached": 180, "provided": 3},
     "currency": "USD", "spent": 1.23, "estimated": 1.40,
     "spent_before": 0.34,               paid by an earlier build for jobs this one picked up
     "not_run": [{"id": ..., "error": "not run: it would pass --max-cost 5.00"}],
     "jobs_running": 0,                  paid jobs left running at services (journaled)
     "fell_back": [{"id", "shot", "from", "to", "refused", "cost", "status"}],
                                         steps a fallback backend made (now, or before)
     "bug": null | "Traceback ...",
     "prepared": 0.41,                   seconds from filmc's start to the first step
     "cpu": {"filmc": 41.2, "tools": 310.5},
                                         CPU seconds of filmc's own processes (the build
                                         and its render workers: Python, Pillow) and of
                                         the programs they ran (ffmpeg)
     "stale": [{"path": "film.mp4", "moved_to": "stale/film.mp4",
                "why": "film.mp4 is from an earlier build: this build stopped at ..."}],
                                         results an earlier build made and this one did
                                         not (engine/layout.py moved them to stale/)
     "steps": [{"id", "kind", "backend", "scene", "shot", "status", "seconds", "error",
                "outputs", "cost", "cost_source", "estimate", "attached", "traceback",
                "fallback": null | {"from", "refused"}}]}

`spent` is what the steps this build submitted cost: the service's own figure
where it reports one (`cost_source: "service"`), else the estimate from
filmc.toml's prices; `estimated` is what the plan expected those same steps to
cost.  Jobs an earlier build had paid for and this one picked up (`attached`)
count in `spent_before`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .db import disk_error
from .layout import write_atomic

MAX_COST = "--max-cost"


def make_report(title: str, currency: str, outcomes: Sequence[Any], seconds: float, *,
                interrupted: bool = False, jobs_running: int = 0,
                bug: str | None = None,
                stale: Sequence[Mapping[str, str]] = (),
                cpu: Mapping[str, float] | None = None,
                prepared: float | None = None) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    ran = [o for o in outcomes if o.status == "ran"]
    now = [o for o in ran if not o.attached]  # jobs an earlier build had paid for: not now
    return {
        "film": title,
        "seconds": round(seconds, 3),
        "interrupted": interrupted,
        "counts": counts,
        "currency": currency,
        "spent": round(sum(o.cost or 0.0 for o in now), 6),
        "estimated": round(sum(o.estimate or 0.0 for o in now), 6),
        "spent_before": round(sum(o.cost or 0.0 for o in ran if o.attached), 6),
        "not_run": [{"id": o.id, "error": o.error} for o in outcomes
                    if o.status == "skipped" and o.error and MAX_COST in o.error],
        "jobs_running": jobs_running,
        "fell_back": [{"id": o.id, "shot": o.shot, "from": o.fallback["from"], "to": o.backend,
                       "refused": o.fallback.get("refused", ""), "cost": o.cost,
                       "status": o.status} for o in outcomes if o.fallback],
        "bug": bug,
        "prepared": prepared,
        "cpu": dict(cpu) if cpu is not None else None,
        "stale": [dict(s) for s in stale],
        "steps": [{"id": o.id, "kind": o.kind, "backend": o.backend, "scene": o.scene,
                   "shot": o.shot, "status": o.status, "seconds": round(o.seconds, 3),
                   "error": o.error, "outputs": [s.digest for s in o.outputs],
                   "cost": o.cost, "cost_source": o.cost_source, "estimate": o.estimate,
                   "attached": o.attached, "traceback": o.traceback,
                   "fallback": dict(o.fallback) if o.fallback else None} for o in outcomes],
    }


def write_report(report: dict[str, Any], folder: Path) -> Path:
    path = folder / "report.json"
    try:
        write_atomic(path, render(report))
    except OSError as e:
        raise disk_error(f"write `{path}`", e, folder) from None
    return path


def render(report: dict[str, Any]) -> str:
    """The report as JSON text: indented, but each step on one line (a feature's report
    holds tens of thousands; Python's indenting encoder is pure Python and took seconds,
    where the compact one is C), which also keeps a step to one line for grep."""
    head = {k: v for k, v in report.items() if k != "steps"}
    text = json.dumps(head, ensure_ascii=False, indent=1)
    if "steps" not in report:
        return text + "\n"
    # One encoder for them all (json.dumps with options makes a new one at each call).
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    steps = ",\n  ".join(map(encode, report["steps"]))
    body = f'"steps": [\n  {steps}\n ]' if report["steps"] else '"steps": []'
    return (text[:-2] + ",\n " + body + "\n}\n") if head else "{\n " + body + "\n}\n"
