"""The one rich progress bar of zoo's commands: description, bar, count, elapsed time, [ETA], [info]."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def progress_bar(*, eta: bool = False, info: bool = False, console: Console | None = None,
                 disable: bool = False) -> Progress:
    """A rich ``Progress`` showing each task's description, bar, ``done/total`` and elapsed time.

    Args:
        eta: add the estimated time remaining.
        info: add a free-text column read from each task's ``info`` field
            (``add_task(..., info="")``, then ``update(task, info=...)``).
        console: where to draw (default: rich's own console on stdout).
        disable: draw nothing (e.g. not on a terminal, or not rank 0).
    """
    columns: list[ProgressColumn] = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn()]
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return Progress(*columns, console=console, disable=disable)
