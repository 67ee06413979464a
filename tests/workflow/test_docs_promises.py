"""The promises of the workflow docs a newcomer found broken (issue #19), one test each:
real `batchline` subprocesses on real files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from batchline.workflow.flows import ErrorInfo
from batchline.workflow.templating import Namespace, render

CLI = [sys.executable, "-m", "batchline.cli"]

FLAKY = """name: flaky
params:
  marker: {type: string, required: true}
steps:
  - name: convert
    task: batch
    on_error: continue
    inputs:
      items: [1, 2, 3]
      task:
        task: shell
        inputs: {command: "test {{ batch.item }} != 3 || test -e {{ args.marker }}"}
  - name: untouched
    task: echo
    inputs: {message: "reads no step"}
  - name: report
    task: template
    inputs:
      template: >-
        {{ steps.convert.result.stats.processed }} of {{ steps.convert.result.stats.total }} done
      output: report.txt
"""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def run_id_of(done: subprocess.CompletedProcess[str]) -> str:
    return str(json.loads(done.stdout)["run_id"])


def test_run_resume_retries_failed_items_with_the_original_params(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(FLAKY, encoding="utf-8")
    first = cli(tmp_path, "run", "wf.yaml", "marker=fixed.flag", "--format", "json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert "1 of 3 items failed" in summary["message"]
    assert f"batchline resume {summary['run_id']}" in summary["message"]
    assert (tmp_path / "report.txt").read_text() == "2 of 3 done"

    (tmp_path / "fixed.flag").touch()  # the cause is fixed; no params given again
    again = cli(tmp_path, "run", "wf.yaml", "--resume")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"run {summary['run_id']}: completed. done"  # the same run
    assert "convert (batch): done in" in again.stderr
    assert "(3/3 items, 2 resumed, 0 retries)" in again.stderr  # only the failed item ran
    assert (tmp_path / "report.txt").read_text() == "3 of 3 done"  # the later step ran again
    assert "report: completed before; runs again (it reads `convert`" in again.stderr
    assert "untouched: completed before, restored" in again.stderr

    nothing = cli(tmp_path, "run", "wf.yaml", "--resume")  # nothing left to resume
    assert nothing.returncode == 2
    assert "no unfinished run of `flaky`" in nothing.stderr


def test_resume_finds_the_workspace_from_anywhere(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "wf.yaml").write_text(FLAKY, encoding="utf-8")
    first = cli(project, "run", "wf.yaml", "marker=fixed.flag", "--format", "json")
    run_id = run_id_of(first)
    (project / "fixed.flag").touch()

    done = cli(elsewhere, "resume", run_id, "--format", "json")  # not under the project
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]["convert"]["result"]["stats"]["failed"] == 0
    assert (project / "report.txt").read_text() == "3 of 3 done"

    env = {**os.environ, "BATCHLINE_REGISTRY": ""}  # nothing remembered: say what to pass
    lost = subprocess.run(
        [*CLI, "resume", run_id],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=60,
        check=False,
    )
    assert lost.returncode == 1
    assert f"run `{run_id}` was not found" in lost.stderr
    assert f"batchline resume {run_id} --workspace" in lost.stderr


def test_a_step_whose_items_all_failed_says_so_loudly(tmp_path: Path) -> None:
    (tmp_path / "files.txt").write_text("missing-a.txt\nmissing-b.txt\n", encoding="utf-8")
    shipped = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "thumbnails.yaml"
    done = cli(tmp_path, "run", str(shipped), "listing=files.txt", "out=thumbs")
    assert done.returncode == 0, done.stderr  # on_error: continue
    assert "WARNING: every item of step `convert` failed: 2 of 2 items failed" in done.stdout
    assert "batchline resume thumbnails-" in done.stdout


STEP_NAMED_ITEMS = """name: shadow
steps:
  - name: items
    task: echo
    inputs: {value: [1, 2, 3]}
  - name: keys
    task: batch
    inputs:
      items: "{{ steps.items.result }}"
      chunk_size: 2
      mode: chunk
      task: {task: python, inputs: {values: "{{ batch.items }}", code: "result = sum(values)"}}
"""


def test_namespaces_never_shadow_their_methods() -> None:
    steps = Namespace(items=Namespace(result=[1, 2], status="completed", error=None))
    assert list(steps.items()) == [("items", steps["items"])]  # the method, in Python
    assert steps["items"].result == [1, 2]  # other keys are attributes
    assert render("{{ steps.items.result }}", {"steps": steps}) == [1, 2]  # the key, in templates
    copy = pickle.loads(pickle.dumps(steps))  # noqa: S301 - our own bytes, as Ray does
    assert copy == steps
    assert isinstance(copy["items"], Namespace)
    error = pickle.loads(pickle.dumps(ErrorInfo(step="s", message="boom")))  # noqa: S301
    assert (type(error), str(error)) == (ErrorInfo, "boom")
    with pytest.raises(AttributeError, match="namespace has no `missing`"):
        _ = steps.missing


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_step_named_items_works_on_every_backend(tmp_path: Path, backend: str) -> None:
    if backend == "ray":
        pytest.importorskip("ray", reason="the Ray backend needs ray installed")
    (tmp_path / "wf.yaml").write_text(STEP_NAMED_ITEMS, encoding="utf-8")
    done = cli(tmp_path, "run", "wf.yaml", "--backend", backend, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]["keys"]["result"]["results"] == [3, 3]  # 1 + 2, then 3
