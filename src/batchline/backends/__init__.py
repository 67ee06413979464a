"""Where batch functions run: threads on this machine, or Ray tasks on a cluster.

A backend hands out an executor with ``submit(fn, *args) -> concurrent.futures.Future``;
the engine's driver keeps scheduling, committing state, retrying and calling hooks, so
resume, streaming, ordering and failure reporting behave the same on every backend.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from typing import Any, Protocol

from batchline.errors import ConfigurationError


class Executor(Protocol):
    """What the driver needs from a backend."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` somewhere; the future holds its result or its exception."""
        ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work."""
        ...


class Backend(Protocol):
    """A place to run batches."""

    name: str

    def executor(self, max_concurrency: int) -> Executor:
        """An executor running at most ``max_concurrency`` batches at once."""
        ...


class LocalBackend:
    """Threads in this process."""

    name = "local"

    def executor(self, max_concurrency: int) -> Executor:
        """A pool of daemon threads (an abandoned batch never holds the process up)."""
        from batchline.backends.threads import DaemonThreadPool  # noqa: PLC0415

        return DaemonThreadPool(max_concurrency, thread_name_prefix="batchline")


RAY_MISSING = (
    'the Ray backend needs Ray: pip install "batchline[ray]" (or pip install "ray>=2.9"), '
    'or use backend="local"'
)


class RayBackend:
    """Ray tasks: on a local Ray started on demand, or on a cluster (``address``).

    Args:
        address: ``ray.init(address=...)``: ``"auto"``, ``"ray://head:10001"``, or None to
            start (or join) a local Ray.
        num_cpus: CPUs of a local Ray started here.
        init_options: more ``ray.init`` options.
        resources: per-task resources, e.g. ``{"num_cpus": 1}`` or ``{"num_gpus": 0.5}``.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        init_options: dict[str, Any] | None = None,
        resources: dict[str, Any] | None = None,
    ) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigurationError(RAY_MISSING)
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.num_cpus = num_cpus
        self.init_options = dict(init_options or {})
        self.resources = dict(resources or {"num_cpus": 1})

    def ensure_started(self) -> None:
        """Start or join Ray unless it already is."""
        import ray  # noqa: PLC0415 - optional dependency

        if ray.is_initialized():
            return
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
            **self.init_options,
        }
        if self.address:
            ray.init(address=self.address, **options)
            return
        options.setdefault("num_cpus", self.num_cpus)
        options.setdefault("_temp_dir", tempfile.mkdtemp(prefix="bl-ray-", dir="/tmp"))
        ray.init(**options)

    def executor(self, max_concurrency: int) -> Executor:
        """Submits batches as Ray tasks (the driver keeps ``max_concurrency`` in flight)."""
        del max_concurrency  # the driver never submits more than that
        self.ensure_started()
        return _RayExecutor(self.resources)


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class _RayExecutor:
    def __init__(self, resources: dict[str, Any]) -> None:
        import ray  # noqa: PLC0415

        self._remote = ray.remote(_call).options(max_retries=0, **resources)
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        ref = self._remote.remote(fn, *args)
        self._refs.append(ref)
        inner: Future[Any] = ref.future()
        outer: Future[Any] = Future()

        def settle(done: Future[Any]) -> None:
            error = done.exception()
            if error is None:
                outer.set_result(done.result())
            else:
                outer.set_exception(_unwrap(error))

        inner.add_done_callback(settle)
        return outer

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        import ray  # noqa: PLC0415

        if cancel_futures:
            for ref in self._refs:
                with suppress(Exception):  # a finished task cannot be cancelled
                    ray.cancel(ref)
        del wait
        self._refs.clear()


def _unwrap(error: BaseException) -> BaseException:
    """The batch function's own exception, not Ray's wrapper (so retries decide by class)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    as_cause = getattr(error, "as_instanceof_cause", None)
    if callable(as_cause):
        try:
            unwrapped = as_cause()
        except Exception:
            return error
        if isinstance(unwrapped, BaseException):
            return unwrapped
    return error


def resolve_backend(backend: str | Backend | None, ray_address: str | None = None) -> Backend:
    """A backend from a name (``"local"``, ``"ray"``) or an instance."""
    if backend is None or backend == "local":
        return LocalBackend()
    if backend == "ray":
        return RayBackend(address=ray_address)
    if isinstance(backend, str):
        raise ConfigurationError(
            f"`backend` is {backend!r}; expected 'local', 'ray', or a backend object"
        )
    return backend


__all__ = ["Backend", "Executor", "LocalBackend", "RayBackend", "resolve_backend"]
