"""A run session: one run's lease, held by a caller that drives several stages.

``run_batches``/``stream_batches`` open a session of their own. Callers that drive a
run in stages (the workflow runner's steps, a pipeline's scopes, the context executor's
dependency levels) open one for the parent run, commit their own records through it,
and give each stage a child run id derived with ``child_run_id`` (one convention,
parsed back by ``split_run_id`` in the CLI and commands). While the session is open a
heartbeat keeps the lease alive, so a stage longer than the store's lease TTL is never
taken over by another host.
"""

from __future__ import annotations

import logging
import threading
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from batchline.errors import ConfigurationError, RunInterrupted, StateError, StopRun
from batchline.state.base import BatchCommit, ItemRecord, ItemStatus, Lease, RunStatus, StateStore
from batchline.state.faults import StateFileError
from batchline.state.keys import Key

log = logging.getLogger("batchline")

CHILD_SEPARATOR = "/"
"""Separates a parent run id from a child's name: ``nightly/process``."""

__all__ = [
    "CHILD_SEPARATOR",
    "RunSession",
    "child_run_id",
    "interruption_message",
    "is_child_of",
    "resume_id",
    "run_label",
    "split_run_id",
    "status_for",
]


def child_run_id(run_id: str, name: str) -> str:
    """The id of stage ``name`` of run ``run_id``: ``f"{run_id}/{name}"``.

    Raises:
        ConfigurationError: ``name`` is empty (or not a string).
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(
            f"child run name {name!r} of run {run_id!r} is not usable; expected a non-empty "
            "string (e.g. the step's name)."
        )
    return f"{run_id}{CHILD_SEPARATOR}{name}"


def split_run_id(run_id: str) -> tuple[str, str | None]:
    """``(top-level run id, child name)`` of a child run id; ``(run_id, None)`` for a
    top-level run. The first separator splits (generated run ids never contain one), so
    a child's name may contain ``/`` itself.
    """
    parent, separator, name = run_id.partition(CHILD_SEPARATOR)
    if not separator or not parent or not name:
        return run_id, None
    return parent, name


def run_label(run_id: str) -> str:
    """How messages name a run: ``run 'nightly'``, or for a child run
    ``run 'nightly' (stage 'process')``: always the id the user knows first."""
    parent, child = split_run_id(run_id)
    return f"run {parent!r}" if child is None else f"run {parent!r} (stage {child!r})"


def resume_id(run_id: str) -> str:
    """The run id a user resumes to continue ``run_id``: the top-level run of a child."""
    return split_run_id(run_id)[0]


def interruption_message(
    run_id: str,
    *,
    where: str,
    resume: str,
    signal_number: int | None = None,
    items_done: int | None = None,
    cause: str | None = None,
) -> str:
    """The one format of "this run was interrupted" messages, engine and front doors alike:
    ``run 'nightly' (stage 'process') interrupted by SIGINT after 40 items; {where}.
    {resume}`` (the run named as the user knows it, see ``run_label``).

    Args:
        run_id: the interrupted run (a child run is named by its top-level run).
        where: where its state is (``its state is saved in ...``).
        resume: how to resume it, as a full sentence or a command.
        signal_number: the signal that stopped it, if one did.
        items_done: items finished before it stopped, if known.
        cause: what stopped it when no signal did (``KeyboardInterrupt raised by ...``).
    """
    import signal  # noqa: PLC0415 - only messages need the names

    by = ""
    if signal_number:
        try:
            by = f" by {signal.Signals(signal_number).name}"
        except ValueError:
            by = f" by signal {signal_number}"
    elif cause:
        by = f" by {cause}"
    after = "" if items_done is None else f" after {items_done} items"
    return f"{run_label(run_id)} interrupted{by}{after}; {where}. {resume}"


def is_child_of(run_id: str, parent: str) -> bool:
    """Whether ``run_id`` is a child (at any depth) of ``parent``."""
    return run_id.startswith(parent + CHILD_SEPARATOR)


class RunSession:
    """One run's lease, heartbeat and commits, for callers that drive several stages.

    Use it as a context manager (the final status follows how the block ended), or call
    ``open`` and ``close`` yourself::

        with RunSession(store, "nightly", meta={"kind": "workflow"}) as session:
            session.record("step:fetch", {"status": "completed"}, position=0)
            child = session.child("process")  # "nightly/process": a stage's own run

    Args:
        store: the state store.
        run_id: the run to create or resume.
        meta: metadata kept with the run (merged into what a resumed run has).
        heartbeat: seconds between heartbeats; None: a third of the store's ``lease_ttl``
            (no heartbeat for stores without one).
    """

    def __init__(
        self,
        store: StateStore,
        run_id: str,
        *,
        meta: Mapping[str, Any] | None = None,
        heartbeat: float | None = None,
    ) -> None:
        if not isinstance(run_id, str) or not run_id.strip():
            raise ConfigurationError(
                f"`run_id` is {run_id!r}; expected a non-empty string such as 'nightly-1'."
            )
        self.store = store
        self.run_id = run_id
        self.meta = dict(meta or {})
        self._every = heartbeat
        self._lease: Lease | None = None
        self._heartbeat: _Heartbeat | None = None
        self._closed = False
        self.status: RunStatus | None = None
        self.final_status: RunStatus | None = None
        """The status a ``with`` block that ends without an error closes with (None:
        ``completed``); a caller whose stages recorded failures sets ``failed``."""

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> RunSession:
        """Take the lease (creating or resuming the run) and start the heartbeat.

        Raises:
            RunActiveError: another live driver holds the run.
        """
        if self._lease is not None:
            return self
        self._lease = self.store.acquire(self.run_id, meta=self.meta)
        every = self._every
        if every is None:
            ttl = getattr(self.store, "lease_ttl", None)
            every = ttl / 3 if isinstance(ttl, int | float) and ttl > 0 else None
        if every is not None and every > 0:
            self._heartbeat = _Heartbeat(self.store, self._lease, every)
        return self

    def close(self, status: RunStatus, *, total_items: int | None = None) -> None:
        """Stop the heartbeat and release the lease with the run's final ``status``.

        Closing twice does nothing; a lease taken over meanwhile is logged, not raised.
        """
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        lease, self._lease = self._lease, None
        if lease is None or self._closed:
            return
        self._closed = True
        self.status = status
        try:
            self.store.release(lease, status, total_items=total_items)
        except StateError as exc:  # taken over meanwhile: nothing left to release
            log.warning("could not release run %r: %s", self.run_id, exc)

    def __enter__(self) -> RunSession:
        return self.open()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: types.TracebackType | None,
    ) -> None:
        if error is None and self.final_status is not None:
            self.close(self.final_status)
        else:
            self.close(status_for(error))

    # -- state ---------------------------------------------------------------------------

    @property
    def lease(self) -> Lease:
        """The live lease; ``StateError`` when closed or when the heartbeat lost it."""
        if self._lease is None:
            raise StateError(
                f"run {self.run_id!r} is not open: open its session (or iterate the stream) "
                "before writing to it."
            )
        if self._heartbeat is not None and self._heartbeat.error is not None:
            raise self._heartbeat.error
        return self._lease

    @property
    def is_open(self) -> bool:
        """Whether the session holds the lease."""
        return self._lease is not None

    @property
    def resumed(self) -> bool:
        """Whether the run existed before this session opened it."""
        return self._lease is not None and self._lease.resumed

    @property
    def committed_items(self) -> int:
        """Items the run had committed when the session opened."""
        return 0 if self._lease is None else self._lease.committed_items

    def commit(self, commit: BatchCommit) -> None:
        """Write one batch (results and failures) in one transaction, under the lease."""
        self.store.commit_batch(self.lease, commit)

    def record(
        self,
        key: Key,
        result: Any,
        *,
        position: int,
        number: int | None = None,
        attempts: int = 1,
        duration: float = 0.0,
    ) -> None:
        """Commit one record (a stage's outcome, say) as a batch of one item.

        Args:
            key: the record's key (a re-commit of the same key replaces it).
            result: plain JSON data.
            position: the record's position in the run.
            number: the batch number (default ``position + 1``).
            attempts: attempts the stage made.
            duration: seconds it took.
        """
        self.commit(
            BatchCommit(
                batch_number=position + 1 if number is None else number,
                keys=[key],
                positions=[position],
                results=[result],
                failed=[],
                attempts=max(1, attempts),
                started_at=time.time() - duration,
                duration=duration,
            )
        )

    def lookup(self, keys: Sequence[Key]) -> dict[Key, ItemRecord]:
        """Committed records among ``keys``."""
        return self.store.lookup(self.run_id, keys)

    def items(self, status: ItemStatus | None = None) -> Iterator[ItemRecord]:
        """The run's committed records in position order, optionally of one status."""
        return self.store.iter_items(self.run_id, status)

    def child(self, name: str) -> str:
        """The id of this run's stage ``name`` (see ``child_run_id``)."""
        return child_run_id(self.run_id, name)


def status_for(error: BaseException | None) -> RunStatus:
    """The final status of a run that ended with ``error`` (None: completed): interrupts and
    abandoned streams are ``interrupted``, ``StopRun`` is ``stopped``, anything else
    ``failed``."""
    if error is None:
        return "completed"
    if isinstance(error, KeyboardInterrupt | RunInterrupted | GeneratorExit):
        return "interrupted"  # a signal, or a caller that stopped iterating
    if isinstance(error, StopRun):
        return "stopped"
    return "failed"


class _Heartbeat:
    """Keeps a lease alive from a daemon thread while the session is open."""

    def __init__(self, store: StateStore, lease: Lease, every: float) -> None:
        self._store = store
        self._lease = lease
        self._every = every
        self._done = threading.Event()
        self.error: StateError | None = None
        self._thread = threading.Thread(target=self._beat, name="batchline-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        from batchline.backends.threads import shield_thread_from_signals  # noqa: PLC0415

        shield_thread_from_signals()  # signals go to the main thread, which handles them
        while not self._done.wait(self._every):
            try:
                self._store.heartbeat(self._lease)
            except StateFileError:  # a busy or full disk: try again on the next beat
                log.debug("heartbeat failed", exc_info=True)
            except StateError as exc:  # the lease was taken over: stop writing
                self.error = exc
                return
            except Exception:  # a busy database: try again on the next beat
                log.debug("heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self._done.set()
