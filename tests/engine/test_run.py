"""Running batches: results, order, retries, failures, hooks, and bad input."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import pytest

from batchline import (
    Batch,
    BatchOutcome,
    BatchProgress,
    BatchResultError,
    BatchRunError,
    ConfigurationError,
    RetryPolicy,
    TerminalError,
    TransientError,
    run_batches,
    stream_batches,
)

FAST = RetryPolicy(max_attempts=3, backoff=0.0)
NO_RETRY = RetryPolicy(max_attempts=1)


def ids(n: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(n)]


def test_results_follow_input_order_with_concurrency_and_retries() -> None:
    rng = random.Random(7)
    lock = threading.Lock()
    attempts: dict[int, int] = {}

    def flaky(batch: Batch[dict[str, int]]) -> list[int]:
        with lock:
            attempts[batch.number] = attempts.get(batch.number, 0) + 1
            fail = attempts[batch.number] == 1 and rng.random() < 0.5
            delay = rng.random() / 500
        time.sleep(delay)
        if fail:
            raise TimeoutError("transient")
        return [item["id"] * 3 for item in batch.items]

    result = run_batches(ids(500), flaky, chunk_size=7, key="id", max_concurrency=6, retry=FAST)
    assert result.ok
    assert result.results == [i * 3 for i in range(500)]
    assert result.stats.retries == sum(n - 1 for n in attempts.values()) > 0
    assert result.keys == list(range(500))


def test_stream_yields_in_plan_order_or_as_finished() -> None:
    def slow_first(batch: Batch[int]) -> list[int]:
        time.sleep(0.05 if batch.number == 1 else 0)
        return list(batch.items)

    ordered = [
        o.batch.number
        for o in stream_batches(range(40), slow_first, chunk_size=10, max_concurrency=4)
    ]
    assert ordered == [1, 2, 3, 4]
    unordered = [
        o.batch.number
        for o in stream_batches(
            range(40), slow_first, chunk_size=10, max_concurrency=4, ordered=False
        )
    ]
    assert sorted(unordered) == [1, 2, 3, 4]
    assert unordered[-1] == 1


def test_dict_results_are_placed_by_key() -> None:
    def by_key(batch: Batch[dict[str, int]]) -> dict[int, str]:
        return {item["id"]: f"v{item['id']}" for item in reversed(batch.items)}

    assert run_batches(ids(5), by_key, key="id", chunk_size=2).results == [
        "v0",
        "v1",
        "v2",
        "v3",
        "v4",
    ]


def test_async_function_in_sync_runner() -> None:
    async def fn(batch: Batch[int]) -> list[int]:
        return [i + 1 for i in batch.items]

    assert run_batches([1, 2, 3], fn, chunk_size=2).results == [2, 3, 4]


def test_wrong_number_of_results_fails_the_batch_naming_it() -> None:
    result = run_batches(ids(6), lambda b: [1] * (len(b.items) - 1), key="id", chunk_size=3)
    assert not result.ok
    assert [f.batch_number for f in result.failures] == [1, 2]
    failure = result.failures[0]
    assert failure.error_type == "BatchResultError"
    assert "batch 1" in failure.message
    assert "2 results for 3 items" in failure.message
    assert "item 2" in failure.message
    assert failure.attempts == 1  # a terminal error: never retried
    assert result.results == [None] * 6


def test_dict_with_missing_key_fails_the_batch() -> None:
    result = run_batches(ids(3), lambda b: {0: "x"}, key="id", chunk_size=3)
    assert "no result for item 1" in result.failures[0].message


def test_non_json_result_fails_naming_batch_and_key() -> None:
    def fn(batch: Batch[dict[str, int]]) -> list[Any]:
        return [object() if item["id"] == 4 else item["id"] for item in batch.items]

    result = run_batches(ids(6), fn, key="id", chunk_size=3)
    assert result.results[:3] == [0, 1, 2]
    assert result.results[3:] == [None, None, None]
    message = result.failures[0].message
    assert "batch 2" in message
    assert "item 4" in message
    assert "JSON" in message


def test_nan_is_not_json() -> None:
    result = run_batches([1], lambda b: [float("nan")])
    assert not result.ok
    assert "JSON" in result.failures[0].message


def test_none_or_string_result_is_rejected() -> None:
    assert "returned NoneType" in run_batches([1], lambda b: None).failures[0].message
    assert "returned str" in run_batches([1], lambda b: "x").failures[0].message


def test_retry_policy_gives_up_after_max_attempts() -> None:
    calls: list[int] = []

    def always(batch: Batch[int]) -> list[int]:
        calls.append(batch.number)
        raise ConnectionError("down")

    result = run_batches([1, 2], always, chunk_size=1, retry=FAST)
    assert calls == [1, 1, 1, 2, 2, 2]
    assert [f.attempts for f in result.failures] == [3, 3]
    assert result.failures[0].error_type == "ConnectionError"
    assert result.failures[0].message == "down"
    assert result.failures[0].keys == (result.keys[0],)
    assert result.stats.retries == 4
    assert result.stats.failed == 2
    assert result.results == [None, None]


def test_terminal_errors_are_not_retried_and_retry_on_narrows() -> None:
    calls: list[str] = []

    def terminal(batch: Batch[int]) -> list[int]:
        calls.append("t")
        raise TerminalError("bad request")

    run_batches([1], terminal, retry=FAST)
    assert calls == ["t"]

    narrow = RetryPolicy(max_attempts=3, backoff=0, retry_on=(TimeoutError,))
    calls.clear()

    def value_error(batch: Batch[int]) -> list[int]:
        calls.append("v")
        raise ValueError("bug")

    run_batches([1], value_error, retry=narrow)
    assert calls == ["v"]

    calls.clear()

    def transient(batch: Batch[int]) -> list[int]:
        calls.append("x")
        raise TransientError("429")

    run_batches([1], transient, retry=narrow)
    assert calls == ["x", "x", "x"]  # TransientError is always retryable


def test_backoff_grows_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, backoff=1.0, multiplier=2.0, max_backoff=3.0, jitter=0)
    error = RuntimeError()
    assert [policy.delay_for(n, error) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 3.0, 3.0, None]
    assert policy.delay_for(1, TransientError("slow down", retry_after=7.5)) == 7.5
    jittered = RetryPolicy(backoff=1.0, jitter=0.5)
    rng = random.Random(1)
    delays = [jittered.delay_for(1, error, rng) for _ in range(50)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 1


def test_bad_retry_policies() -> None:
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError, match="backoff"):
        RetryPolicy(backoff=-1)
    with pytest.raises(ConfigurationError, match="jitter"):
        RetryPolicy(jitter=2)
    with pytest.raises(ConfigurationError, match="retry_on"):
        RetryPolicy(retry_on=("x",))  # type: ignore[arg-type]


def test_continue_reports_failures_and_keeps_partial_results() -> None:
    def fails_on_two(batch: Batch[int]) -> list[int]:
        if batch.number == 2:
            raise RuntimeError("boom")
        return list(batch.items)

    result = run_batches(range(6), fails_on_two, chunk_size=2, retry=NO_RETRY)
    assert result.results == [0, 1, None, None, 4, 5]
    assert not result.ok
    assert result.stats.succeeded == 4
    assert result.stats.failed == 2
    assert result.failed_keys == [result.keys[2], result.keys[3]]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_stop_starts_no_new_batch_and_carries_partial_result(concurrency: int) -> None:
    started: list[int] = []

    def fails_on_two(batch: Batch[int]) -> list[int]:
        started.append(batch.number)
        if batch.number == 2:
            raise RuntimeError("boom")
        time.sleep(0.01)
        return list(batch.items)

    with pytest.raises(BatchRunError) as caught:
        run_batches(
            range(100),
            fails_on_two,
            chunk_size=2,
            retry=NO_RETRY,
            on_error="stop",
            max_concurrency=concurrency,
        )
    partial = caught.value.result
    assert partial is not None
    assert partial.results[:2] == [0, 1]
    assert partial.results[2:4] == [None, None]
    assert len(partial.results) == 100
    assert partial.failures[0].batch_number == 2
    assert "boom" in str(caught.value)
    assert "resume" in str(caught.value)
    assert max(started) <= 2 + concurrency  # nothing new after the failure was seen


def test_hooks_receive_immutable_progress() -> None:
    events: list[tuple[str, BatchProgress, Any]] = []

    def fn(batch: Batch[int]) -> list[int]:
        if batch.number == 2:
            raise RuntimeError("nope")
        return list(batch.items)

    run_batches(
        range(5),
        fn,
        chunk_size=2,
        run_id="hooks",
        retry=NO_RETRY,
        on_batch_start=lambda p: events.append(("start", p, None)),
        on_batch_complete=lambda p, o: events.append(("complete", p, o)),
        on_batch_error=lambda p, e: events.append(("error", p, e)),
    )
    kinds = [(kind, p.batch_number) for kind, p, _ in events]
    assert kinds == [
        ("start", 1),
        ("complete", 1),
        ("start", 2),
        ("error", 2),
        ("start", 3),
        ("complete", 3),
    ]
    first_start = events[0][1]
    assert first_start.run_id == "hooks"
    assert first_start.total_batches == 3
    assert first_start.batch_size == 2
    assert first_start.completed_items == 0
    assert first_start.total_items == 5
    assert first_start.percentage == 0.0
    assert first_start.is_first
    assert not first_start.is_last
    assert first_start.attempt == 1
    last_complete = events[-1][1]
    assert last_complete.is_last
    assert last_complete.completed_items == 5
    assert last_complete.percentage == 100.0
    assert last_complete.batch_size == 1
    assert isinstance(events[-1][2], BatchOutcome)
    assert isinstance(events[3][2], RuntimeError)
    with pytest.raises(AttributeError):
        first_start.batch_number = 9  # type: ignore[misc]


def test_complete_hook_fires_after_commit() -> None:
    from batchline import MemoryStateStore

    store = MemoryStateStore()
    seen: list[int] = []

    def check(progress: BatchProgress, outcome: BatchOutcome[int, Any]) -> None:
        committed = store.lookup("c", list(outcome.batch.keys))
        seen.append(len(committed))

    run_batches(
        range(4),
        lambda b: list(b.items),
        chunk_size=2,
        store=store,
        run_id="c",
        on_batch_complete=check,
    )
    assert seen == [2, 2]


def test_hook_exceptions_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("hook bug")

    with caplog.at_level(logging.ERROR, logger="batchline"):
        result = run_batches(
            range(4),
            lambda b: list(b.items),
            chunk_size=2,
            on_batch_start=broken,
            on_batch_complete=broken,
        )
    assert result.ok
    assert result.results == [0, 1, 2, 3]
    assert "hook bug" in caplog.text
    assert "on_batch_start" in caplog.text


def test_retry_attempts_fire_start_hook_with_attempt_number() -> None:
    attempts: list[int] = []
    state = {"n": 0}

    def twice(batch: Batch[int]) -> list[int]:
        state["n"] += 1
        if state["n"] < 3:
            raise TimeoutError
        return list(batch.items)

    run_batches([1], twice, retry=FAST, on_batch_start=lambda p: attempts.append(p.attempt))
    assert attempts == [1, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"chunk_size": 0}, "`chunk_size` is 0"),
        ({"chunk_size": -5}, "`chunk_size` is -5"),
        ({"chunk_size": 2.5}, "`chunk_size` is 2.5"),
        ({"chunk_size": "10"}, "`chunk_size` is '10'"),
        ({"chunk_size": True}, "`chunk_size` is True"),
        ({"max_concurrency": 0}, "`max_concurrency` is 0"),
        ({"on_error": "ignore"}, "`on_error` is 'ignore'"),
        ({"duplicates": "drop"}, "`duplicates` is 'drop'"),
        ({"retry": 3}, "`retry` is 3"),
        ({"run_id": ""}, "`run_id`"),
        ({"store": "runs.db"}, "`store`"),
        ({"on_batch_start": 5}, "`on_batch_start`"),
    ],
)
def test_bad_arguments_are_value_errors_that_explain(kwargs: dict[str, Any], needle: str) -> None:
    for runner in (run_batches, stream_batches):
        with pytest.raises(ConfigurationError) as caught:
            runner([1, 2], lambda b: list(b.items), **kwargs)
        assert needle in str(caught.value)
        assert "expected" in str(caught.value)
        assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("items", "needle"),
    [
        (5, "not iterable"),
        (None, "not iterable"),
        ("abc", "is a str"),
        ({"a": 1}, "is a mapping"),
    ],
)
def test_bad_items(items: Any, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        run_batches(items, lambda b: list(b.items))


def test_not_callable_function() -> None:
    with pytest.raises(ConfigurationError, match="batch function"):
        run_batches([1], "fn")  # type: ignore[arg-type]


def test_batch_error_type_is_terminal() -> None:
    assert issubclass(BatchResultError, TerminalError)


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    run_batches(range(10), lambda b: list(b.items), chunk_size=5)
    assert capsys.readouterr().err == ""  # not a terminal: silent
    run_batches(range(10), lambda b: list(b.items), chunk_size=5, progress=True, run_id="bar")
    err = capsys.readouterr().err
    assert "bar" in err
    assert "10/10" in err


def test_retry_call_drives_the_policy_for_single_items() -> None:
    import threading

    from batchline.engine.retry import retry_call

    calls: list[int] = []

    def twice_then_ok() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "ok"

    waits: list[float] = []
    done = retry_call(twice_then_ok, FAST, on_retry=lambda n, e, d: waits.append(d))
    assert (done.value, done.error, done.attempts) == ("ok", None, 3)
    assert len(waits) == 2
    failed = retry_call(lambda: 1 / 0, FAST)
    assert isinstance(failed.error, ZeroDivisionError)
    assert failed.attempts == 3
    terminal = retry_call(lambda: (_ for _ in ()).throw(TerminalError("no")), FAST)
    assert terminal.attempts == 1
    stop = threading.Event()
    stop.set()
    assert (
        retry_call(lambda: 1 / 0, RetryPolicy(max_attempts=5, backoff=10), stop=stop).attempts == 1
    )

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retry_call(interrupted, FAST)
