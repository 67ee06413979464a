"""The batch task and the CLI: per-item rendering and retry, resume, signals, export."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from batchline import SQLiteStateStore
from batchline.workflow import BatchContext, BatchState

FLAKY = """
import pathlib, sys
item, fail_times = sys.argv[1], int(sys.argv[2])
counter = pathlib.Path("attempts") / item
counter.parent.mkdir(exist_ok=True)
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
if n <= fail_times:
    sys.exit(f"flaky {item} attempt {n}")
print(item.upper())
"""


def batch_workflow(items: str, fail_times: str = "0", extra: str = "") -> str:
    return f"""name: items
params:
  fail: {{type: integer, default: {fail_times}}}
settings: {{workspace: ws}}
steps:
  - name: list
    task: echo
    inputs: {{value: {items}}}
  - name: process
    task: batch
    inputs:
      items: "{{{{ steps.list.result }}}}"
      chunk_size: 2
      max_concurrency: 3
      retry: {{max_attempts: 3, delay: 0.01, backoff: 1}}
      task:
        task: shell
        inputs:
          command: "{sys.executable} flaky.py {{{{ batch.item }}}} {{{{ args.fail }}}}"
{extra}"""


def test_items_render_after_batch_exists_and_retry_per_item(
    write: Any, cli: Any, tmp_path: Path
) -> None:
    (tmp_path / "flaky.py").write_text(FLAKY)
    write(batch_workflow("[a, b, c, d, e]", "2"))
    done = cli("run", "wf.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    result = summary["steps"]["process"]["result"]
    assert [r["stdout"].strip() for r in result["results"]] == ["A", "B", "C", "D", "E"]
    assert result["stats"]["retried"] == 10  # each item failed twice, then passed
    assert result["stats"]["processed"] == 5
    assert all((tmp_path / "attempts" / i).read_text() == "3" for i in "abcde")


def test_failed_items_are_recorded_and_resume_runs_only_them(
    write: Any, cli: Any, tmp_path: Path
) -> None:
    (tmp_path / "flaky.py").write_text(FLAKY)
    write(
        batch_workflow("[a, b, c, d]", "0")
        + """  - name: after
    task: echo
    inputs: {value: "{{ steps.process.result.stats.processed }}"}
"""
    )
    # Item c fails 5 times: more than 3 attempts, so it fails for good this run.
    (tmp_path / "attempts").mkdir()
    (tmp_path / "attempts" / "c").write_text("-5")
    first = cli("run", "wf.yaml", "--format", "json")
    assert first.returncode == 1
    summary = json.loads(first.stdout)
    assert summary["status"] == "failed"
    process = summary["steps"]["process"]
    assert process["status"] == "failed"
    assert "1 of 4 items failed" in process["error"]
    assert "after" not in summary["steps"]
    run_id = summary["run_id"]
    store = SQLiteStateStore(tmp_path / "ws" / "state.db")
    state = BatchState.load(store, f"{run_id}/process", "process")
    assert state.stats["processed"] == 3
    assert state.stats["failed"] == 1
    assert state.failed["2"]["attempts"] == 3
    assert "flaky c" in state.failed["2"]["error"]
    assert state.to_dict()["stats"]["total"] == 4
    store.close()

    (tmp_path / "attempts" / "c").write_text("0")
    for item in "abd":
        (tmp_path / "attempts" / item).write_text("100")  # would fail if run again
    again = cli("resume", run_id, "--format", "json")  # finds ws/state.db by itself
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["status"] == "completed"
    assert resumed["steps"]["after"]["result"] == 4
    stats = resumed["steps"]["process"]["result"]["stats"]
    assert stats["resumed"] == 3
    assert (tmp_path / "attempts" / "c").read_text() == "1"  # only c ran again


def test_run_resume_flag_finds_the_latest_unfinished_run_and_checks_params(
    write: Any, cli: Any, tmp_path: Path
) -> None:
    (tmp_path / "flaky.py").write_text(FLAKY)
    write(batch_workflow("[a, b]", "9"))
    first = cli("run", "wf.yaml", "--format", "json")
    assert first.returncode == 1
    run_id = json.loads(first.stdout)["run_id"]
    refused = cli("run", "wf.yaml", "--resume", "fail=0")
    assert refused.returncode == 2
    assert "params differ" in refused.stderr
    assert "fail: 9 -> 0" in refused.stderr
    forced = cli("run", "wf.yaml", "--resume", "fail=0", "--force", "--format", "json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["run_id"] == run_id


def test_when_skips_and_continue_goes_on(write: Any, cli: Any) -> None:
    write("""name: flow
params:
  enabled: {type: boolean, default: false}
steps:
  - {name: maybe, task: echo, when: "{{ args.enabled }}", inputs: {value: 1}}
  - {name: broken, task: shell, on_error: {action: continue}, inputs: {command: "exit 4"}}
  - {name: last, task: echo, inputs: {value: "{{ steps.broken.status }}"}}
""")
    done = cli("run", "wf.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert steps["maybe"]["status"] == "skipped"
    assert steps["broken"]["status"] == "failed"
    assert "exited with code 4" in steps["broken"]["error"]
    assert steps["last"]["result"] == "failed"


def test_template_errors_fail_items_without_retry(write: Any, cli: Any) -> None:
    write("""name: t
steps:
  - name: process
    task: batch
    on_error: {action: continue}
    inputs:
      items: [1, 2]
      retry: {max_attempts: 5, delay: 0}
      task: {task: echo, inputs: {value: "{{ batch.itme }}"}}
""")
    done = cli("run", "wf.yaml", "--format", "json")
    result = json.loads(done.stdout)["steps"]["process"]["result"]
    assert result["stats"]["template_failures"] == 2
    assert result["stats"]["retried"] == 0
    error = result["failed"]["0"]["error"]
    assert "Did you mean `item`?" in error
    assert "step `process`" in error


def test_chunk_mode_runs_once_per_chunk(write: Any, cli: Any) -> None:
    write("""name: c
steps:
  - name: sums
    task: batch
    inputs:
      items: [1, 2, 3, 4, 5]
      chunk_size: 2
      mode: chunk
      task: {task: echo, inputs: {value: "{{ batch.items | sum }}"}}
""")
    done = cli("run", "wf.yaml", "--format", "json")
    assert json.loads(done.stdout)["steps"]["sums"]["result"]["results"] == [3, 7, 5]


def test_sigint_commits_state_and_prints_the_resume_command(write: Any, tmp_path: Path) -> None:
    write("""name: slow
settings: {workspace: ws}
steps:
  - name: wait
    task: batch
    inputs:
      items: "{{ range(40) | list }}"
      chunk_size: 2
      max_concurrency: 2
      task: {task: shell, inputs: {command: "sleep 0.1; echo {{ batch.item }}"}}
""")
    child = subprocess.Popen(
        [sys.executable, "-m", "batchline.cli", "run", "wf.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted" in err
    command = err.split("Resume with: ", 1)[1].strip().splitlines()[0]
    assert command.startswith("batchline resume slow-")
    store = SQLiteStateStore(tmp_path / "ws" / "state.db")
    runs = {info.run_id: info for info in store.list_runs()}
    (run_id,) = [r for r in runs if "/" not in r]
    assert runs[run_id].status == "interrupted"
    done_before = runs[f"{run_id}/wait"].succeeded
    assert 0 < done_before < 40
    store.close()
    resumed = subprocess.run(
        [sys.executable, "-m", "batchline.cli", *command.split()[1:], "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    stats = json.loads(resumed.stdout)["steps"]["wait"]["result"]["stats"]
    assert stats["resumed"] == done_before
    assert stats["processed"] == 40


def test_export_and_show(write: Any, cli: Any, tmp_path: Path) -> None:
    write("""name: e
settings: {workspace: ws}
steps:
  - name: squares
    task: batch
    on_error: {action: continue}
    inputs:
      items: [1, 2, 3]
      task: {task: python, inputs: {code: "result = 10 // (batch['item'] - 2)"}}
""")
    run_id = json.loads(cli("run", "wf.yaml", "--format", "json").stdout)["run_id"]
    jsonl = cli("export", run_id, "squares", "--workspace", "ws")
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [(r["status"], r["result"]) for r in rows] == [
        ("done", -10),
        ("failed", None),
        ("done", 10),
    ]
    assert "by zero" in rows[1]["error"]
    csv_out = cli("export", run_id, "squares", "--workspace", "ws", "--format", "csv")
    assert csv_out.stdout.splitlines()[0] == "key,position,status,result,error,attempts"
    missing = cli("export", run_id, "nope", "--workspace", "ws")
    assert missing.returncode == 1
    assert "batch steps: squares" in missing.stderr
    shown = cli("show", f"{run_id}/squares", "--workspace", "ws", "--failed")
    assert "ZeroDivisionError: integer division or modulo by zero" in shown.stdout


def test_batch_context_builds_item_and_error_contexts() -> None:
    base = {"args": {"a": 1}, "env": {}, "steps": {}, "workflow": {"name": "w"}, "other": 1}
    context = BatchContext(base, name="step", total=10, chunk_size=4)
    item = context.create_item_context("x", 5)
    assert item["batch"] == {
        "item": "x",
        "index": 5,
        "number": 6,
        "chunk_index": 1,
        "chunk_size": 4,
        "total": 10,
        "name": "step",
    }
    assert item["args"] == {"a": 1}
    assert "other" not in item
    error = context.get_error_context(KeyError("k"))
    assert error["error_type"] == "KeyError"
    assert error["available_variables"]["args"] == ["a"]
    assert "batch" in error["namespaces"]


def test_a_resume_after_the_item_list_changed_runs_new_items_once(
    write: Any, cli: Any, tmp_path: Path
) -> None:
    # The list is edited between the run and its resume (an item fixed, one dropped, one
    # added in front): items follow their content, not their position.
    side_effects = tmp_path / "ran.log"
    workflow = """name: edited
settings: {{workspace: ws}}
steps:
  - name: process
    task: batch
    inputs:
      items: {items}
      chunk_size: 2
      retry: {{max_attempts: 1}}
      task:
        task: shell
        inputs:
          command: >-
            echo {{{{ batch.item | quote }}}} >> ran.log;
            test {{{{ batch.item | quote }}}} != bad
"""
    write(workflow.format(items="[a, b, bad, d]"))
    first = cli("run", "wf.yaml", "--format", "json")
    assert first.returncode == 1, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    assert sorted(side_effects.read_text().split()) == ["a", "b", "bad", "d"]

    write(workflow.format(items="[new, a, fixed, d]"))
    again = cli("resume", run_id, "--format", "json")
    assert again.returncode == 0, again.stderr
    ran = side_effects.read_text().split()
    assert sorted(ran[4:]) == ["fixed", "new"]  # a and d were done: not repeated
    result = json.loads(again.stdout)["steps"]["process"]["result"]
    assert result["stats"]["resumed"] == 2
    assert result["stats"]["failed"] == 0
    assert result["failed"] == {}
    assert result["processed"] == ["new", "a", "fixed", "d"]

    # The state file keeps what the first run committed for the items removed since
    # (`b` done, `bad` failed), beside the new ones: nothing committed is lost.
    state = BatchState(tmp_path / "ws", f"{run_id}/process")
    assert state.stats["processed"] == 5
    assert state.stats["failed"] == 1
    assert [info["error_type"] for info in state.failed.values()] == ["TaskError"]
