"""Graceful stop on SIGINT / SIGTERM.

The first signal asks the run to stop: no new batch starts, batches in flight finish
and are committed. A second signal abandons the batches in flight (their items are
simply not committed, so a resume runs them). Handlers are installed only while a run
is driven from the main thread, and the previous handlers are always restored.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("batchline")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_LISTENERS: list[Callable[[int], None]] = []


def on_stop_signal(listener: Callable[[int], None]) -> Callable[[], None]:
    """Call ``listener(signal_number)`` when a run is first asked to stop by a signal
    (for work that waits outside the batches, such as provider batch jobs, to stop
    waiting); returns the function that removes it."""
    _LISTENERS.append(listener)

    def remove() -> None:
        if listener in _LISTENERS:
            _LISTENERS.remove(listener)

    return remove


def _tell_listeners(signum: int) -> None:
    for listener in list(_LISTENERS):
        try:
            listener(signum)
        except Exception:  # a listener never breaks the stop
            log.exception("a stop-signal listener failed")


class StopFlag:
    """Set when a run should stop starting batches; ``signal_number`` says why."""

    __slots__ = ("_event", "abandon", "signal_number")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_number: int | None = None
        self.abandon: Callable[[], None] | None = None

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self, signal_number: int | None = None) -> None:
        """Ask the run to stop."""
        if signal_number is not None and self.signal_number is None:
            self.signal_number = signal_number
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True early if a stop was asked."""
        return self._event.wait(seconds)


class SignalGuard:
    """Installs stop-on-signal handlers for the duration of a run (main thread only)."""

    def __init__(self, flag: StopFlag, enabled: bool) -> None:
        self._flag = flag
        self._enabled = enabled and threading.current_thread() is threading.main_thread()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
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
        if not self._flag:
            self._flag.set(signum)
            log.warning(
                "%s received: finishing the batches in flight, starting no new ones "
                "(send it again to abandon them)",
                name,
            )
            _tell_listeners(signum)
            return
        log.warning("%s received again: abandoning the batches in flight", name)
        if self._flag.abandon is not None:
            self._flag.abandon()
            return
        raise KeyboardInterrupt
