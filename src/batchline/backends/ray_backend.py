"""Batches as Ray tasks, on a local Ray or a cluster, with the engine's guarantees.

The driver keeps planning, committing, retrying and calling hooks; only the batch
function runs in workers. This module makes that hold on a real cluster:

* it connects (or fails, naming the address) within seconds, and re-installs the
  process's signal handlers that ``ray.init`` replaces, so SIGTERM stays graceful;
* each function is put in the object store once (large captures are shipped once),
  checked by a preflight task (a worker that cannot import it stops the run at once),
  and a per-worker ``setup`` hook runs once in each worker process;
* only the tasks in flight are referenced, so memory is bounded by them;
* a lost node, crashed worker or lost result becomes ``WorkerLostError`` (retried);
  any other error is the batch function's own exception.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from contextlib import suppress
from typing import Any

from batchline.backends.ray_checks import (
    address_problem,
    describe,
    missing_module,
    preflight,
    running_local_cluster,
    unpicklable_message,
)
from batchline.errors import ConfigurationError, WorkerLostError, is_lost_worker

RAY_MISSING = (
    'the Ray backend needs Ray: pip install "ray[client]>=2.9" (in a batchline checkout: '
    'pip install -e ".[ray]"; pip install "batchline[ray]" once batchline is installed from '
    'a package index), or use backend="local"'
)
TASK_RESOURCES = frozenset({"num_cpus", "num_gpus", "memory", "resources", "accelerator_type"})
RUNTIME_ENV_KEYS = frozenset(
    {
        "working_dir",
        "py_modules",
        "pip",
        "uv",
        "conda",
        "env_vars",
        "excludes",
        "container",
        "image_uri",
        "config",
        "nsight",
        "py_executable",
        "worker_process_setup_hook",
    }
)


class RayConnectionError(ConfigurationError, ConnectionError):
    """The Ray cluster at the given address cannot be reached."""


class RayBackend:
    """Ray tasks: on a running cluster, or on a private local Ray started on demand.

    Args:
        address: the cluster: ``"HOST:PORT"`` (GCS), ``"ray://HOST:10001"`` (Ray client,
            ``pip install "batchline[ray]"``), or ``"auto"``. None uses ``RAY_ADDRESS``,
            else joins a Ray started on this machine with ``ray start``, else starts a
            private local Ray (its temp folder is removed when the process exits).
        num_cpus: CPUs of a private local Ray started here.
        init_options: more ``ray.init`` options.
        resources: per task: ``num_cpus`` (default 1), ``num_gpus``, ``memory`` (bytes),
            ``resources`` (custom, e.g. ``{"TPU": 1}``), ``accelerator_type``.
        runtime_env: what workers need: ``working_dir``, ``py_modules``, ``pip``,
            ``env_vars``... (Ray's runtime environment, set for the whole job).
        setup: called once in each worker process before its first batch (load a model,
            open a connection); it is pickled and put in the object store once.
        connect_timeout: seconds to wait for the cluster to answer.
        preflight_timeout: seconds to wait for the preflight task (a ``pip`` runtime env
            may take minutes to install on first use).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        init_options: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        setup: Callable[[], object] | None = None,
        connect_timeout: float = 15.0,
        preflight_timeout: float = 600.0,
    ) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigurationError(RAY_MISSING)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.init_options = dict(init_options or {})
        self.resources = _check_resources(dict(resources or {"num_cpus": 1}))
        self.resources.setdefault("num_cpus", 1)
        self.runtime_env = _check_runtime_env(dict(runtime_env or {}))
        if setup is not None and not callable(setup):
            raise ConfigurationError(f"RayBackend `setup` is {setup!r}; expected a callable.")
        self.setup = setup
        self.connect_timeout = connect_timeout
        self.preflight_timeout = preflight_timeout
        self.connected_to: str | None = None
        self._temp_dir: str | None = None
        self._per_task_env = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RayBackend:
        """A backend from plain settings (YAML ``settings.ray``, CLI options)."""
        known = {"address", "runtime_env", "num_cpus", "num_gpus", "memory", "resources"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigurationError(
                f"Ray settings {', '.join(f'`{k}`' for k in unknown)} are unknown; expected "
                f"{', '.join(sorted(known))}."
            )
        per_task = {
            k: settings[k]
            for k in ("num_cpus", "num_gpus", "memory", "resources")
            if settings.get(k) is not None
        }
        return cls(
            address=settings.get("address"),
            resources=per_task or None,
            runtime_env=settings.get("runtime_env") or None,
        )

    def __repr__(self) -> str:
        where = self.connected_to or self.address or "local"
        return f"RayBackend({where!r}, resources={self.resources})"

    def ensure_started(self) -> None:
        """Connect to (or start) Ray unless it already runs; fail fast naming the address.

        Raises:
            RayConnectionError: the cluster does not answer within ``connect_timeout``.
        """
        import ray  # noqa: PLC0415 - optional dependency

        if ray.is_initialized() and self.connected_to is not None:
            return  # this backend connected it, with its runtime env
        if ray.is_initialized():
            # Ray was started before (by the caller or an earlier run): the job's runtime
            # env is fixed by then, so this backend's goes with each task instead.
            self._per_task_env = bool(self.runtime_env)
            local = _local_paths(self.runtime_env)
            if local:
                raise ConfigurationError(
                    f"RayBackend `runtime_env` ships local paths ({', '.join(local)}), but Ray "
                    "was already started in this process, and Ray uploads local folders only "
                    "when it starts. Let batchline start Ray (do not call ray.init first), "
                    "pass ray.init(runtime_env=...) yourself, or use URIs (s3://..., gs://...)."
                )
            return
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
            **self.init_options,
        }
        if self.runtime_env:
            options["runtime_env"] = {**self.runtime_env, **options.get("runtime_env", {})}
        address = self.address or running_local_cluster()
        if address:
            problem = address_problem(address, self.connect_timeout)
            if problem is not None:
                raise RayConnectionError(self._unreachable(address, problem))
            options.pop("num_cpus", None)
            options.pop("include_dashboard", None)
            self._init(address, options)
            self.connected_to = address
            return
        options.setdefault("num_cpus", self.num_cpus)
        # Ray's unix sockets live under its temp dir, with a 107-byte limit: keep it short.
        parent = tempfile.gettempdir()
        self._temp_dir = tempfile.mkdtemp(
            prefix="bl-ray-",
            dir=parent if len(parent) <= 24 else "/tmp",  # noqa: S108 - a private mkdtemp
        )
        options.setdefault("_temp_dir", self._temp_dir)
        self._init(None, options)
        self.connected_to = "local"
        atexit.register(self.shutdown)

    def _init(self, address: str | None, options: dict[str, Any]) -> None:
        import ray  # noqa: PLC0415

        # ray.init replaces SIGTERM's handler with one that exits at once; the run's own
        # handlers (stop gracefully, exit 130, print the resume command) are put back.
        on_main = threading.current_thread() is threading.main_thread()
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if on_main else {}
        try:
            ray.init(address=address, **options)
        except ConnectionError as exc:
            problem = str(exc)
            if type(exc.__cause__).__name__ == "AuthenticationError":
                problem += (
                    " (the cluster uses token authentication: set RAY_AUTH_MODE=token and "
                    "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH as on the cluster)"
                )
            raise RayConnectionError(self._unreachable(address or "auto", problem)) from exc
        finally:
            for signum, handler in saved.items():
                if handler is not None:
                    signal.signal(signum, handler)

    def _unreachable(self, address: str, problem: str) -> str:
        return (
            f"cannot connect to the Ray cluster at `{address}`: {problem}. Check the address "
            "(`ray status` on the head prints it; ray://HOST:10001 needs the Ray client "
            'server and pip install "ray[client]>=2.9", which `pip install -e ".[ray]"` in a '
            "batchline checkout brings), that the cluster runs and that this "
            "machine can reach it; or run without --ray-address / address= for a local Ray."
        )

    def shutdown(self) -> None:
        """Disconnect; a private local Ray is stopped and its temp folder removed."""
        import ray  # noqa: PLC0415

        if ray.is_initialized():
            ray.shutdown()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        self.connected_to = None

    def executor(self, max_concurrency: int) -> RayExecutor:
        """Submits batches as Ray tasks (the driver keeps ``max_concurrency`` in flight)."""
        del max_concurrency  # the driver never submits more than that
        self.ensure_started()
        return RayExecutor(self)


def _check_resources(resources: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(resources) - TASK_RESOURCES)
    if unknown:
        raise ConfigurationError(
            f"RayBackend `resources` has {', '.join(f'`{k}`' for k in unknown)}; expected "
            f"{', '.join(sorted(TASK_RESOURCES))} (custom resources go under 'resources': "
            "{'TPU': 1})."
        )
    for name in ("num_cpus", "num_gpus", "memory"):
        value = resources.get(name)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or value < 0
        ):
            raise ConfigurationError(
                f"RayBackend resource `{name}` is {value!r}; expected a number >= 0"
                + (" (bytes)" if name == "memory" else "")
                + "."
            )
    return resources


def _check_runtime_env(runtime_env: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(runtime_env) - RUNTIME_ENV_KEYS)
    if unknown:
        raise ConfigurationError(
            f"Ray `runtime_env` has {', '.join(f'`{k}`' for k in unknown)}; expected "
            "working_dir, py_modules, pip, env_vars, ... (see Ray's runtime environments)."
        )
    return runtime_env


def _local_paths(runtime_env: Mapping[str, Any]) -> list[str]:
    """The local folders and files of a runtime env (Ray uploads those only in ray.init)."""
    entries = [runtime_env.get("working_dir"), *(runtime_env.get("py_modules") or [])]
    return [str(e) for e in entries if e is not None and "://" not in str(e)]


_SETUP_DONE: set[str] = set()
_SETUP_LOCK = threading.Lock()


def _run_setup(token: str, setup: Callable[[], object] | None) -> None:
    """Run ``setup`` once per worker process (``token`` names the backend)."""
    if setup is None or token in _SETUP_DONE:
        return
    with _SETUP_LOCK:
        if token not in _SETUP_DONE:
            setup()
            _SETUP_DONE.add(token)


def _call(
    token: str, setup: Callable[[], object] | None, fn: Callable[..., Any], *args: Any
) -> Any:
    _run_setup(token, setup)
    return fn(*args)


def _preflight(token: str, setup: Callable[[], object] | None, fn: Any) -> dict[str, Any]:
    _run_setup(token, setup)
    return preflight(fn)


class RayExecutor:
    """Submits calls as Ray tasks; holds references to the tasks in flight only."""

    def __init__(self, backend: RayBackend) -> None:
        import ray  # noqa: PLC0415

        self._ray = ray
        self._backend = backend
        self._token = uuid.uuid4().hex
        options: dict[str, Any] = {"max_retries": 0, **backend.resources}
        if backend._per_task_env:
            options["runtime_env"] = backend.runtime_env
        self._remote = ray.remote(_call).options(**options)
        self._check = ray.remote(_preflight).options(**options)
        self._setup_ref = None if backend.setup is None else self._put(backend.setup)
        self._shipped: dict[int, tuple[Any, Any]] = {}  # id(callable) -> (callable, ObjectRef)
        self._in_flight: dict[Future[Any], Any] = {}
        self._lock = threading.Lock()

    def _put(self, fn: Any) -> Any:
        try:
            return self._ray.put(fn)
        except Exception as exc:  # pickling errors come as TypeError, PicklingError, ...
            raise ConfigurationError(unpicklable_message(fn, exc)) from exc

    def _ship(self, value: Any) -> Any:
        """A callable as an object-store reference, put and checked once per object."""
        if not callable(value):
            return value
        known = self._shipped.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        ref = self._put(value)
        self._preflight(value, ref)
        self._shipped[id(value)] = (value, ref)
        return ref

    def _preflight(self, fn: Any, ref: Any) -> None:
        ray = self._ray
        check = self._check.remote(self._token, self._setup_ref, ref)
        try:
            ray.get(check, timeout=self._backend.preflight_timeout)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(check, force=True)
            raise ConfigurationError(
                f"no Ray worker could load `{describe(fn)}` within "
                f"{self._backend.preflight_timeout:g}s (is the cluster out of resources "
                f"{self._backend.resources}, or is a pip runtime env still installing?). "
                "Check `ray status`, or raise RayBackend(preflight_timeout=...)."
            ) from None
        except Exception as exc:
            error = _unwrap(exc)
            if is_lost_worker(error):
                return  # infrastructure, not the function: the run's retries handle it
            raise ConfigurationError(_preflight_message(fn, error)) from error

    def prepare(self, fn: Callable[..., Any]) -> None:
        """Ship ``fn`` and check a worker can load it, before the run's first batch.

        Raises:
            ConfigurationError: ``fn`` cannot be pickled, or a worker cannot load it.
        """
        self._ship(fn)

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` as a Ray task; callables are shipped once, by reference."""
        shipped_fn = self._ship(fn)
        shipped_args = [self._ship(arg) for arg in args]
        ref = self._remote.remote(self._token, self._setup_ref, shipped_fn, *shipped_args)
        outer: Future[Any] = Future()
        with self._lock:
            self._in_flight[outer] = ref
        inner: Future[Any] = ref.future()

        def settle(done: Future[Any]) -> None:
            with self._lock:
                self._in_flight.pop(outer, None)  # drop the reference: Ray frees the result
            if outer.cancelled():
                return
            error = done.exception()
            if error is None:
                outer.set_result(done.result())
            else:
                outer.set_exception(_unwrap(error))

        inner.add_done_callback(settle)
        return outer

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not finished (the only ones referenced)."""
        return len(self._in_flight)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel the tasks in flight (when asked) and forget every reference."""
        del wait
        with self._lock:
            refs = list(self._in_flight.values())
            self._in_flight.clear()
        if cancel_futures:
            for ref in refs:
                with suppress(Exception):  # a finished task cannot be cancelled
                    self._ray.cancel(ref)
        self._shipped.clear()


def _preflight_message(fn: Any, error: BaseException) -> str:
    module = missing_module(error)
    name = describe(fn)
    if module == "batchline":
        return (
            f"Ray workers cannot import batchline, so they cannot run `{name}`. Install it "
            'on every node (pip install -e ".[ray]" in a batchline checkout), or ship it '
            "with the job: RayBackend(runtime_env={'py_modules': [batchline]}) (the imported "
            "package) or --ray-py-module with the path of its src/batchline folder."
        )
    if module is not None:
        return (
            f"Ray workers cannot load `{name}`: No module named {module!r}. Ship your code "
            "with the job: RayBackend(runtime_env={'working_dir': '.'}) or {'py_modules': "
            "['path/to/pkg']} (CLI: --ray-working-dir . / --ray-py-module PATH; YAML: "
            "settings.ray.runtime_env), or install it on every node. Nothing was run."
        )
    return (
        f"a Ray worker could not load `{name}`: {type(error).__name__}: {error}. "
        "This fails the same way on every attempt, so the run stops before its first batch."
    )


def _unwrap(error: BaseException) -> BaseException:
    """The batch function's own exception (Ray's wrapper removed), or ``WorkerLostError``."""
    if is_lost_worker(error):
        return WorkerLostError(
            f"the Ray worker running this batch was lost ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'}); "
            "the batch runs again",
            cause=type(error).__name__,
        )
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return _unwrap(cause) if is_lost_worker(cause) else cause
    as_cause = getattr(error, "as_instanceof_cause", None)
    if callable(as_cause):
        try:
            unwrapped = as_cause()
        except Exception:
            return error
        if isinstance(unwrapped, BaseException):
            return unwrapped
    return error
