"""A rich progress bar for runs: items/s, ETA, failures. Only on a terminal by default."""

from __future__ import annotations

import sys
from typing import Any

from batchline.engine.outcome import BatchOutcome, RunStats
from batchline.engine.progress import BatchProgress
from batchline.observe.meters import format_usd, total_cost


class RichDisplay:
    """Draws one progress bar on stderr for the duration of a run; with LLM calls in it,
    the cost so far and the cost projected for the whole run (like curator's)."""

    def __init__(self, run_id: str) -> None:
        from rich.console import Console  # noqa: PLC0415 - import rich only when drawing
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} items/s"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("{task.fields[cost]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._cost_at_start = total_cost()
        self._task = self._progress.add_task(run_id, total=None, rate="-", failed=0, cost="")
        self._progress.start()

    def start(self, progress: BatchProgress) -> None:
        """A batch started: learn the total once it is known."""
        if progress.total_items is not None:
            self._progress.update(self._task, total=progress.total_items)

    def complete(self, progress: BatchProgress, outcome: BatchOutcome[Any, Any]) -> None:
        """A batch finished: advance the bar."""
        del outcome
        rate = progress.completed_items / progress.elapsed if progress.elapsed > 0 else 0.0
        self._progress.update(
            self._task,
            completed=progress.completed_items,
            total=progress.total_items,
            rate=f"{rate:,.0f}",
            failed=progress.failed_items,
            cost=self._cost(progress),
        )

    def _cost(self, progress: BatchProgress) -> str:
        """``$ so far (~$ projected)`` while LLM calls cost anything, else nothing."""
        now = total_cost()
        if now is None or self._cost_at_start is None:
            return ""
        spent = now - self._cost_at_start
        if spent <= 0:
            return ""
        text = f"{format_usd(spent)}"
        done, total = progress.completed_items, progress.total_items
        if total and done:
            text += f" (~{format_usd(spent / done * total)} projected)"
        return text

    def close(self, stats: RunStats) -> None:
        """Draw the final state and release the terminal."""
        self._progress.update(self._task, completed=stats.succeeded + stats.failed)
        self._progress.stop()


def auto_display(setting: bool | None, run_id: str) -> RichDisplay | None:
    """A display when asked (True), or when stderr is a terminal (None)."""
    if setting is False:
        return None
    if setting is None and not sys.stderr.isatty():
        return None
    return RichDisplay(run_id)
