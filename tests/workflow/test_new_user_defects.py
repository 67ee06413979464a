"""The defects a new user hit (issue #11), one test each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchline.workflow import TaskConfig, TaskError, WorkflowError, WorkflowRunner, get_task
from batchline.workflow.runner import load_workflow
from batchline.workflow.schema import RetrySpec


def run_file(path: Path, **params: Any) -> Any:
    spec = load_workflow(path)
    return WorkflowRunner(spec, source=path, base_dir=path.parent, params=params).run()


def problems_of(path: Path) -> str:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    return "\n".join(caught.value.problems)


# 1 -------------------------------------------------------------------------------------
def test_when_without_braces_is_an_expression(write: Any) -> None:
    path = write(
        """name: publish
params:
  publish: {type: boolean, default: false}
steps:
  - {name: build, task: echo, inputs: {message: built}}
  - {name: release, task: echo, when: "args.publish", inputs: {message: released}}
  - {name: note, task: echo, when: "not args.publish and steps.build.status == 'completed'",
     inputs: {message: noted}}
"""
    )
    off = run_file(path)
    assert off.steps["release"].status == "skipped"
    assert off.steps["note"].status == "completed"
    on = run_file(path, publish="true")
    assert on.steps["release"].status == "completed"
    assert on.steps["note"].status == "skipped"


# 2 -------------------------------------------------------------------------------------
def test_unknown_keys_in_batch_inputs_and_on_error_are_errors(write: Any) -> None:
    text = problems_of(
        write(
            """name: typos
steps:
  - name: each
    task: batch
    on_error: {action: continue, retry: {max_attempts: 2}, mesage: oops}
    inputs:
      items: [1, 2]
      chunk_sise: 5
      task:
        task: shell
        inputs: {command: "echo {{ batch.item }}", timout: 3}
"""
        )
    )
    assert "task `batch` has no input `chunk_sise`. Did you mean `chunk_size`?" in text
    assert "task `shell` has no input `timout`. Did you mean `timeout`?" in text
    assert "a batch step retries each item, not the step: move `retry` to `inputs.retry`" in text
    assert "unknown key `mesage` in step `each` `on_error`. Did you mean `message`?" in text


def test_batch_size_is_an_alias_not_a_second_value(write: Any, tmp_path: Path) -> None:
    path = write(
        """name: sizes
steps:
  - name: each
    task: batch
    inputs:
      items: [1, 2, 3]
      batch_size: 2
      max_workers: 1
      task: {task: echo, inputs: {value: "{{ batch.chunk_size }}"}}
"""
    )
    assert run_file(path).steps["each"].result["results"] == [2, 2, 2]
    both = write(path.read_text().replace("batch_size: 2", "batch_size: 2\n      chunk_size: 3"))
    failed = run_file(both)
    assert "`chunk_size` and `batch_size` are the same input" in str(failed.steps["each"].error)


def test_undeclared_cli_params_are_errors_unless_none_are_declared(write: Any, cli: Any) -> None:
    write(
        """name: p
params:
  chunk: {type: integer, default: 2}
steps: [{name: a, task: echo, inputs: {message: "{{ args.chunk }}"}}]
"""
    )
    done = cli("run", "wf.yaml", "chunks=3")
    assert done.returncode == 2
    assert "param `chunks` is not declared by the workflow. Did you mean `chunk`?" in done.stderr
    write(
        "name: q\nsteps: [{name: a, task: echo, inputs: {message: '{{ args.x }}'}}]\n", "free.yaml"
    )
    free = cli("run", "free.yaml", "x=1", "--format", "json")
    assert free.returncode == 0, free.stderr
    assert json.loads(free.stdout)["steps"]["a"]["result"] == "1"


# 3 -------------------------------------------------------------------------------------
def test_validate_parses_every_template(write: Any, cli: Any) -> None:
    write(
        """name: broken
steps:
  - name: fine
    task: echo
    inputs: {message: "{{ 1 + 1 }}"}
  - name: greet
    task: template
    inputs:
      template: |
        Hello
        {% if args.x %}
        {{ args.x | uper }}
        {% endif
  - name: say
    task: echo
    inputs: {message: "{{ steps.fine.result | default('x' }}"}
"""
    )
    done = cli("validate", "wf.yaml")
    assert done.returncode == 2
    assert "wf.yaml:13: step `greet`, `inputs.template`: `{% endif`: template syntax error" in (
        done.stderr
    )
    assert "wf.yaml:16: step `say`, `inputs.message`:" in done.stderr


# 4 -------------------------------------------------------------------------------------
def test_step_results_are_json_sets_become_lists(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        """name: results
steps:
  - {name: tags, task: python, inputs: {code: "result = {'b', 'a', 'c'}"}}
  - {name: pair, task: python, inputs: {code: "result = (1, {2})"}}
  - name: each
    task: batch
    inputs:
      items: [[2, 1], [3]]
      task: {task: python, inputs: {code: "result = set(batch.item)"}}
  - name: when
    task: python
    on_error: {action: continue}
    inputs: {code: "import datetime\\nresult = {'at': datetime.date(2024, 1, 2)}"}
"""
    )
    result = run_file(path)
    assert result.steps["tags"].result == ["a", "b", "c"]
    assert result.steps["each"].result["results"] == [[1, 2], [3]]
    assert result.steps["pair"].result == [1, [2]]
    error = result.steps["when"].error or ""
    assert "step `when` returned a date at `result.at`" in error
    assert "isoformat()" in error


# 5 -------------------------------------------------------------------------------------
def test_export_reports_the_attempts_an_item_took(write: Any, cli: Any, tmp_path: Path) -> None:
    write(
        """name: attempts
steps:
  - name: each
    task: batch
    inputs:
      items: [a, b]
      retry: {max_attempts: 3, delay: 0}
      task:
        task: shell
        inputs:
          command: >-
            n=$(cat {{ batch.item }}.count 2>/dev/null || echo 0); n=$((n+1));
            echo $n > {{ batch.item }}.count;
            [ "{{ batch.item }}" = b ] || [ $n -ge 3 ]
"""
    )
    done = cli("run", "wf.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    exported = cli("export", run_id, "each")
    # Rows are named by the items' positions (their keys follow the content).
    rows = {row["position"]: row for row in map(json.loads, exported.stdout.splitlines())}
    assert rows[0]["attempts"] == 3
    assert rows[1]["attempts"] == 1
    assert (tmp_path / "a.count").read_text().strip() == "3"


# 6 -------------------------------------------------------------------------------------
def test_a_skipped_steps_result_is_explained(write: Any) -> None:
    path = write(
        """name: skipped
steps:
  - {name: probe, task: shell, when: "false", inputs: {command: echo hi}}
  - {name: use, task: echo, inputs: {message: "{{ steps.probe.result.stdout }}"}}
"""
    )
    result = run_file(path)
    error = result.steps["use"].error or ""
    assert "step `probe` was skipped" in error
    assert "its result is None and has no `stdout`" in error


# 7 -------------------------------------------------------------------------------------
def test_message_missing_key_field_names_item_and_field(write: Any) -> None:
    path = write(
        """name: keys
steps:
  - name: each
    task: batch
    inputs:
      items: [{id: 1}, {name: two}]
      key: id
      task: {task: echo, inputs: {value: "{{ batch.item }}"}}
"""
    )
    error = run_file(path).steps["each"].error or ""
    assert "item 1 has no field `id` (key: id); its fields: name." in error


def test_message_retry_shapes_have_examples_and_no_pydantic_url(write: Any) -> None:
    text = problems_of(
        write(
            """name: shapes
steps:
  - name: each
    task: batch
    inputs:
      items: [1]
      retry: 3
      task: {task: echo, inputs: {value: 1}}
  - name: other
    task: echo
    on_error: {retry: {max_attempts: 0}}
    inputs: {value: 1}
"""
        )
    )
    assert "a batch's retry is a mapping (e.g. retry: {max_attempts: 3, delay: 0.5" in text
    assert "step `other`: `on_error.retry.max_attempts` is 0" in text
    assert "Expected e.g. max_attempts: 3" in text
    assert "pydantic" not in text
    assert "http" not in text


def test_message_bad_json_file_names_path_step_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text('{\n  "a": 1,\n  "b": oops\n}\n')
    config = TaskConfig(
        name="load",
        type="file.read",
        inputs={"path": "data.json", "format": "json"},
        workspace=tmp_path,
        base_dir=tmp_path,
    )
    with pytest.raises(TaskError) as caught:
        get_task("file.read")(config)
    assert f"step `load`: {tmp_path / 'data.json'}:3:8: not valid JSON" in str(caught.value)


def test_message_template_file_error_names_file_and_line(tmp_path: Path) -> None:
    template = tmp_path / "page.txt"
    template.write_text("line one\nline two\nvalue: {{ args.missing }}\nline four\n")
    config = TaskConfig(
        name="page",
        type="template",
        inputs={"template_file": "page.txt"},
        raw_inputs={"template_file": "page.txt"},
        workspace=tmp_path,
        base_dir=tmp_path,
        context={"args": {"present": 1}},
    )
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the message is what matters
        get_task("template")(config)
    message = str(caught.value)
    assert f"{template}:3 `value: {{{{ args.missing }}}}`" in message
    assert "Did you mean" in message or "available there: present" in message
    assert "line one" not in message
    assert "line four" not in message


def test_message_unknown_filter_is_not_a_syntax_error(write: Any) -> None:
    path = write(
        """name: filters
steps:
  - {name: shout, task: echo, inputs: {message: "{{ 'hi' | uper }}"}}
"""
    )
    error = run_file(path).steps["shout"].error or ""
    assert "unknown filter `uper`. Did you mean `upper`?" in error
    assert "syntax" not in error


def test_message_batch_failure_summary_names_the_item_key(write: Any) -> None:
    path = write(
        """name: summary
steps:
  - name: each
    task: batch
    inputs:
      items: [{id: a1}, {id: b2}]
      key: id
      task: {task: python, inputs: {code: "result = 1 / (batch.item['id'] != 'b2')"}}
"""
    )
    error = run_file(path).steps["each"].error or ""
    assert "1 of 2 items failed (first: item `b2`: ZeroDivisionError" in error


def test_message_steps_are_named_by_name(write: Any) -> None:
    text = problems_of(
        write(
            """name: names
steps:
  - {name: first, task: echo}
  - {name: second, task: echo, on_error: {action: explode}}
  - {name: third, task: echo, conditon: "{{ true }}"}
"""
        )
    )
    assert "step `second`: `on_error.action` is 'explode'" in text
    assert "unknown key `conditon` in step `third`. Did you mean `condition`?" in text
    assert "step 2" not in text
    assert "step 3" not in text


def test_message_closest_key_prefers_real_equivalents(write: Any) -> None:
    text = problems_of(
        write(
            """name: hints
params:
  tags: {type: list, items: {type: string}, options: [a, b]}
steps:
  - {name: a, task: echo, if: "{{ true }}"}
"""
        )
    )
    assert "unknown key `options` in `params.tags`. Did you mean `choices`?" in text
    assert "unknown key `if` in step `a`. Did you mean `when`?" in text
    assert "`items`" not in text  # a list's item type is a real key


def test_message_function_next_to_the_workflow_imports(tmp_path: Path) -> None:
    folder = tmp_path / "flow"
    folder.mkdir()
    (folder / "helpers_for_issue11.py").write_text("def double(n):\n    return n * 2\n")
    (folder / "wf.yaml").write_text(
        """name: fn
steps:
  - {name: twice, task: python, inputs: {function: "helpers_for_issue11:double", n: 21}}
  - {name: nope, task: python, on_error: continue,
     inputs: {function: "absent_module_issue11:f"}}
"""
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run(
        [sys.executable, "-m", "batchline.cli", "run", str(folder / "wf.yaml"), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    summary = json.loads(done.stdout)
    assert summary["steps"]["twice"]["result"] == 42
    error = summary["steps"]["nope"]["error"]
    assert "cannot import `absent_module_issue11`" in error
    assert f"next to the workflow file ({folder})" in error
    assert "PYTHONPATH" in error


# 8 -------------------------------------------------------------------------------------
def test_retry_delay_is_a_minimum() -> None:
    policy = RetrySpec(max_attempts=4, delay=1.0, backoff=2).policy()
    error = RuntimeError("x")
    assert [policy.delay_for(n, error) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, None]
    jittered = RetrySpec(max_attempts=2, delay=1.0, jitter=0.5).policy()
    assert all(0.5 <= (jittered.delay_for(1, error) or 0) <= 1.0 for _ in range(20))
    assert RetrySpec(delay=2, backoff="fixed").policy().delay_for(2, error) == 2.0


# 9 -------------------------------------------------------------------------------------
def test_runs_at_80_columns_keeps_run_ids_whole(write: Any, cli: Any, tmp_path: Path) -> None:
    write("name: a-rather-long-workflow-name-for-the-table\nsteps: [{name: a, task: echo}]\n")
    done = cli("run", "wf.yaml", "--format", "json")
    run_id = json.loads(done.stdout)["run_id"]
    env = {**os.environ, "COLUMNS": "80"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    table = subprocess.run(
        [sys.executable, "-m", "batchline.cli", "runs", "--workspace", ".batchline"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert table.returncode == 0, table.stderr
    assert run_id in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80


# 10 ------------------------------------------------------------------------------------
def test_batch_results_stay_aligned_with_none_for_failed_items(write: Any) -> None:
    path = write(
        """name: aligned
steps:
  - name: each
    task: batch
    on_error: continue
    inputs:
      items: [1, 0, 2]
      task: {task: python, inputs: {code: "result = 10 // batch.item"}}
"""
    )
    result = run_file(path).steps["each"].result
    assert result["results"] == [10, None, 5]
    assert result["processed"] == [1, 2]
    assert list(result["failed"]) == ["1"]
