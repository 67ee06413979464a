"""Child processes of shell items, shielded from the terminal's Ctrl-C.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group. batchline's
first signal means "finish what is in flight", so a shell item's command must not die of
it: each command starts in its own session (``start_new_session=True``), out of the
terminal's process group, and finishes; its item is committed. A second signal abandons
the work in flight: ``kill_children`` (registered with the engine's ``on_abandon``) kills
every shielded command's whole process group, and nothing of theirs is committed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from batchline.engine import on_abandon

_LIVE: set[subprocess.Popen[str]] = set()
_LOCK = threading.Lock()
_REGISTERED: list[bool] = []


def kill_children() -> None:
    """Kill every running shielded command with its process group (SIGKILL)."""
    with _LOCK:
        live = list(_LIVE)
    for process in live:
        _kill_group(process)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # its own group: the pid is the pgid
    with suppress(ProcessLookupError):
        process.kill()


def run_shielded(
    command: str | Sequence[str],
    *,
    shell: bool,
    cwd: str | Path | None,
    env: dict[str, str] | None,
    timeout: float | None,
) -> subprocess.CompletedProcess[str]:
    """Like ``subprocess.run(..., capture_output=True, text=True)``, in a session of its own.

    The command survives a Ctrl-C sent to batchline's process group; it is killed (with
    its own children) when the run abandons its work, when it times out
    (``subprocess.TimeoutExpired``), or when the calling thread is interrupted.
    """
    if not _REGISTERED:
        with _LOCK:
            if not _REGISTERED:
                on_abandon(kill_children)
                _REGISTERED.append(True)
    process: subprocess.Popen[str] = subprocess.Popen(  # noqa: S603 - running commands is the caller's job
        command,
        shell=shell,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    with _LOCK:
        _LIVE.add(process)
    try:
        with process:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                _kill_group(process)
                process.communicate()
                raise subprocess.TimeoutExpired(exc.cmd, exc.timeout) from None
            except BaseException:
                _kill_group(process)  # an interrupt in this thread: leave nothing behind
                raise
    finally:
        with _LOCK:
            _LIVE.discard(process)
    returncode: Any = process.returncode
    return subprocess.CompletedProcess(command, returncode, stdout, stderr)


__all__ = ["kill_children", "run_shielded"]
