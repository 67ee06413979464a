"""The options of a run, validated once at the edge with messages that say what to do."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from batchline.engine.keys import KeySpec
from batchline.engine.outcome import BatchOutcome
from batchline.engine.progress import BatchProgress
from batchline.engine.retry import RetryPolicy
from batchline.errors import ConfigurationError
from batchline.state.base import StateStore

OnError = Literal["continue", "stop"]
Duplicates = Literal["error", "skip"]
StartHook = Callable[[BatchProgress], Any]
CompleteHook = Callable[[BatchProgress, BatchOutcome[Any, Any]], Any]
ErrorHook = Callable[[BatchProgress, BaseException], Any]

DEFAULT_CHUNK_SIZE = 100


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything that shapes a run besides its items and batch function."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    key: KeySpec = None
    store: StateStore | None = None
    run_id: str | None = None
    max_concurrency: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_error: OnError = "continue"
    duplicates: Duplicates = "error"
    retry_failed: bool = True
    on_batch_start: StartHook | None = None
    on_batch_complete: CompleteHook | None = None
    on_batch_error: ErrorHook | None = None
    ordered: bool = True
    progress: bool | None = None
    handle_signals: bool = True
    meta: Mapping[str, Any] | None = None
    backend: Any = "local"

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` applied (validated again)."""
        return validate(replace(self, **changes))


def _positive_int(name: str, value: object, hint: str) -> None:
    if type(value) is not int or value < 1:
        raise ConfigurationError(
            f"`{name}` is {value!r} ({type(value).__name__}); expected an integer >= 1. {hint}"
        )


def validate(options: RunOptions) -> RunOptions:
    """Check every option; raise ``ConfigurationError`` naming the first bad one."""
    _positive_int(
        "chunk_size", options.chunk_size, "It is how many items each batch holds, e.g. 100."
    )
    _positive_int(
        "max_concurrency",
        options.max_concurrency,
        "It is how many batches may run at once; 1 runs them one after another.",
    )
    if options.on_error not in ("continue", "stop"):
        raise ConfigurationError(
            f"`on_error` is {options.on_error!r}; expected 'continue' (record failures and go "
            "on) or 'stop' (start no new batch after the first failure)."
        )
    if options.duplicates not in ("error", "skip"):
        raise ConfigurationError(
            f"`duplicates` is {options.duplicates!r}; expected 'error' (raise on a repeated "
            "key) or 'skip' (keep the first item with a key)."
        )
    if not isinstance(options.retry, RetryPolicy):
        raise ConfigurationError(
            f"`retry` is {options.retry!r}; expected a RetryPolicy, e.g. "
            "RetryPolicy(max_attempts=3), or None for the default policy."
        )
    if options.run_id is not None and (
        not isinstance(options.run_id, str) or not options.run_id.strip()
    ):
        raise ConfigurationError(
            f"`run_id` is {options.run_id!r}; expected a non-empty string such as 'nightly-1', "
            "or None for a new run."
        )
    if options.store is not None and not isinstance(options.store, StateStore):
        raise ConfigurationError(
            f"`store` is {type(options.store).__name__}; expected a state store such as "
            "SQLiteStateStore('runs.db') or MemoryStateStore(), or None for memory."
        )
    for name in ("on_batch_start", "on_batch_complete", "on_batch_error"):
        hook = getattr(options, name)
        if hook is not None and not callable(hook):
            raise ConfigurationError(f"`{name}` is {hook!r}; expected a callable or None.")
    return options


def check_items(items: object) -> Iterable[Any]:
    """The input must be an iterable of items (not a string or a mapping)."""
    if isinstance(items, str | bytes | bytearray):
        raise ConfigurationError(
            f"`items` is a {type(items).__name__}; expected an iterable of items (a list, a "
            "generator, ...). To process one string, pass [text]; for lines, text.splitlines()."
        )
    if isinstance(items, Mapping):
        raise ConfigurationError(
            "`items` is a mapping; expected an iterable of items. Pass list(d.values()) or "
            "[{'key': k, 'value': v} for k, v in d.items()]."
        )
    try:
        iter(items)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigurationError(
            f"`items` is {type(items).__name__} {items!r:.60}, which is not iterable; expected "
            "a list, a tuple, a generator or any other iterable of items."
        ) from None
    return items  # type: ignore[return-value]


def check_function(fn: object) -> None:
    """The batch function must be callable."""
    if not callable(fn):
        raise ConfigurationError(
            f"the batch function is {fn!r}; expected a callable batch -> list of results "
            "(or an async function with arun_batches)."
        )
