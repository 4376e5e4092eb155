"""The send's progress bar (rich.progress), imported only by a command that sends."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.text import Text

from ..send import Progress
from .output import err


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "")  # too quick to measure: say nothing


class _OutcomeColumn(ProgressColumn):
    """How many were accepted so far, and how many not: "41/41" alone reads like success."""

    def render(self, task: Task) -> Text:
        accepted, refused = task.fields.get("accepted", 0), task.fields.get("not_accepted", 0)
        text = Text(f"{accepted:,} accepted")
        if refused:
            text.append(f", {refused:,} not accepted", style="bold red")
        return text


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[Progress], None]]:
    """A rich progress bar on stderr: sent, rate, time left; the retry notes below it."""
    bar = Bar(TextColumn("sending"), BarColumn(), MofNCompleteColumn(), _OutcomeColumn(), _RateColumn(),
              TimeRemainingColumn(), TextColumn("{task.fields[note]}"), console=err, transient=False)
    task = bar.add_task("send", total=total, note="", accepted=0, not_accepted=0)

    def update(progress: Progress) -> None:
        bar.update(task, completed=progress.done, total=progress.total, note=progress.note,
                   accepted=progress.accepted, not_accepted=progress.not_accepted)

    with bar:
        yield update
