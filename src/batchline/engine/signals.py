"""Graceful stop on SIGINT / SIGTERM, and abandoning on the second signal.

The first signal asks the run to stop: no new batch (and, in front doors that run items
one by one, no new item) starts, and the work in flight finishes and is committed. One
line on stderr says so, whatever logging is configured. A second signal abandons the
work in flight: callbacks registered with ``on_abandon`` run (a workflow kills the
shielded child processes of its shell items), the driver stops waiting, nothing in
flight is committed, and the run ends with ``RunInterrupted`` at once.

Handlers are installed only while a run is driven from the main thread, and the
previous handlers are always restored. Whether a stop was asked is process-wide
(signals are): ``stop_requested()`` lets code running inside a batch stop starting
new work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("batchline")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Process:
    """Process-wide stop state (signals are delivered to the process, not to a run)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.abandon = threading.Event()
        self.depth = 0
        self.lock = threading.Lock()
        self.callbacks: list[Callable[[], None]] = []


_PROCESS = _Process()


def stop_requested() -> bool:
    """True once a run driven in this process caught SIGINT/SIGTERM (until the next run).

    Code that starts work of its own inside a batch (a front door running the items of a
    chunk one by one) checks it before starting each piece, and leaves what it did not
    start pending (return ``ItemNotRun()`` for those items).
    """
    return _PROCESS.stop.is_set()


def stop_event() -> threading.Event:
    """The process-wide event behind ``stop_requested()`` (to wait on, or to cut waits short)."""
    return _PROCESS.stop


def abandon_requested() -> bool:
    """True once a second signal asked to abandon the work in flight."""
    return _PROCESS.abandon.is_set()


def on_abandon(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback()`` when a second signal abandons the work in flight.

    Returns a function that unregisters it. Callbacks run in the main thread, from the
    signal handler: keep them short (kill processes, set events) and never blocking.
    """
    with _PROCESS.lock:
        _PROCESS.callbacks.append(callback)

    def remove() -> None:
        with _PROCESS.lock:
            if callback in _PROCESS.callbacks:
                _PROCESS.callbacks.remove(callback)

    return remove


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


def announce_stop(signum: int) -> None:
    """Write the one line that says what the first signal does, straight to stderr."""
    name = signal.Signals(signum).name
    line = (
        f"batchline: {name} received: finishing the work in flight and starting nothing new "
        f"(its results are saved); send {name} again to abandon it (it stays pending and "
        "runs on resume)\n"
    )
    _write_stderr(line)


def abandon() -> None:
    """Mark the work in flight abandoned and run the ``on_abandon`` callbacks."""
    _PROCESS.stop.set()
    _PROCESS.abandon.set()
    with _PROCESS.lock:
        callbacks = list(_PROCESS.callbacks)
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a failing callback must not keep the others from running
            log.debug("abandon callback %r failed", callback, exc_info=True)


def _write_stderr(text: str) -> None:
    # os.write, not sys.stderr.write: a signal handler may interrupt a write to
    # sys.stderr, and re-entering the text layer would raise.
    with contextlib.suppress(OSError):  # stderr closed: nobody to tell
        os.write(2, text.encode("utf-8", "replace"))


def enter_run() -> None:
    """A run starts: the first (outermost) run forgets a previous run's stop."""
    with _PROCESS.lock:
        if _PROCESS.depth == 0:
            _PROCESS.stop.clear()
            _PROCESS.abandon.clear()
        _PROCESS.depth += 1


def exit_run() -> None:
    """A run ends (its stop stays visible until the next run starts)."""
    with _PROCESS.lock:
        _PROCESS.depth = max(0, _PROCESS.depth - 1)


def _tell_listeners(signum: int) -> None:
    for listener in list(_LISTENERS):
        try:
            listener(signum)
        except Exception:  # a listener never breaks the stop
            log.exception("a stop-signal listener failed")


class StopFlag:
    """Set when a run should stop starting batches; ``signal_number`` says why.

    ``cause`` is the exception from user code (``KeyboardInterrupt``, ``SystemExit``,
    ...) that stopped the run, when one did; ``abandoned`` is True after a second signal.
    """

    __slots__ = ("_event", "abandoned", "cause", "signal_number")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_number: int | None = None
        self.cause: BaseException | None = None
        self.abandoned = False

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self, signal_number: int | None = None) -> None:
        """Ask the run to stop."""
        if signal_number is not None and self.signal_number is None:
            self.signal_number = signal_number
        self._event.set()

    def interrupt(self, cause: BaseException) -> None:
        """Stop because user code raised ``cause`` (a ``BaseException``, not an ``Exception``)."""
        if self.cause is None:
            self.cause = cause
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
        enter_run()
        if self._enabled:
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        exit_run()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if handle_signal(self._flag, signum):
            # A plain KeyboardInterrupt (no `except Exception` in user code swallows it)
            # unwinds the driver, which ends the run with RunInterrupted.
            raise KeyboardInterrupt(f"{signal.Signals(signum).name}: abandoning the work in flight")


def handle_signal(flag: StopFlag, signum: int) -> bool:
    """Apply one signal to a run: True when it is a second one and the run must abandon."""
    if flag.signal_number is None and not flag.abandoned:
        flag.set(signum)
        _PROCESS.stop.set()
        announce_stop(signum)
        log.debug("%s received: stopping gracefully", signal.Signals(signum).name)
        _tell_listeners(signum)
        return False
    if flag.abandoned:
        return True
    flag.set(signum)
    flag.abandoned = True
    _write_stderr(
        f"batchline: {signal.Signals(signum).name} received again: abandoning the work in flight\n"
    )
    abandon()
    return True


EXIT_INTERRUPTED = 130
"""The exit status of a process ended by an uncaught ``RunInterrupted`` (as after Ctrl-C)."""


def exit_130_when_uncaught() -> None:
    """Make an uncaught ``RunInterrupted`` end a script with exit status 130, like Ctrl-C.

    Python gives that status (by re-raising SIGINT) only to an uncaught exception whose
    type is exactly ``KeyboardInterrupt``; a subclass such as ``RunInterrupted`` would
    exit with 1. Called when a run is interrupted (never at import), this wraps
    ``sys.excepthook``: the traceback is printed as usual, ``atexit`` handlers run, and
    the process exits with 130. Interactive sessions and custom hooks are left alone.
    """
    import sys  # noqa: PLC0415

    current = sys.excepthook
    if getattr(current, "_batchline_exit_130", False):
        return
    if current is not sys.__excepthook__ or sys.flags.interactive or hasattr(sys, "ps1"):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        current(kind, value, tb)
        from batchline.errors import RunInterrupted  # noqa: PLC0415

        if not isinstance(value, RunInterrupted):
            return
        import atexit  # noqa: PLC0415

        try:
            atexit._run_exitfuncs()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):  # a closed stream: nothing to flush
                    stream.flush()
            os._exit(EXIT_INTERRUPTED)

    hook._batchline_exit_130 = True  # type: ignore[attr-defined]
    sys.excepthook = hook


__all__ = [
    "EXIT_INTERRUPTED",
    "SignalGuard",
    "StopFlag",
    "abandon_requested",
    "exit_130_when_uncaught",
    "on_abandon",
    "on_stop_signal",
    "stop_event",
    "stop_requested",
]
