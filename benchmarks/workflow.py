"""Workflow overhead: a 10,000-item batch of `echo` tasks with the SQLite store, and its resume."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from batchline.workflow import TaskConfig, WorkflowRunner, load_workflow, register_task

from .common import Row

N = 10_000
_calls = {"n": 0, "seconds": 0.0, "fail": -1}


@register_task("bench.echo")
def _timed_echo(config: TaskConfig) -> object:
    """`echo`, timing its own work so the bookkeeping around it can be measured."""
    start = time.perf_counter()
    value = config.inputs.get("value")
    if value == _calls["fail"]:
        raise RuntimeError("one item fails the first run")
    _calls["n"] += 1
    _calls["seconds"] += time.perf_counter() - start
    return value


WORKFLOW = f"""name: bench
settings: {{max_concurrency: 4}}
steps:
  - name: items
    task: python
    inputs: {{code: "result = list(range({N}))"}}
  - name: echo
    task: batch
    inputs:
      items: "{{{{ steps.items.result }}}}"
      chunk_size: 100
      task: {{task: bench.echo, inputs: {{value: "{{{{ batch.item }}}}"}}}}
"""


def run() -> list[Row]:
    """Bookkeeping per item, and the resume of a run whose items are (almost) all done."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(WORKFLOW, encoding="utf-8")
        spec = load_workflow(path)
        _calls.update(n=0, seconds=0.0, fail=N - 1)
        first = WorkflowRunner(spec, source=path, base_dir=tmp, workspace=Path(tmp) / "ws").run()
        step = first.steps["echo"]
        per_item = (step.duration - _calls["seconds"]) / N * 1e6
        _calls.update(fail=-1)
        start = time.perf_counter()
        again = WorkflowRunner(
            spec, source=path, base_dir=tmp, workspace=Path(tmp) / "ws", run_id=first.run_id
        ).run()
        resume = time.perf_counter() - start
        stats = again.steps["echo"].result["stats"]
        assert stats["resumed"] == N - 1, stats
    return [
        Row(
            "workflow: 10,000 echo items, SQLite",
            "bookkeeping per item (task work excluded)",
            f"{per_item:.0f} µs",
            "render + schedule + commit; target < 100 µs",
        ),
        Row(
            "workflow: resume, 9,999 of 10,000 items done",
            "whole `resume` run",
            f"{resume:.2f} s",
            "target < 1 s",
        ),
    ]
