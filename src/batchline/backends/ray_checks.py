"""What can go wrong before a batch reaches a Ray worker, said clearly.

* ``unpicklable_part``: which object a batch function captures that cannot be pickled.
* ``preflight``: the task run once per function before the run: it imports batchline,
  loads the function (unpickling it imports the user's module) and lets the function
  check itself (``__batchline_preflight__``, e.g. a workflow task that must import a
  Python function). Its failure is deterministic, so the run stops at once.
* ``address_problem``: whether a cluster address answers, checked in seconds with a
  plain TCP connection before ``ray.init`` (which can wait many minutes on a wrong one).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

PREFLIGHT_HOOK = "__batchline_preflight__"
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")


def _dumps(value: Any) -> None:
    from ray import cloudpickle  # noqa: PLC0415 - Ray's own pickler, as Ray uses it

    cloudpickle.dumps(value)  # type: ignore[no-untyped-call]


def _captured(fn: Any) -> Iterator[tuple[str, Any]]:
    """The objects ``fn`` carries along: closure cells, globals it reads, defaults, fields."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        for name, cell in zip(
            code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False
        ):
            with suppress(ValueError):  # an empty cell
                yield name, cell.cell_contents
        scope = getattr(fn, "__globals__", {})
        for name in code.co_names:
            if name in scope:
                yield name, scope[name]
        for index, value in enumerate(getattr(fn, "__defaults__", None) or ()):
            yield f"default #{index + 1}", value
        return
    bound = getattr(fn, "__self__", None)
    if bound is not None:
        yield "self", bound
        return
    for name, value in getattr(fn, "__dict__", {}).items():
        yield name, value
    for name in getattr(type(fn), "__slots__", ()):
        if hasattr(fn, name):
            yield name, getattr(fn, name)


def unpicklable_part(fn: Any, depth: int = 3) -> str | None:
    """A path to the first captured object of ``fn`` that cannot be pickled, if found."""
    if depth <= 0:
        return None
    for name, value in _captured(fn):
        try:
            _dumps(value)
        except Exception:
            inner = unpicklable_part(value, depth - 1)
            if inner is not None:
                return f"{name}.{inner}"
            return f"{name} ({type(value).__module__}.{type(value).__qualname__})"
    return None


def describe(fn: Any) -> str:
    """A name for a batch function in messages."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{module}.{name}"


def unpicklable_message(fn: Any, error: BaseException) -> str:
    """Which captured object of ``fn`` cannot be sent to Ray workers, and what to do."""
    part = unpicklable_part(fn)
    what = f"it captures `{part}`, which" if part else "something it captures"
    return (
        f"the batch function `{describe(fn)}` cannot be sent to Ray workers: {what} cannot "
        f"be pickled ({type(error).__name__}: {error}). Create such objects (locks, "
        "connections, clients, open files) inside the function or once per worker with "
        "RayBackend(setup=...), keep only plain data in closures, or use backend='local'."
    )


def preflight(fn: Any) -> dict[str, Any]:
    """Runs in a worker: import batchline, run ``fn``'s own check; report where it ran."""
    import batchline  # noqa: PLC0415 - the point is to import it in the worker

    check: Callable[[], object] | None = getattr(fn, PREFLIGHT_HOOK, None)
    if callable(check):
        check()
    return {"pid": os.getpid(), "batchline": batchline.__version__}


def missing_module(error: BaseException) -> str | None:
    """The module a worker could not import, from the error chain (by class)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current.name
        client = getattr(current, "client_exc", None)  # RaySystemError: failed to unpickle
        if isinstance(client, str):
            found = _NO_MODULE.search(client)
            return found.group(1) if found else None
        cause = client if isinstance(client, BaseException) else getattr(current, "cause", None)
        current = (
            cause
            if isinstance(cause, BaseException)
            else (current.__cause__ or current.__context__)
        )
    return None


def address_problem(address: str, timeout: float) -> str | None:
    """Why ``address`` cannot be reached within ``timeout`` seconds, or None if it answers."""
    host_port = address.removeprefix("ray://")
    if host_port == "auto" or host_port.startswith(("http://", "https://")):
        return None
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        return (
            f"`{address}` is not a Ray address; expected HOST:PORT (the head's GCS port, "
            "6379 by default), ray://HOST:PORT (Ray client, 10001 by default) or auto"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return f"nothing answers at {host}:{port} within {timeout:g}s ({exc})"


def running_local_cluster(temp_root: str = "/tmp/ray") -> str | None:  # noqa: S108 - Ray's default
    """The GCS address of a Ray started on this machine with ``ray start``, if it answers."""
    marker = Path(temp_root) / "ray_current_cluster"
    try:
        address = marker.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not address or address_problem(address, 1.0) is not None:
        return None
    return address
