"""Workflow state on PostgreSQL (``settings.state``, ``--state``), and code that cannot load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from batchline.state import PostgresStateStore

CLI = [sys.executable, "-m", "batchline.cli"]

WORKFLOW = """name: shared
settings: {state: "STATE"}
steps:
  - name: squares
    task: batch
    inputs:
      items: "{{ range(6) | list }}"
      chunk_size: 2
      task: {task: python, inputs: {code: "result = batch['item'] ** 2"}}
"""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def test_settings_state_and_state_option_use_postgresql(postgres_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("STATE", postgres_dsn))
    done = _run("run", "wf.yaml", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert not (tmp_path / ".batchline" / "state.db").exists(), "state went to PostgreSQL"

    store = PostgresStateStore(postgres_dsn)
    assert store.get_run(run_id).status == "completed"
    assert store.get_run(f"{run_id}/squares").succeeded == 6

    listed = _run("runs", "--state", postgres_dsn, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert run_id in {info["run_id"] for info in json.loads(listed.stdout)}
    shown = _run("show", run_id, "--state", postgres_dsn, "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["status"] == "completed"

    # --state overrides settings.state; resume finds the run in the store it names.
    other = tmp_path / "elsewhere.db"
    again = _run("run", "wf.yaml", "--state", str(other), "--format", "json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert other.exists()
    resumed = _run("resume", run_id, "--state", postgres_dsn, "--format", "json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"


def test_unknown_postgres_server_is_a_clear_cli_error(tmp_path: Path) -> None:
    done = _run("runs", "--state", "postgresql://me:pw@127.0.0.1:1/db", cwd=tmp_path)
    assert done.returncode == 1
    assert "cannot connect to the state database postgresql://me@127.0.0.1:1/db" in done.stderr
    assert "pw" not in done.stderr.replace("password", "")


def test_python_function_that_cannot_load_fails_the_step_at_once(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: broken\n"
        "steps:\n"
        "  - name: each\n"
        "    task: batch\n"
        "    inputs:\n"
        '      items: "{{ range(200) | list }}"\n'
        "      retry: {max_attempts: 3, delay: 1}\n"
        "      task: {task: python, inputs: {function: 'no_such_module_x:fn', x: 1}}\n"
    )
    done = _run("run", "wf.yaml", "--format", "json", cwd=tmp_path)
    assert done.returncode == 1
    step: dict[str, Any] = json.loads(done.stdout)["steps"]["each"]
    assert step["error_type"] == "TaskLoadError"
    assert "cannot load `no_such_module_x:fn`" in step["error"]
    assert "No module named 'no_such_module_x'" in step["error"]
    assert step["result"] is None, "no item ran"


def test_settings_ray_and_cli_options_make_the_backend(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("ray")
    from batchline.backends import RayBackend
    from batchline.workflow import WorkflowError
    from batchline.workflow.runner import WorkflowRunner, load_workflow

    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: configured\n"
        "settings:\n"
        "  backend: ray\n"
        "  ray:\n"
        "    address: '10.0.0.5:6379'\n"
        "    runtime_env: {working_dir: '.', pip: [httpx]}\n"
        "    num_cpus: 2\n"
        "    num_gpus: 0.5\n"
        "    memory: 1000000\n"
        "steps:\n"
        "  - {name: s, task: echo, inputs: {value: 1}}\n"
    )
    runner = WorkflowRunner(load_workflow(path), source=path, ray={"num_cpus": 1})
    backend = runner._resolve_backend()
    assert isinstance(backend, RayBackend)
    assert backend.address == "10.0.0.5:6379"
    assert backend.runtime_env == {"working_dir": ".", "pip": ["httpx"]}
    assert backend.resources == {"num_cpus": 1, "num_gpus": 0.5, "memory": 1000000}

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\n"
        "settings: {ray: {runtime_env: {workdir: '.'}}}\n"
        "steps: [{name: s, task: echo, inputs: {value: 1}}]\n"
    )
    with pytest.raises(WorkflowError, match="workdir"):
        load_workflow(bad)
