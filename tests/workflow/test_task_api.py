"""The planned task API, exactly: TaskConfig, create_task_handler, BatchContext, BatchState."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from batchline.workflow import (
    BatchContext,
    BatchState,
    TaskConfig,
    TaskError,
    WorkflowRunner,
    create_task_handler,
    get_task,
    register_task,
)
from batchline.workflow.runner import load_workflow

CONTEXT: dict[str, Any] = {
    "args": {"name": "Ada", "n": 3},
    "env": {"HOME": "/home/ada"},
    "steps": {"first": {"result": 1}},
    "run_number": 4,
    "workflow_name": "demo",
    "engine": "the-engine",
}
STEP = {"name": "greet", "task": "hello", "inputs": {"who": "{{ args.name }}", "n": 2}}


def test_task_config_positional_form(tmp_path: Path) -> None:
    config = TaskConfig(STEP, CONTEXT, tmp_path)
    assert (config.name, config.type, config.workspace) == ("greet", "hello", tmp_path)
    assert config.inputs == {"who": "{{ args.name }}", "n": 2}
    assert config.process_inputs() == {"who": "Ada", "n": 2}
    assert config.get_variable("name", "args") == "Ada"
    assert config.get_variable("HOME", namespace="env") == "/home/ada"
    assert config.get_variable("run_number") == 4
    assert config.get_variable("missing") is None
    assert config.get_variable("missing", "args") is None
    assert config.get_variable("x", "nowhere") is None
    assert config.get_available_variables() == {
        "args": ["name", "n"],
        "env": ["HOME"],
        "steps": ["first"],
        "root": ["run_number", "workflow_name", "engine"],
    }


def test_task_config_keyword_form_coexists(tmp_path: Path) -> None:
    config = TaskConfig(
        name="s", type="echo", inputs={"message": "hi"}, workspace=tmp_path, context=CONTEXT
    )
    assert (config.name, config.type, config.inputs) == ("s", "echo", {"message": "hi"})
    assert get_task("echo")(config) == "hi"
    assert config.get_variable("n", "args") == 3


def test_create_task_handler_takes_step_context_workspace(tmp_path: Path) -> None:
    seen: list[TaskConfig] = []

    def func(config: TaskConfig) -> str:
        seen.append(config)
        return f"{config.name}:{config.process_inputs()['who']}"

    handler = create_task_handler(func)
    assert handler(STEP, CONTEXT, tmp_path) == "greet:Ada"
    assert handler(step=STEP, context=CONTEXT, workspace=tmp_path) == "greet:Ada"
    assert handler(TaskConfig(STEP, CONTEXT, tmp_path)) == "greet:Ada"
    assert seen[0].workspace == tmp_path
    with pytest.raises(TypeError):
        create_task_handler("not callable")  # type: ignore[arg-type]


def test_register_task_plain_functions(tmp_path: Path) -> None:
    @register_task()
    def api_multiply(value: int, multiplier: int = 2) -> int:
        return value * multiplier

    @register_task("api_join")
    def join(*strings: str, separator: str = " ") -> str:
        return separator.join(strings)

    @register_task()
    def api_with_config(key: str, config: TaskConfig, context: dict[str, Any]) -> str:
        return f"{key}/{config.name}/{context['workflow_name']}"

    def make(task: str, **inputs: Any) -> TaskConfig:
        return TaskConfig({"name": "s", "task": task, "inputs": inputs}, CONTEXT, tmp_path)

    assert get_task("api_multiply")(make("api_multiply", value=4)) == 8
    assert get_task("api_multiply")(make("api_multiply", value=4, multiplier=5)) == 20
    assert get_task("api_join")(make("api_join", strings=["a", "b"], separator="-")) == "a-b"
    assert get_task("api_with_config")(make("api_with_config", key="k")) == "k/s/demo"
    with pytest.raises(TaskError, match=r"needs the input `value`"):
        get_task("api_multiply")(make("api_multiply"))
    with pytest.raises(TaskError, match=r"has no input `multipler`.*Did you mean `multiplier`"):
        get_task("api_multiply")(make("api_multiply", value=1, multipler=3))


def test_batch_context_from_a_task_config(tmp_path: Path) -> None:
    step = {
        "name": "each",
        "task": "batch",
        "inputs": {"items": [1, 2], "retry": {"max_attempts": 2}},
    }
    context = BatchContext(TaskConfig(step, CONTEXT, tmp_path))
    assert (context.name, context.engine, context.workspace) == ("each", "the-engine", tmp_path)
    assert context.retry_config == {"max_attempts": 2}
    item = context.create_item_context("x", 1)
    assert item["args"] == CONTEXT["args"]
    assert item["env"] == CONTEXT["env"]
    assert item["steps"] == CONTEXT["steps"]
    assert {k: item["batch"][k] for k in ("item", "index", "name")} == {
        "item": "x",
        "index": 1,
        "name": "each",
    }
    error = context.get_error_context(ValueError("bad"))
    assert error["error"] == "bad"
    assert error["available_variables"]["args"] == ["name", "n"]
    assert error["available_variables"]["batch"] == ["item", "index", "name"]
    assert error["namespaces"] == list(CONTEXT)
    assert context.get_available_variables()["steps"] == ["first"]
    assert BatchContext(TaskConfig({"name": "e", "task": "batch"}, {}, tmp_path)).retry_config == {}


def test_batch_context_takes_anything_shaped_like_a_task_config() -> None:
    class Config:  # a stand-in, as yaml-workflow's own tests use
        name = "my_batch"
        workspace = "/fake/workspace"
        inputs: ClassVar[dict[str, Any]] = {"retry": {"attempts": 3}}
        context: ClassVar[dict[str, Any]] = {"args": {"a": 1}, "env": {}, "steps": {}, "engine": 7}

        def get_variable(self, name: str, namespace: str | None = None) -> Any:
            return self.context.get(name)

    context = BatchContext(Config())
    assert (context.name, context.workspace, context.engine) == ("my_batch", "/fake/workspace", 7)
    assert context.retry_config == {"attempts": 3}
    assert context._context == Config.context
    assert context.create_item_context("x", 0)["args"] == {"a": 1}
    assert sorted(context.get_error_context(KeyError("k"))["namespaces"]) == [
        "args",
        "engine",
        "env",
        "steps",
    ]


def test_batch_state_is_a_view_of_the_state_store(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        """name: states
params:
  bad: {type: integer, default: 3}
steps:
  - name: list
    task: echo
    inputs: {value: [1, 2, 3, 4]}
  - name: each
    task: batch
    on_error: {action: continue}
    inputs:
      items: "{{ steps.list.result }}"
      chunk_size: 2
      retry: {max_attempts: 2, delay: 0}
      task:
        task: python
        inputs:
          code: |
            if batch.item == args.bad:
                raise ValueError("three is bad")
            result = batch.item * 10
"""
    )
    spec = load_workflow(tmp_path / "wf.yaml")
    result = WorkflowRunner(spec, source=tmp_path / "wf.yaml", base_dir=tmp_path).run()
    assert result.exit_code == 0
    workspace = tmp_path / ".batchline"
    state = BatchState(workspace, f"{result.run_id}/each")
    assert state.state["processed"] == [0, 1, 3]  # item keys, input order
    assert state.state["results"] == [10, 20, 40]
    assert state.state["failed"]["2"]["attempts"] == 2
    assert "three is bad" in state.state["failed"]["2"]["error"]
    assert state.state["template_errors"] == {}
    assert state.state["namespaces"]["args"] == {"bad": 3}
    assert state.state["namespaces"]["steps"]["list"]["result"] == [1, 2, 3, 4]
    assert set(state.state["namespaces"]) == {"args", "env", "steps", "batch"}
    assert state.state["stats"] == {
        "total": 4,
        "processed": 3,
        "failed": 1,
        "template_failures": 0,
        "retried": 1,
        "success_rate": 75.0,
    }
    again = BatchState.load(workspace, "each")  # a step name: its latest run
    assert again.to_dict()["stats"] == state.stats
    assert again.run_id == f"{result.run_id}/each"


def test_batch_state_records_through_the_engine_and_reloads(tmp_path: Path) -> None:
    fresh = BatchState(tmp_path, "test_batch")
    assert fresh.state["processed"] == []
    assert fresh.state["failed"] == {}
    assert set(fresh.state["namespaces"]) == {"args", "env", "steps", "batch"}
    assert fresh.state["stats"]["total"] == 0
    assert not (tmp_path / "state.db").exists()  # reading writes nothing

    fresh.mark_processed("a", {"value": 1})
    fresh.mark_failed("b", "b broke")
    fresh.mark_template_error("c", "`{{ x }}` is undefined")
    fresh.update_namespace("args", {"mode": "fast"})
    fresh.save()
    loaded = BatchState.load(tmp_path, "test_batch")
    assert loaded.state["processed"] == ["a"]
    assert loaded.state["results"] == [{"value": 1}]
    assert loaded.state["failed"]["b"]["error"] == "b broke"
    assert loaded.state["template_errors"] == {"c": "`{{ x }}` is undefined"}
    assert loaded.stats["total"] == 3
    assert loaded.stats["failed"] == 2
    assert loaded.stats["template_failures"] == 1
    assert round(loaded.stats["success_rate"], 2) == 33.33

    loaded.mark_processed("b", {"value": 2})  # a failed item may succeed later
    loaded.save()
    again = BatchState.load(tmp_path, "test_batch")
    assert again.state["processed"] == ["a", "b"]
    assert again.get_stats()["failed"] == 1
    again.reset()
    assert BatchState.load(tmp_path, "test_batch").state["processed"] == []


def test_earlier_positional_form_in_field_order_still_works(tmp_path: Path) -> None:
    config = TaskConfig("s", "echo", {"value": 1}, tmp_path, tmp_path / "base")
    assert (config.name, config.type, config.inputs) == ("s", "echo", {"value": 1})
    assert config.workspace == tmp_path
    assert config.base_dir == tmp_path / "base"
    assert config.get_variable("x") is None
    with pytest.raises(TypeError, match="3 positional"):
        TaskConfig({"name": "s"}, {}, tmp_path, tmp_path)
