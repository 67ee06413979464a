"""LLM steps in YAML workflows: budget stops (exit 3, nothing failed, resumable), per-step
limits, YAML prices, client retries in stats, cost in progress lines. Real CLI processes
against the real local server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from batchline.state.sqlite import SQLiteStateStore
from batchline.workflow.llm_task import model_for
from batchline.workflow.runner import EXIT_STOPPED
from batchline.workflow.tasks import TaskConfig


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchline.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
        check=False,
        env={**os.environ, "OPENAI_API_KEY": "t"},
    )


def tagging(base_url: str, *, budget: float | None = None, model: str = "test-model") -> str:
    limit = f"\n          max_cost_usd: {budget}" if budget is not None else ""
    return f"""name: tags
settings: {{workspace: ws}}
steps:
  - name: tag
    task: batch
    inputs:
      items: "{{{{ range(40) | list }}}}"
      chunk_size: 4
      max_concurrency: 8
      task:
        task: llm
        inputs:
          model: {model}
          base_url: {base_url}
          prompt: "Tag item {{{{ batch.item }}}}"{limit}
"""


def test_a_budget_stop_fails_nothing_exits_3_and_resumes(make_server: Any, tmp_path: Path) -> None:
    server = make_server(latency=0.02)
    (tmp_path / "wf.yaml").write_text(tagging(server.base_url, budget=0.0001))
    done = cli(tmp_path, "run", "wf.yaml")
    assert done.returncode == EXIT_STOPPED == 3, done.stderr
    assert not re.search(r"\b[1-9]\d* (items? )?failed", done.stderr), done.stderr
    assert "max_cost_usd" in done.stderr
    assert re.search(r"\$0\.0001000\b", done.stderr)  # 4 significant digits, not $0.00
    command = done.stderr.split("Resume with: ", 1)[1].strip().splitlines()[0]
    assert re.fullmatch(r"batchline resume tags-\S+ --workspace \S+", command)
    store = SQLiteStateStore(tmp_path / "ws" / "state.db")
    runs = {info.run_id: info for info in store.list_runs()}
    run_id = command.split()[2]
    assert runs[run_id].status == "stopped"
    step_run = runs[f"{run_id}/tag"]
    assert step_run.failed == 0  # stopped, not failed
    before = step_run.succeeded
    assert 0 < before < 40
    store.close()
    again = cli(tmp_path, *command.split()[1:])  # each process gets the budget once more
    assert again.returncode in (0, EXIT_STOPPED), again.stderr
    store = SQLiteStateStore(tmp_path / "ws" / "state.db")
    assert store.get_run(f"{run_id}/tag").succeeded > before
    assert store.get_run(f"{run_id}/tag").failed == 0
    store.close()


def test_each_step_has_its_own_limits_and_budget(make_server: Any, tmp_path: Path) -> None:
    server = make_server()
    (tmp_path / "wf.yaml").write_text(f"""name: two
settings: {{workspace: ws}}
steps:
  - name: cheap
    task: batch
    inputs:
      items: [1, 2, 3]
      task: {{task: llm, inputs: {{model: test-model, base_url: {server.base_url},
              prompt: "a {{{{ batch.item }}}}", max_cost_usd: 1.0}}}}
  - name: tight
    task: batch
    inputs:
      items: "{{{{ range(30) | list }}}}"
      chunk_size: 5
      task: {{task: llm, inputs: {{model: test-model, base_url: {server.base_url},
              prompt: "b {{{{ batch.item }}}}", max_cost_usd: 0.00005, rpm: 600}}}}
""")
    done = cli(tmp_path, "run", "wf.yaml", "--format", "json")
    assert done.returncode == EXIT_STOPPED, done.stderr
    result = json.loads(done.stdout)
    assert result["steps"]["cheap"]["status"] == "completed"
    assert result["steps"]["tight"]["status"] == "stopped"  # its own budget, not the first's

    def config(name: str, **inputs: Any) -> TaskConfig:
        base = {"model": "test-model", "base_url": server.base_url, "prompt": "x"}
        return TaskConfig(name, "llm", {**base, **inputs}, tmp_path / "ws2")

    first = model_for(config("one", rpm=6000))
    second = model_for(config("two", rpm=60, max_cost_usd=0.5))
    assert first is not second
    assert first.rpm is not None
    assert second.rpm is not None
    assert second.rpm.rate == 60 * 0.98 / 60
    assert first.rpm.rate == 6000 * 0.98 / 60
    assert (first.budget.max_cost_usd, second.budget.max_cost_usd) == (None, 0.5)
    assert first.cache is second.cache  # the cache, connections and governor are shared
    assert first.governor is second.governor
    assert model_for(config("two", rpm=60, max_cost_usd=0.5)) is second


def test_yaml_prices_on_the_task_and_in_settings(make_server: Any, tmp_path: Path) -> None:
    server = make_server()
    (tmp_path / "wf.yaml").write_text(f"""name: priced
settings:
  workspace: ws
  prices: {{house-model: [1.0, 0.5, 2.0]}}
steps:
  - name: from_settings
    task: llm
    inputs: {{model: house-model, base_url: {server.base_url}, prompt: hi, max_cost_usd: 1}}
  - name: on_the_task
    task: llm
    inputs:
      model: other-house-model
      base_url: {server.base_url}
      prompt: hello
      max_cost_usd: 1
      prices: {{other-house-model: {{input: 3.0, output: 6.0}}}}
""")
    done = cli(tmp_path, "run", "wf.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert steps["from_settings"]["usage"]["cost_usd"] > 0
    assert steps["on_the_task"]["usage"]["cost_usd"] > 0
    (tmp_path / "bad.yaml").write_text(f"""name: unpriced
settings: {{workspace: ws}}
steps:
  - name: ask
    task: llm
    inputs: {{model: unknown-house-model, base_url: {server.base_url}, prompt: hi,
              max_cost_usd: 1}}
""")
    requests = server.counts["requests"]
    refused = cli(tmp_path, "run", "bad.yaml")
    assert refused.returncode == 1
    assert "`unknown-house-model` has no known price" in refused.stderr
    assert "prices:" in refused.stderr
    assert server.counts["requests"] == requests  # refused before the first call


@pytest.mark.slow  # two CLI runs through injected 500s and their backoffs
def test_client_retries_show_in_workflow_stats_and_progress_shows_cost(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(error_rate=0.2, seed=5)
    (tmp_path / "wf.yaml").write_text(tagging(server.base_url))
    done = cli(tmp_path, "run", "wf.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)["steps"]["tag"]["result"]["stats"]
    assert server.counts["500"] > 0
    assert stats["retried"] == server.counts["500"]  # every retried request is counted
    (tmp_path / "fresh.yaml").write_text(tagging(server.base_url).replace("Tag", "Name"))
    fresh = cli(tmp_path, "run", "fresh.yaml")  # not a terminal: plain progress lines
    progress = [line for line in fresh.stderr.splitlines() if "items" in line and "so far" in line]
    assert progress, fresh.stderr
    assert re.search(r"\$\d\.\d{4,} so far, ~\$\d\.\d{4,} projected, ETA \d+", progress[-1])


def test_a_rate_limited_server_loses_no_workflow_item(make_server: Any, tmp_path: Path) -> None:
    # 15 requests per 1 s window, no rpm and no item retries: every 429 is waited out.
    server = make_server(rpm_limit=15, rate_window=1.0, retry_style="retry-after-ms")
    (tmp_path / "wf.yaml").write_text(tagging(server.base_url))
    done = cli(tmp_path, "run", "wf.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    step = json.loads(done.stdout)["steps"]["tag"]
    assert step["result"]["stats"]["processed"] == 40
    assert step["result"]["stats"]["failed"] == 0
    assert server.counts["429"] > 0
    assert step["usage"]["rate_limited"] == server.counts["429"]


def test_chunks_share_the_gate_and_the_connections(make_server: Any, tmp_path: Path) -> None:
    """The chunks of an llm step run on one loop: never more than max_concurrency requests
    in flight, and connections reused from chunk to chunk instead of opened for each."""
    server = make_server(latency=0.05)
    workflow = tagging(server.base_url).replace("range(40)", "range(60)")
    workflow = workflow.replace("chunk_size: 4", "chunk_size: 5")
    (tmp_path / "wf.yaml").write_text(workflow)
    done = cli(tmp_path, "run", "wf.yaml")
    assert done.returncode == 0, done.stderr
    assert server.counts["requests"] == 60
    assert server.max_in_flight == 8  # the step's max_concurrency, reached and kept to
    assert len(server.connections) <= 16  # 12 chunks of 5: not a connection per request


def _interruptible(tmp_path: Path, base_url: str) -> subprocess.Popen[str]:
    workflow = tagging(base_url).replace("range(40)", "range(80)")
    (tmp_path / "wf.yaml").write_text(workflow.replace("chunk_size: 4", "chunk_size: 5"))
    return subprocess.Popen(
        [sys.executable, "-m", "batchline.cli", "run", "wf.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # killpg reaches batchline and only it, like Ctrl-C
        env={**os.environ, "OPENAI_API_KEY": "t"},
    )


def _wait_requests(server: Any, count: int) -> None:
    deadline = time.monotonic() + 60
    while server.counts["requests"] < count:
        assert time.monotonic() < deadline, "the step never sent its first requests"
        time.sleep(0.01)


def _tag_counts(tmp_path: Path, err: str) -> tuple[str, dict[str, Any]]:
    command = err.split("Resume with: ", 1)[1].strip().splitlines()[0]
    again = cli(tmp_path, *command.split()[1:], "--format", "json")
    assert again.returncode == 0, again.stderr
    return command, json.loads(again.stdout)["steps"]["tag"]["result"]["stats"]


@pytest.mark.slow
def test_ctrl_c_in_an_llm_step_finishes_the_requests_in_flight_and_asks_each_item_once(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(latency=0.4)
    child = _interruptible(tmp_path, server.base_url)
    _wait_requests(server, 8)
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    asked = server.counts["requests"]
    assert 8 <= asked < 80  # the requests in flight finished; no new one started
    _, stats = _tag_counts(tmp_path, err)
    assert (stats["resumed"], stats["processed"], stats["failed"]) == (asked, 80, 0)
    assert server.counts["requests"] == 80  # every item asked exactly once


@pytest.mark.slow
def test_a_second_ctrl_c_abandons_the_requests_in_flight(make_server: Any, tmp_path: Path) -> None:
    server = make_server(latency=30)
    child = _interruptible(tmp_path, server.base_url)
    _wait_requests(server, 8)
    os.killpg(child.pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while "SIGINT received" not in child.stderr.readline():  # type: ignore[union-attr]
        assert time.monotonic() < deadline
    started = time.monotonic()
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=20)  # the answers would take 30 s
    assert child.returncode == 130, err
    assert time.monotonic() - started < 10
    server.latency = 0.0
    _, stats = _tag_counts(tmp_path, err)
    assert (stats["resumed"], stats["processed"], stats["failed"]) == (0, 80, 0)
