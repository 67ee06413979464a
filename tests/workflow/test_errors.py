"""Invalid workflows: every problem at once, with file:line, exit 2, nothing run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchline.workflow import WorkflowError, load_workflow


def problems(path: Path) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert isinstance(caught.value, ValueError)
    return caught.value.problems


def test_yaml_syntax_error_has_file_line_and_column(write: Any) -> None:
    path = write("name: x\nsteps:\n  - name: a\n    task: echo\n   bad: [\n")
    (problem,) = problems(path)
    assert f"{path}:" in problem
    assert "YAML syntax error" in problem
    line_col = problem.split(f"{path}:", 1)[1].split(":")[:2]
    assert all(part.isdigit() for part in line_col)


def test_schema_problems_are_all_reported_with_lines(write: Any) -> None:
    path = write(
        """name: demo
steps:
  - name: one
    task: echo
    inptus: {message: hi}
  - name: one
    task: shel
  - task: echo
  - name: four
    task: echo
    on_error: {action: explode}
setings: {max_concurrency: 2}
"""
    )
    found = problems(path)
    text = "\n".join(found)
    assert "unknown key `inptus`" in text
    assert "Did you mean `inputs`?" in text
    assert f"{path}:5" in text
    assert "duplicate step name `one`" in text
    assert "unknown task type `shel`" in text
    assert "Did you mean `shell`?" in text
    assert "missing the required key `name`" in text
    assert "on_error.action" in text
    assert "unknown key `setings`" in text
    assert "Did you mean `settings`?" in text
    assert len(found) >= 6


def test_wrong_types_and_missing_top_level_keys(write: Any) -> None:
    text = "\n".join(problems(write("description: no name\nsettings: {max_concurrency: many}\n")))
    assert "missing the required key `name`" in text
    assert "missing the required key `steps`" in text
    assert "max_concurrency" in text
    assert "'many'" in text


def test_batch_step_shape_is_checked(write: Any) -> None:
    text = "\n".join(
        problems(
            write(
                "name: b\nsteps:\n  - name: b\n    task: batch\n"
                "    inputs:\n      task: {tsk: echo}\n"
            )
        )
    )
    assert "needs `inputs.task`" in text
    assert "needs `inputs.items`" in text


def test_cli_exits_2_before_running_anything(write: Any, cli: Any, tmp_path: Path) -> None:
    write(
        "name: x\nsteps:\n  - name: a\n    task: shell\n    inputs: {command: touch ran}\n"
        "  - name: a\n    task: echo\n"
    )
    done = cli("run", "wf.yaml")
    assert done.returncode == 2
    assert "duplicate step name" in done.stderr
    assert not (tmp_path / "ran").exists()


def test_validate_finds_unknown_steps_and_undeclared_args(write: Any, cli: Any) -> None:
    write(
        """name: refs
params:
  listing: {type: string}
steps:
  - name: first
    task: echo
    inputs: {message: "{{ steps.second.result }} {{ args.lsting }} {{ args.opt | default(1) }}"}
  - name: second
    task: echo
    inputs: {message: "{{ steps.frist.result }}"}
"""
    )
    done = cli("validate", "wf.yaml")
    assert done.returncode == 2
    assert "`steps.second` runs later" in done.stderr
    assert "`args.lsting` is not a declared param. Did you mean `listing`?" in done.stderr
    assert "`steps.frist` is not a step. Did you mean `first`?" in done.stderr
    assert "args.opt" not in done.stderr  # it has a default: allowed
    assert "wf.yaml:7" in done.stderr


def test_param_errors_name_the_param(write: Any, cli: Any) -> None:
    write(
        """name: p
params:
  count: {type: integer, required: true}
  mode: {type: string, choices: [fast, slow], default: fast}
  on: {type: boolean, default: false}
steps:
  - {name: a, task: echo, inputs: {message: "{{ args.count }}"}}
"""
    )
    bad = cli("run", "wf.yaml", "count=many")
    assert bad.returncode == 2
    assert "param `count` is 'many', which is not an integer" in bad.stderr
    missing = cli("run", "wf.yaml")
    assert "param `count` is required" in missing.stderr
    choice = cli("run", "wf.yaml", "count=1", "mode=medium")
    assert "expected one of ['fast', 'slow']" in choice.stderr
    boolean = cli("run", "wf.yaml", "count=1", "on=maybe")
    assert "not a boolean" in boolean.stderr
    ok = cli("run", "wf.yaml", "count=3", "on=yes", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert '"result": 3' in ok.stdout
