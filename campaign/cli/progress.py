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
        return Text(f"{speed:,.0f}/s" if speed else "-/s")


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[Progress], None]]:
    """A rich progress bar on stderr: sent, rate, time left; the retry notes below it."""
    bar = Bar(TextColumn("sending"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
              TimeRemainingColumn(), TextColumn("{task.fields[note]}"), console=err, transient=False)
    task = bar.add_task("send", total=total, note="")

    def update(progress: Progress) -> None:
        bar.update(task, completed=progress.done, total=progress.total, note=progress.note)

    with bar:
        yield update
