"""yaml-workflow's dialect runs unchanged on `batchline run`.

The workflows in tests/cases/yaml_workflow/ are written in yaml-workflow's dialect
(v0.9.6). The expected files and printed lines below are what yaml-workflow itself
writes and prints for them (checked side by side); the deliberate differences are in
docs/workflows.md, "Coming from yaml-workflow".
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CASES = Path(__file__).resolve().parent.parent / "cases" / "yaml_workflow"


def run(
    folder: Path, *args: str, workflow: str = "workflow.yaml"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchline.cli", "run", workflow, *args],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
        check=False,
    )


def case(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(CASES / name, folder)
    return folder


def summary(folder: Path, *args: str, workflow: str = "workflow.yaml") -> dict[str, Any]:
    done = run(folder, *args, "--format", "json", workflow=workflow)
    assert done.stdout, done.stderr
    data: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{\n") :])
    return data


def test_builtins_template_output_file_and_shell(tmp_path: Path) -> None:
    folder = case(tmp_path, "greeting")
    data = summary(folder)
    assert data["exit_code"] == 0
    assert (folder / "card.txt").read_text() == "Dear Ada,\nthis is run 1 of Greeting Card.\n"
    assert data["steps"]["write_card"]["result"]["path"] == str(folder / "card.txt")
    stdout = data["steps"]["show_card"]["result"]["stdout"]
    assert stdout.splitlines() == [
        "workflow=Greeting Card run=1",
        "has timestamp",
        "workspace is the working folder",
        "Dear Ada,",
        "this is run 1 of Greeting Card.",
    ]
    assert data["steps"]["show_card"]["result"]["return_code"] == 0
    # run_number counts this workflow's runs in the workspace.
    again = summary(folder, "--who=Grace")  # yaml-workflow's --name=value form
    assert "run 2 of Greeting Card" in again["steps"]["show_card"]["result"]["stdout"]
    assert (folder / "card.txt").read_text().startswith("Dear Grace,")
    short = run(folder, "who=A")
    assert short.returncode == 2
    assert "param `who` is 'A' (1 characters); expected at least 2 (minLength)" in short.stderr


def test_conditions_file_tasks_and_print_message(tmp_path: Path) -> None:
    folder = case(tmp_path, "validation")
    done = run(folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Greeted World: see out/greeting.json and out/greetings.yaml\n\n")
    out = folder / "out"
    assert json.loads((out / "greeting.json").read_text()) == {
        "name": "World",
        "message": "Hello, World!",
    }
    assert (out / "greetings.yaml").read_text() == "en: Hello, World!\nfr: Bonjour, World!\n"
    assert not (out / "problem.txt").exists()
    assert "report_problem (write_file): skipped (condition rendered 'False'" in done.stderr

    failing = run(folder, "name=X")
    assert failing.returncode == 0, failing.stderr
    assert failing.stdout.startswith("Could not greet X: see out/problem.txt\n")
    assert (out / "problem.txt").read_text() == "Name X failed the check"


def test_python_code_sees_context_args_and_inputs(tmp_path: Path) -> None:
    folder = case(tmp_path, "python_steps")
    data = summary(folder)
    assert data["exit_code"] == 0
    assert json.loads((folder / "report.json").read_text()) == {"how": "sum", "value": 6}
    assert data["steps"]["validate"]["result"] == {"numbers": [1, 2, 3], "operation": "sum"}
    # A condition without braces is text, never "True": the step is skipped, as there.
    assert data["steps"]["never_runs"]["status"] == "skipped"
    printed = run(folder, "numbers=[4, 5]", "operation=max")
    assert printed.stdout.splitlines()[:2] == ["computed max 5", "max of 4, 5 is 5"]
    wrong = run(folder, "operation=avg", "numbers=1,x")
    assert wrong.returncode == 2
    assert "param `operation` is 'avg'; expected one of ['sum', 'max']" in wrong.stderr
    assert "param `numbers` is '1,x', which is not a list" in wrong.stderr
    warned = subprocess.run(
        [sys.executable, "-m", "batchline.cli", "validate", "workflow.yaml"],
        capture_output=True,
        text=True,
        cwd=folder,
        check=False,
    )
    assert warned.returncode == 0, warned.stderr
    assert "has no braces, so it is text, never True" in warned.stderr


def test_branches_by_condition(tmp_path: Path) -> None:
    folder = case(tmp_path, "branching")
    done = run(folder, "format=csv")
    assert done.returncode == 0, done.stderr
    assert (folder / "branch.txt").read_text() == "csv branch\n"
    assert done.stdout.splitlines()[0] == "format=csv ran=handle_csv"


def test_flows_retry_next_continue_and_error_variable(tmp_path: Path) -> None:
    folder = case(tmp_path, "flows_and_errors")
    ok = summary(folder)
    assert ok["exit_code"] == 0
    assert (folder / "out" / "attempts.txt").read_text() == "attempt\n"
    assert (folder / "out" / "finish.txt").read_text() == "finished after flaky ok"
    assert ok["steps"]["optional"]["status"] == "failed"
    assert ok["steps"]["optional"]["error"] == "optional failed, going on"
    assert "on_failure" not in ok["steps"]  # not in the default flow

    shutil.rmtree(folder / "out")
    failed = summary(folder, "mode=fail")
    assert failed["exit_code"] == 0  # the failure was handled by on_error.next
    assert (folder / "out" / "attempts.txt").read_text() == "attempt\n" * 3  # 1 + retry: 2
    assert (folder / "out" / "failure.txt").read_text() == (
        "step flaky failed: flaky failed on purpose"
    )
    assert not (folder / "out" / "finish.txt").exists()
    assert failed["steps"]["flaky"]["error"] == "Flaky step failed: flaky failed on purpose"
    assert list(failed["steps"]) == ["setup", "flaky", "on_failure", "cleanup"]

    quick = summary(folder, "--flow", "quick")
    assert list(quick["steps"]) == ["setup", "cleanup"]
    unknown = run(folder, "--flow", "quik")
    assert unknown.returncode == 2
    assert "flow `quik` is not defined. Did you mean `quick`?" in unknown.stderr


def test_plain_function_custom_tasks(tmp_path: Path) -> None:
    folder = case(tmp_path, "custom_tasks")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(elsewhere, workflow=str(folder / "workflow.yaml"))  # no PYTHONPATH needed
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "42 / Special greeting for Grace! / info: step describe of Custom Tasks"
    )


def test_batch_with_arg_name_and_max_workers(tmp_path: Path) -> None:
    folder = case(tmp_path, "batch_items")
    done = run(folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "results=[1, 4, 9, 16, 25] processed=[1, 2, 3, 4, 5] rate=100.0"
    )


def test_include_is_relative_to_the_workflow_file(tmp_path: Path) -> None:
    folder = case(tmp_path, "includes")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(elsewhere, workflow=str(folder / "workflow.yaml"))
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "letter.txt").read_text() == "Hello reader\n-- sent by Includes\n"


@pytest.mark.parametrize(
    ("args", "ran"),
    [
        (("--start-from", "process"), ["process", "final"]),
        (("--skip-steps", "process,final"), ["check"]),
        (("--skip-steps", "check", "--skip-steps", "final"), ["process"]),
    ],
)
def test_start_from_and_skip_steps(
    tmp_path: Path, write: Any, args: tuple[str, ...], ran: list[str]
) -> None:
    write(
        """name: habits
params:
  value: {type: string, required: true, minLength: 1}
steps:
  - {name: check, task: echo, inputs: {message: "check {{ args.value }}"}}
  - {name: process, task: echo, inputs: {message: "process {{ args.value }}"}}
  - {name: final, task: echo, inputs: {message: final}}
"""
    )
    data = summary(tmp_path, *args, "value=v", workflow="wf.yaml")
    assert list(data["steps"]) == ran


def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    folder = case(tmp_path, "python_steps")
    done = run(folder, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "[dry-run] [1/4] validate (python_code): would run" in done.stdout
    assert "never_runs (shell): would skip (condition rendered" in done.stdout
    assert not (folder / "report.json").exists()
    assert not (folder / ".batchline").exists()


def test_accepted_shapes_steps_mapping_short_params_and_on_error_forms(write: Any) -> None:
    from batchline.workflow import WorkflowError, WorkflowRunner
    from batchline.workflow.runner import load_workflow

    path = write(
        """name: shapes
settings: {max_workers: 2, error_handling: {undefined_variables: strict}}
params:
  greeting: Hello
  times: 2
steps:
  say:
    task: shell
    command: "echo {{ args.greeting }} {{ args.times + 1 }}"
  broken:
    task: fail
    inputs: {message: boom}
    on_error: {action: continue, next: handler}
  after:
    task: echo
    inputs: {message: "after {{ error.step }}: {{ error }}"}
  handler:
    task: echo
    inputs: {message: handled}
"""
    )
    spec = load_workflow(path)
    assert spec.settings.concurrency == 2
    result = WorkflowRunner(spec, source=path, base_dir=path.parent).run()
    assert result.exit_code == 0
    assert result.steps["say"].result["stdout"] == "Hello 3\n"
    assert result.steps["broken"].status == "failed"
    # `continue` wins over `next`, as in yaml-workflow: the following step runs.
    assert result.steps["after"].result == "after broken: boom"
    lenient = write(path.read_text().replace("strict}", "lenient}"), "lenient.yaml")
    with pytest.raises(WorkflowError, match="undefined_variables"):
        load_workflow(lenient)
