"""Python `code:`: values never become code; they reach the code as variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchline.workflow import TaskError, WorkflowError, get_task, load_workflow
from batchline.workflow.pycode import code_problem
from batchline.workflow.tasks import TaskConfig

CANARY = "PWNED"
ATTACK = f"'; open('{CANARY}', 'w').write('x'); x = '"


def workflow(code: str) -> str:
    return (
        "name: py\nparams: {name: {default: x}}\nsteps:\n"
        "  - {name: load, task: echo, inputs: {value: [1]}}\n"
        "  - name: each\n    task: batch\n    inputs:\n"
        '      items: ["a"]\n'
        f"      task: {{task: python, inputs: {{code: {json.dumps(code)}}}}}\n"
    )


@pytest.mark.parametrize(
    "code",
    [
        "result = '{{ batch.item }}'",
        'result = "{{ args.name }}"',
        "result = {{ steps.load.result }}",
        "{% if true %}result = 1{% endif %}",
        'result = \'{{ batch.item | replace("\'", "") }}\'',
    ],
)
def test_templates_in_code_are_refused_before_anything_runs(write: Any, code: str) -> None:
    path = write(workflow(code))
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    message = str(caught.value)
    assert "wf.yaml:9:" in message  # the line of `code`
    assert "values never become code" in message
    assert "inputs" in message  # says how to pass values instead


def test_validate_and_run_refuse_templated_code(write: Any, cli: Any, tmp_path: Path) -> None:
    path = write(workflow("result = '{{ batch.item }}'"))
    for command in ("validate", "run"):
        done = cli(command, str(path))
        assert done.returncode == 2, done.stderr
        assert "wf.yaml:9:" in done.stderr
        assert "values never become code" in done.stderr
    assert not (tmp_path / ".batchline").exists()  # refused before anything ran


def test_the_hostile_item_arrives_as_a_string_variable(
    write: Any, cli: Any, tmp_path: Path
) -> None:
    (tmp_path / "items.json").write_text(json.dumps([ATTACK, "plain"]), encoding="utf-8")
    path = write(
        """
name: py
steps:
  - {name: load, task: file.read, inputs: {path: items.json, format: json}}
  - name: each
    task: batch
    inputs:
      items: "{{ steps.load.result }}"
      task:
        task: python
        inputs:
          text: "{{ batch.item }}"
          code: |
            result = [text, inputs["text"], batch["item"], len(context["steps"])]
"""
    )
    done = cli("run", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / CANARY).exists()
    results = json.loads(done.stdout)["steps"]["each"]["result"]["results"]
    assert results == [[ATTACK, ATTACK, ATTACK, 1], ["plain", "plain", "plain", 1]]


def test_the_task_itself_refuses_a_templated_code(tmp_path: Path) -> None:
    config = TaskConfig(
        name="s",
        type="python",
        inputs={"code": f"result = '{ATTACK}'"},
        workspace=tmp_path,
        base_dir=tmp_path,
        raw_inputs={"code": "result = '{{ batch.item }}'"},
    )
    with pytest.raises(TaskError, match=r"step `s`: `code` holds a template"):
        get_task("python")(config)
    assert not (tmp_path / CANARY).exists()


def test_static_code_and_raw_blocks_are_fine() -> None:
    assert code_problem("result = {'a': 1}") is None
    assert code_problem("result = f'{x}'") is None
    assert code_problem("{% raw %}result = '{{ literal }}'{% endraw %}") is None
    assert code_problem("result = '{{ x }}'") is not None
    assert code_problem("{% set x = 1 %}result = 1") is not None
