"""How `make run` shows what it is doing: a live step list on a terminal, plain `[make run] …` lines otherwise.

On a TTY (rich, which typer brings): one line per step (Postgres, S3, simulator, API, worker, callback
receiver, render, archive, callback) with its state, a bar (the render's own %, the archive's variants), what
it is waiting for and its elapsed time, under an overall line counting the steps done. Anything else printed
meanwhile (notes, the parent's own log lines) appears above the display. When stdout is not a terminal
(tests, CI, a pipe) the same events are plain lines, as `make run` always printed them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.progress import TimeElapsedColumn as ElapsedColumn
from rich.progress_bar import ProgressBar
from rich.table import Column
from rich.text import Text

PREFIX = "[make run]"
BAR_WIDTH = 24
TITLE_WIDTH = 46
ELAPSED_WIDTH = 7


def say(message: str, *, stream: IO[str] | None = None) -> None:
    out = stream or sys.stdout
    for line in message.split("\n"):
        out.write(f"{PREFIX} {line}\n")
    out.flush()


@dataclass(frozen=True)
class Step:
    key: str
    # Its name in the step list ("API :8000").
    title: str
    # What the step does, as a plain line says it when it begins ("starting the API on :8000").
    label: str
    # Units of measurable progress (the render: 100 %; the archive: its variants); None: done or not.
    total: float | None = None


class Reporter(Protocol):
    def begin(self, key: str, label: str | None = None, *, detail: str = "") -> None: ...

    def relabel(self, key: str, label: str, *, title: str | None = None) -> None: ...

    def update(self, key: str, *, completed: float, total: float | None = None, detail: str = "") -> None: ...

    def done(self, key: str, detail: str = "") -> None: ...

    def fail(self, key: str, detail: str = "") -> None: ...

    def note(self, message: str) -> None: ...

    def close(self) -> None: ...


class PlainReporter:
    """`[make run] …` lines: the step's label when it begins, each new detail of its progress indented."""

    def __init__(self, steps: Sequence[Step], *, stream: IO[str] | None = None) -> None:
        self._labels = {step.key: step.label for step in steps}
        self._last: dict[str, str] = {}
        self._stream = stream

    def begin(self, key: str, label: str | None = None, *, detail: str = "") -> None:
        if label is not None:
            self._labels[key] = label
        say(self._labels[key], stream=self._stream)

    def relabel(self, key: str, label: str, *, title: str | None = None) -> None:
        self._labels[key] = label
        say(label, stream=self._stream)

    def update(self, key: str, *, completed: float, total: float | None = None, detail: str = "") -> None:
        if detail and self._last.get(key) != detail:
            self._last[key] = detail
            say(f"  {detail}", stream=self._stream)

    def done(self, key: str, detail: str = "") -> None:
        if detail:
            say(f"  {detail}", stream=self._stream)

    def fail(self, key: str, detail: str = "") -> None:
        pass  # the step's line was the last one; the stack says what failed and why

    def note(self, message: str) -> None:
        say(message, stream=self._stream)

    def close(self) -> None:
        pass


def column_widths(width: int) -> tuple[int, int, int]:
    """Fixed widths of the step's title, its bar and its detail for a terminal `width` wide (rich would
    otherwise squeeze every column, the elapsed time included, when a detail is long)."""
    bar = BAR_WIDTH if width >= 100 else 12
    rest = max(width - 1 - bar - ELAPSED_WIDTH - 4 - 1, 20)  # 4 gaps between 5 columns, 1 spare
    title = min(TITLE_WIDTH, max(12, rest // 2))
    return title, bar, max(rest - title, 8)


class StateColumn(ProgressColumn):
    """· waiting, a spinner while running, ✓ done, ✗ failed."""

    def __init__(self, table_column: Column | None = None) -> None:
        self._spinner = SpinnerColumn("dots")
        super().__init__(table_column=table_column)

    def render(self, task: Task) -> RenderableType:
        state = task.fields.get("state", "pending")
        if state == "done":
            return Text("✓", style="green")
        if state == "failed":
            return Text("✗", style="bold red")
        if state == "pending":
            return Text("·", style="dim")
        return self._spinner.render(task)


class StepBarColumn(BarColumn):
    """The step's bar: empty while it waits, pulsing while it runs without a measure, else filled."""

    def render(self, task: Task) -> ProgressBar:
        if task.fields.get("state", "pending") == "pending":
            return ProgressBar(total=1, completed=0, width=self.bar_width, pulse=False)
        return super().render(task)


class RichReporter:
    """The live step list; `close()` leaves its final state on screen."""

    def __init__(self, steps: Sequence[Step], *, console: Console | None = None) -> None:
        console = console or Console(file=sys.stdout)
        title_width, bar_width, detail_width = column_widths(console.width)
        self._progress = Progress(
            StateColumn(table_column=Column(width=1, no_wrap=True)),
            TextColumn(
                "{task.description}",
                markup=False,
                table_column=Column(width=title_width, no_wrap=True, overflow="ellipsis"),
            ),
            StepBarColumn(bar_width=bar_width, table_column=Column(width=bar_width, no_wrap=True)),
            ElapsedColumn(table_column=Column(width=ELAPSED_WIDTH, no_wrap=True)),
            TextColumn(
                "{task.fields[detail]}",
                markup=False,
                style="dim",
                table_column=Column(width=detail_width, no_wrap=True, overflow="ellipsis"),
            ),
            console=console,
            refresh_per_second=8,
        )
        self._count = len(steps)
        self._overall = self._progress.add_task(
            "make run", total=self._count, detail=f"0/{self._count} steps", state="running"
        )
        self._tasks: dict[str, TaskID] = {
            step.key: self._progress.add_task(step.title, total=step.total, start=False, detail="", state="pending")
            for step in steps
        }
        self._done = 0
        self._swapped: list[tuple[logging.StreamHandler[IO[str]], IO[str]]] = []
        self._progress.start()
        self._route_logging()

    def _route_logging(self) -> None:
        """This process's own log lines (migrations, say) go above the display instead of through it."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.__stderr__, sys.__stdout__):
                previous = handler.setStream(sys.stderr)  # rich's proxy while the display is live
                if previous is not None:
                    self._swapped.append((handler, previous))

    def begin(self, key: str, label: str | None = None, *, detail: str = "") -> None:
        task = self._tasks[key]
        self._progress.start_task(task)
        # Without a measure of its own (total None), a running step's bar pulses.
        self._progress.update(task, state="running", detail=detail)

    def relabel(self, key: str, label: str, *, title: str | None = None) -> None:
        if title is not None:
            self._progress.update(self._tasks[key], description=title)

    def update(self, key: str, *, completed: float, total: float | None = None, detail: str = "") -> None:
        self._progress.update(self._tasks[key], completed=completed, total=total, detail=detail)

    def done(self, key: str, detail: str = "") -> None:
        task = self._tasks[key]
        total = self._progress.tasks[task].total or 1
        self._progress.update(task, total=total, completed=total, state="done", detail=detail)
        self._progress.stop_task(task)
        self._done += 1
        self._progress.update(
            self._overall,
            completed=self._done,
            detail=f"{self._done}/{self._count} steps",
            state="done" if self._done == self._count else "running",
        )

    def fail(self, key: str, detail: str = "") -> None:
        task = self._tasks[key]
        self._progress.update(task, state="failed", detail=detail, total=self._progress.tasks[task].total or 1)
        self._progress.stop_task(task)
        self._progress.update(self._overall, state="failed")
        self._progress.stop_task(self._overall)

    def renderable(self) -> RenderableType:
        """What the display shows now (for a look at it without a terminal)."""
        return self._progress.get_renderable()

    def note(self, message: str) -> None:
        # While the display is live, stdout goes above it (rich redirects it); afterwards, straight out.
        say(message)

    def close(self) -> None:
        for handler, previous in self._swapped:
            handler.setStream(previous)
        self._swapped.clear()
        self._progress.stop()


def make_reporter(steps: Sequence[Step], *, stream: IO[str] | None = None) -> Reporter:
    """A live display when `stream` (stdout by default) is a terminal, plain lines otherwise."""
    out = stream or sys.stdout
    if out.isatty():
        return RichReporter(steps, console=Console(file=out))
    return PlainReporter(steps, stream=out)
