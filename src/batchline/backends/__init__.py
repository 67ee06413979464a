"""Where batch functions run: threads on this machine, or Ray tasks on a cluster.

A backend hands out an executor with ``submit(fn, *args) -> concurrent.futures.Future``;
the engine's driver keeps scheduling, committing state, retrying and calling hooks, so
resume, streaming, ordering and failure reporting behave the same on every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from batchline.errors import ConfigurationError

if TYPE_CHECKING:
    from batchline.backends.ray_backend import RayBackend


class Executor(Protocol):
    """What the driver needs from a backend.

    An executor may also offer ``prepare(fn)``: the driver calls it once with the batch
    function before the first batch, so a remote backend can ship the function and check
    that its workers can load it (raising ``ConfigurationError`` at once if not).
    """

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


def resolve_backend(
    backend: str | Backend | None,
    ray_address: str | None = None,
    *,
    ray: Mapping[str, Any] | None = None,
) -> Backend:
    """A backend from a name (``"local"``, ``"ray"``) or an instance.

    Args:
        backend: the name or a backend object.
        ray_address: the Ray cluster to join (overrides ``ray["address"]``).
        ray: Ray settings for ``"ray"``: ``address``, ``runtime_env``, ``num_cpus``,
            ``num_gpus``, ``memory``, ``resources`` (as in YAML ``settings.ray``).
    """
    if backend is None or backend == "local":
        return LocalBackend()
    if backend == "ray":
        from batchline.backends.ray_backend import RayBackend  # noqa: PLC0415 - Ray is optional

        settings = dict(ray or {})
        if ray_address:
            settings["address"] = ray_address
        return RayBackend.from_settings(settings)
    if isinstance(backend, str):
        raise ConfigurationError(
            f"`backend` is {backend!r}; expected 'local', 'ray', or a backend object"
        )
    return backend


def __getattr__(name: str) -> Any:
    """``RayBackend`` and its helpers load on first use (importing batchline starts no Ray)."""
    if name in ("RayBackend", "RayConnectionError", "RAY_MISSING"):
        from batchline.backends import ray_backend  # noqa: PLC0415

        return getattr(ray_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Backend", "Executor", "LocalBackend", "RayBackend", "resolve_backend"]
