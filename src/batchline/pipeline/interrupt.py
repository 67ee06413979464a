"""Ctrl-C (SIGINT) and SIGTERM around a whole pipeline run.

Inside a batching scope the engine handles signals itself (the batches in flight
finish and are committed, no new one starts, a second signal abandons them). Between
scopes this guard does the same for the pipeline's own steps: the first signal lets
the step in flight finish and starts nothing new; the second raises
``KeyboardInterrupt`` at once. Handlers are installed only in the main thread and the
previous ones are always restored.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptGuard:
    """Records the first SIGINT/SIGTERM while a pipeline runs; the second one aborts."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled and threading.current_thread() is threading.main_thread()
        self._previous: dict[int, Any] = {}
        self.signal_number: int | None = None

    def __bool__(self) -> bool:
        return self.signal_number is not None

    def __enter__(self) -> InterruptGuard:
        if self._enabled:
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        name = signal.Signals(signum).name
        if self.signal_number is None:
            self.signal_number = signum
            print(
                f"batchline: {name} received: the pipeline finishes the step in flight and "
                "starts nothing new (send it again to abandon the step at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        raise KeyboardInterrupt


def signal_name(signum: int | None) -> str:
    """``SIGINT`` for a signal number (SIGINT when unknown: a KeyboardInterrupt)."""
    if signum is None:
        return "SIGINT"
    try:
        return signal.Signals(signum).name
    except ValueError:  # pragma: no cover - not a signal number
        return f"signal {signum}"
