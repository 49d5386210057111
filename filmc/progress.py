"""Build progress: a rich live display on a terminal, plain lines elsewhere.

On a TTY: steps done/total, cached, running, failed, the shot being worked
on, elapsed and ETA.  Not a TTY (CI, a log file) or `--quiet`: one line per
step that ran or failed (quiet: failures only).  NO_COLOR is respected.
"""

from __future__ import annotations

import os
import sys

from .engine.executor import Events, Outcome


class Plain(Events):
    def __init__(self, quiet: bool = False, stream=None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.total = self.done = 0

    def begin(self, total: int) -> None:
        self.total += total  # a build that says its lines first runs twice (engine/build.py)

    def note(self, text: str) -> None:
        self.stream.write(f"filmc: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        pass

    def finished(self, o: Outcome) -> None:
        self.done += 1
        if o.status == "failed":
            self.stream.write(f"[{self.done}/{self.total}] FAILED {o.id}: {o.error}\n")
        elif o.status == "ran" and not self.quiet:
            self.stream.write(f"[{self.done}/{self.total}] {o.id} ({o.backend}, {o.seconds:.1f}s)\n")
        self.stream.flush()


class Live(Events):
    """A rich progress bar with counts; falls back to nothing fancy if rich is missing."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")))
        self.progress = Progress(
            TextColumn("[bold]building[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
            console=self.console, transient=False)
        self.task = None
        self.cached = self.failed = 0
        self.running: set[str] = set()  # steps started and not yet finished

    def begin(self, total: int) -> None:
        if self.task is not None:  # the lines said first, then the rest: one bar for both
            self.progress.update(self.task, total=(self.progress.tasks[0].total or 0) + total)
            return
        self.progress.start()
        self.task = self.progress.add_task("build", total=total, counts="", current="")

    def note(self, text: str) -> None:
        self.progress.console.print(f"filmc: {text}", markup=False, highlight=False)

    def started(self, node: str) -> None:
        self.running.add(node)
        self._update(current=node)

    def finished(self, o: Outcome) -> None:
        self.running.discard(o.id)
        if o.status == "cached":
            self.cached += 1
        elif o.status == "failed":
            self.failed += 1
            self.progress.console.print(f"[red]failed[/] {o.id}: ", end="")
            self.progress.console.print(o.error or "", markup=False, highlight=False)
        self.progress.advance(self.task)
        self._update(current=o.shot or o.id)

    def _update(self, current: str) -> None:
        counts = f"{self.cached} cached, {len(self.running)} running"
        if self.failed:
            counts += f", [red]{self.failed} failed[/]"
        self.progress.update(self.task, counts=counts, current=current)

    def close(self) -> None:
        self.progress.stop()


def events_for(quiet: bool) -> Events:
    if not quiet and sys.stderr.isatty():
        try:
            return Live()
        except ImportError:
            pass
    return Plain(quiet)
