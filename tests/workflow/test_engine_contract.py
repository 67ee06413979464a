"""The workflow front door on the engine's contract: per-item outcomes and the run session."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import batchline.state.lease as lease_module
import batchline.state.sqlite as sqlite_module
from batchline import RunActiveError, SQLiteStateStore
from batchline.engine import content_keys
from batchline.workflow import TaskConfig, WorkflowRunner, load_workflow, register_task


@register_task("contract_value")
def _value_task(config: TaskConfig) -> Any:
    """The item back, except item 2: an object that is not JSON."""
    item = config.inputs["item"]
    return object() if item == 2 else {"item": item}


def test_unserialisable_result_fails_only_its_item(tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        """name: objects
settings: {workspace: ws}
steps:
  - name: values
    task: batch
    on_error: {action: continue}
    inputs:
      items: [1, 2, 3, 4]
      chunk_size: 4
      task: {task: contract_value, inputs: {item: "{{ batch.item }}"}}
""",
        encoding="utf-8",
    )
    runner = WorkflowRunner(load_workflow(workflow), base_dir=tmp_path, progress=False)
    result = runner.run()
    step = result.steps["values"]
    assert step.status == "failed"  # an item failed: the step says so
    assert step.result["results"] == [{"item": 1}, None, {"item": 3}, {"item": 4}]
    assert step.result["stats"]["processed"] == 3
    assert step.result["stats"]["failed"] == 1
    assert list(step.result["failed"]) == ["1"]  # keyed by position
    assert "not JSON-serialisable" in step.result["failed"]["1"]["error"]

    store = SQLiteStateStore(tmp_path / "ws" / "state.db")
    try:
        records = list(store.iter_items(f"{result.run_id}/values"))
    finally:
        store.close()
    # Stored under keys that follow the items (their content), at their input positions.
    values = [1, 2, 3, 4]
    assert [(r.key, r.position, r.status) for r in records] == [
        (key, position, status)
        for position, (key, status) in enumerate(
            zip(content_keys(values), ["done", "failed", "done", "done"], strict=True)
        )
    ]
    assert records[1].error_type == "BatchResultError"


def test_a_step_longer_than_the_lease_ttl_keeps_its_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl = 1.0
    seen: dict[str, Any] = {}

    @register_task("contract_slow_probe")
    def probe(config: TaskConfig) -> str:
        time.sleep(ttl * 3.5)  # far longer than the lease TTL
        # Another host now tries to take the run over: it may only when the holder's
        # heartbeat has been silent for longer than the TTL.
        with monkeypatch.context() as patch:
            patch.setattr(lease_module, "host_name", lambda: "elsewhere")
            patch.setattr(sqlite_module, "host_name", lambda: "elsewhere")
            other = SQLiteStateStore(tmp_path / "ws" / "state.db", lease_ttl=ttl)
            try:
                other.acquire(seen["run_id"])
            except RunActiveError as exc:
                seen["refused"] = str(exc)
            else:
                seen["taken_over"] = True
            finally:
                other.close()
        return "done"

    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        """name: slow
settings: {workspace: ws}
steps:
  - name: long
    task: contract_slow_probe
  - name: after
    task: echo
    inputs: {value: "{{ steps.long.result }}"}
""",
        encoding="utf-8",
    )
    runner = WorkflowRunner(
        load_workflow(workflow), base_dir=tmp_path, lease_ttl=ttl, progress=False
    )
    seen["run_id"] = runner.run_id
    result = runner.run()
    assert "taken_over" not in seen
    assert "heartbeat" in seen["refused"]
    assert result.status == "completed", result.message
    assert result.steps["after"].result == "done"
