"""The same engine behaviour on every backend: local threads and a real local Ray.

Ray runs batch functions in other processes, so these tests assert on results and
state, never on side effects in the test process.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from batchline import (
    Batch,
    BatchOutcome,
    BatchRunError,
    RetryPolicy,
    SQLiteStateStore,
    TerminalError,
    arun_batches,
    run_batches,
    stream_batches,
)
from batchline.backends import LocalBackend, RayBackend
from batchline.pipeline import Agent, Pipeline


@pytest.fixture(scope="module", params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "local":
        yield LocalBackend()
        return
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    chosen = RayBackend(num_cpus=2, init_options={"object_store_memory": 80 * 1024 * 1024})
    chosen.ensure_started()
    yield chosen
    ray.shutdown()


def double(batch: Batch[int]) -> list[int]:
    return [2 * item for item in batch.items]


def fail_batch_three(batch: Batch[int]) -> list[int]:
    if batch.number == 3:
        raise TerminalError("batch three is bad")
    return [2 * item for item in batch.items]


def flaky_by_attempt_file(batch: Batch[int]) -> list[int]:
    marker = Path(f"/tmp/bl-parity-{batch.items[0]}")
    if batch.number % 2 == 0 and not marker.exists():
        marker.write_text("failed once")
        raise TimeoutError("transient")
    return [2 * item for item in batch.items]


def keyed(batch: Batch[dict[str, int]]) -> dict[int, int]:
    return {item["id"]: item["id"] * 10 for item in batch.items}


def not_json(batch: Batch[int]) -> list[Any]:
    return [object() for _ in batch.items]


async def async_double(batch: Batch[int]) -> list[int]:
    await asyncio.sleep(0)
    return [2 * item for item in batch.items]


def test_results_in_input_order_with_concurrency(backend: Any) -> None:
    result = run_batches(range(200), double, chunk_size=7, max_concurrency=4, backend=backend)
    assert result.ok
    assert result.results == [2 * i for i in range(200)]


def test_retries_recover_transient_failures(backend: Any, tmp_path: Path) -> None:
    for old in Path("/tmp").glob("bl-parity-*"):
        old.unlink()
    result = run_batches(
        range(40),
        flaky_by_attempt_file,
        chunk_size=5,
        max_concurrency=2,
        retry=RetryPolicy(max_attempts=2, backoff=0),
        backend=backend,
    )
    assert result.ok
    assert result.stats.retries == 4
    assert result.results == [2 * i for i in range(40)]


def test_failures_are_reported_and_do_not_poison(backend: Any) -> None:
    result = run_batches(
        range(50), fail_batch_three, chunk_size=5, max_concurrency=2, backend=backend
    )
    assert [f.batch_number for f in result.failures] == [3]
    assert result.failures[0].error_type == "TerminalError"
    assert result.failures[0].attempts == 1  # terminal: not retried, on every backend
    assert result.results[10:15] == [None] * 5
    assert result.stats.succeeded == 45


def test_stop_raises_with_partial_results(backend: Any) -> None:
    with pytest.raises(BatchRunError) as caught:
        run_batches(range(50), fail_batch_three, chunk_size=5, on_error="stop", backend=backend)
    assert caught.value.result is not None
    assert caught.value.result.results[:10] == [2 * i for i in range(10)]


def test_dict_results_and_bad_results(backend: Any) -> None:
    items = [{"id": i} for i in range(12)]
    assert run_batches(items, keyed, key="id", chunk_size=5, backend=backend).results == [
        i * 10 for i in range(12)
    ]
    bad = run_batches(range(4), not_json, chunk_size=2, backend=backend)
    assert "not JSON-serialisable" in bad.failures[0].message


def test_streaming_hooks_and_resume(backend: Any, tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "parity.db")
    completed: list[int] = []
    first = run_batches(
        range(30),
        fail_batch_three,
        chunk_size=5,
        store=store,
        run_id="p",
        backend=backend,
        max_concurrency=2,
        on_batch_complete=lambda p, o: completed.append(p.batch_number),
    )
    assert sorted(completed) == [1, 2, 4, 5, 6]  # hooks run on the driver, on every backend
    assert first.stats.failed == 5
    outcomes: list[BatchOutcome[int, Any]] = list(
        stream_batches(
            range(30),
            double,
            chunk_size=5,
            store=store,
            run_id="p",
            backend=backend,
            max_concurrency=2,
        )
    )
    assert [o.batch.number for o in outcomes] == [1, 2, 3, 4, 5, 6]
    assert [o.resumed for o in outcomes] == [True, True, False, True, True, True]
    assert [r for o in outcomes for r in o.results] == [2 * i for i in range(30)]


def test_async_driver(backend: Any) -> None:
    result = asyncio.run(
        arun_batches(range(20), double, chunk_size=3, max_concurrency=3, backend=backend)
    )
    assert result.results == [2 * i for i in range(20)]
    local_async = asyncio.run(arun_batches(range(6), async_double, chunk_size=2))
    assert local_async.results == [0, 2, 4, 6, 8, 10]


def test_missing_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from batchline import ConfigurationError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(ConfigurationError, match=r'pip install "batchline\[ray\]"'):
        run_batches([1], double, backend="ray")
    with pytest.raises(ConfigurationError, match="`backend` is 'spark'"):
        run_batches([1], double, backend="spark")


class Enrich(Agent):
    """A module-level agent: picklable, so Ray can run it."""

    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        if context["_batch"]["number"] == 2:
            raise ValueError("enrichment down")
        return {"xs": [x * 3 for x in context["xs"]], "seen": [len(context["xs"])]}


def test_pipeline_scope_on_the_backend(backend: Any) -> None:
    Enrich.triggers_batching(chunk_size=4, over="xs")
    result = Pipeline(Enrich, backend=backend, max_concurrency=2).run({"xs": list(range(12))})
    assert result.context["xs"] == [0, 3, 6, 9, 24, 27, 30, 33]
    assert result.context["seen"] == [4, 4]
    (failure,) = result.failures
    assert (failure.batch_number, failure.agent, failure.error_type) == (2, "Enrich", "ValueError")


@pytest.mark.ray
def test_workflow_batch_step_on_ray(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import json
    import subprocess

    workflow = tmp_path / "wf.yaml"
    workflow.write_text("""name: on-ray
settings: {backend: ray}
steps:
  - name: squares
    task: batch
    inputs:
      items: "{{ range(20) | list }}"
      chunk_size: 5
      task: {task: python, inputs: {code: "result = batch['item'] ** 2"}}
""")
    done = subprocess.run(
        [sys.executable, "-m", "batchline.cli", "run", str(workflow), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["steps"]["squares"]["result"]
    assert result["results"] == [i * i for i in range(20)]
