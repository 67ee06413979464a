"""Secrets: redacted (`***`) in every output channel; commands still get the real values."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from batchline.observe.tracing import Tracing
from batchline.redact import MASK, Redactor, redact, register

API_KEY = "sk-live-0123456789abcdef"  # a secret by its name (MY_API_KEY)
CONN = "postgres://app:hunter2hunter@db.internal/prod"  # a secret by declaration (DB_CONN)
SECRETS = (API_KEY, CONN)

WORKFLOW = """
name: leaky
secrets: [DB_CONN]
params:
  token: {type: string, default: none}
steps:
  - name: real
    task: shell
    inputs:
      command: >-
        printf '%s' "$MY_API_KEY" > got-env.txt &&
        printf '%s' {{ env.MY_API_KEY }} > got-template.txt &&
        printf '%s' "{{ env.DB_CONN }}" > got-conn.txt
  - name: items
    task: batch
    on_error: {action: continue}
    inputs:
      items: [1, 2, 3]
      chunk_size: 2
      task:
        task: shell
        inputs:
          command: >-
            echo token={{ env.MY_API_KEY }} conn={{ env.DB_CONN }} param={{ args.token }};
            echo "stderr {{ env.MY_API_KEY }}" >&2; exit {{ batch.item - 1 }}
  - name: python
    task: python
    on_error: {action: continue}
    inputs:
      code: |
        raise ValueError("bad key " + env["MY_API_KEY"])
  - name: deploy
    task: shell
    inputs: {command: "echo {{ env.DB_CONN }} >&2; exit 3 # --token={{ env.MY_API_KEY }}"}
"""


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MY_API_KEY": API_KEY, "DB_CONN": CONN}
    return subprocess.run(
        [sys.executable, "-m", "batchline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def assert_clean(text: str, channel: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{channel} leaks a secret"
    assert "hunter2" not in text, channel


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("secrets")
    (folder / "wf.yaml").write_text(WORKFLOW, encoding="utf-8")
    text_run = run(["run", "wf.yaml", f"token={API_KEY}"], folder)
    assert text_run.returncode == 1, text_run.stderr
    assert_clean(text_run.stdout + text_run.stderr, "run (progress lines and error)")
    assert MASK in text_run.stderr
    json_run = run(["run", "wf.yaml", f"token={API_KEY}", "--format", "json"], folder)
    assert json_run.returncode == 1
    assert_clean(json_run.stdout + json_run.stderr, "--format json")
    return folder, json_run.stdout, json.loads(json_run.stdout)


def test_commands_still_receive_the_real_values(leaky_run: Any) -> None:
    folder, _, _ = leaky_run
    assert (folder / "got-env.txt").read_text() == API_KEY
    assert (folder / "got-template.txt").read_text() == API_KEY
    assert (folder / "got-conn.txt").read_text() == CONN


def test_json_summary_is_redacted_but_useful(leaky_run: Any) -> None:
    _, _, result = leaky_run
    steps = result["steps"]
    assert (
        f"token={MASK} conn={MASK} param={MASK}" in steps["items"]["result"]["results"][0]["stdout"]
    )
    assert "exited with code 3" in steps["deploy"]["error"]
    assert MASK in steps["deploy"]["error"]
    assert f"bad key {MASK}" in steps["python"]["error"]
    assert len(steps["items"]["result"]["failed"]) == 2
    assert all(MASK in f["error"] for f in steps["items"]["result"]["failed"].values())


def test_state_store_bytes_hold_no_secret(leaky_run: Any) -> None:
    folder, _, _ = leaky_run
    files = [p for p in (folder / ".batchline").iterdir() if p.is_file()]
    assert any(p.name == "state.db" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, path.name
        assert b"hunter2" not in data


def test_show_runs_and_export_are_redacted(leaky_run: Any) -> None:
    folder, _, result = leaky_run
    run_id = result["run_id"]
    ws = ["--workspace", ".batchline"]
    outputs = {
        "runs --json": run(["runs", *ws, "--json"], folder),
        "show": run(["show", run_id, *ws], folder),
        "show --failed": run(["show", run_id, *ws, "--failed"], folder),
        "show --failed --json": run(["show", run_id, *ws, "--failed", "--json"], folder),
        "show items": run(["show", f"{run_id}/items", *ws, "--items"], folder),
        "export jsonl": run(["export", run_id, "items", *ws], folder),
        "export csv": run(["export", run_id, "items", *ws, "--format", "csv"], folder),
    }
    for channel, done in outputs.items():
        assert done.returncode == 0, (channel, done.stderr)
        assert_clean(done.stdout + done.stderr, channel)
    assert MASK in outputs["show --failed"].stdout
    assert MASK in outputs["export jsonl"].stdout


def test_missing_declared_secret_fails_before_running(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: x\nsecrets: [NOT_SET_ANYWHERE_X]\nsteps: [{name: a, task: shell, "
        "inputs: {command: touch ran}}]\n",
        encoding="utf-8",
    )
    done = run(["run", "wf.yaml"], tmp_path)
    assert done.returncode == 2
    assert "NOT_SET_ANYWHERE_X" in done.stderr
    assert not (tmp_path / "ran").exists()


def test_logs_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    register(Redactor([API_KEY]))
    caplog.set_level(logging.DEBUG, logger="batchline")
    logger = logging.getLogger("batchline.test")
    logger.warning("calling with %s", API_KEY)
    try:
        raise RuntimeError(f"token {API_KEY} rejected")
    except RuntimeError:
        logger.exception("failed")
    text = caplog.text
    assert API_KEY not in text
    assert f"calling with {MASK}" in text
    assert f"token {MASK} rejected" in text


def test_span_attributes_and_errors_are_redacted() -> None:
    register(Redactor([API_KEY]))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    with (
        pytest.raises(RuntimeError),
        tracing.span("call", {"url": f"https://x/?key={API_KEY}", "n": 1}),
    ):
        raise RuntimeError(f"denied for {API_KEY}")
    (span,) = exporter.get_finished_spans()
    dumped = span.to_json()
    assert API_KEY not in dumped
    assert span.attributes is not None
    assert span.attributes["url"] == f"https://x/?key={MASK}"
    assert span.status.description == f"RuntimeError: denied for {MASK}"


def test_default_names_and_flag_like_values() -> None:
    redactor = Redactor.from_env(
        {
            "OPENAI_API_KEY": "sk-abcdef123",
            "GH_TOKEN": "ghp_123456789",
            "DB_PASSWORD": "correct horse",
            "CLIENT_SECRET": "s3cr3t-value",
            "TOKENIZERS_PARALLELISM": "false",
            "HOME": "/root",
        }
    )
    assert redactor.text("sk-abcdef123 ghp_123456789 correct horse s3cr3t-value") == " ".join(
        [MASK] * 4
    )
    assert redactor.text("false /root") == "false /root"
    assert redact("nothing here") == "nothing here"
    assert redactor.data({"k": [API_KEY, {"x": "sk-abcdef123"}]}) == {"k": [API_KEY, {"x": MASK}]}


def test_params_named_like_secrets_are_redacted(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: p\nsteps:\n  - {name: a, task: shell, inputs: "
        '{command: "echo {{ args.api_key }}; exit 1"}}\n',
        encoding="utf-8",
    )
    done = run(["run", "wf.yaml", "api_key=pk-9f8e7d6c", "--format", "json"], tmp_path)
    assert done.returncode == 1
    assert "pk-9f8e7d6c" not in done.stdout + done.stderr
    assert (tmp_path / ".batchline" / "state.db").read_bytes().find(b"pk-9f8e7d6c") == -1


def test_resuming_asks_again_for_a_param_that_held_a_secret(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: r\nparams: {token: {}, fail: {default: '1'}}\nsteps:\n"
        "  - {name: a, task: shell, inputs: "
        "{command: \"printf '%s' {{ args.token }} > got.txt; exit {{ args.fail }}\"}}\n",
        encoding="utf-8",
    )
    first = run(["run", "wf.yaml", f"token={API_KEY}"], tmp_path)
    assert first.returncode == 1
    refused = run(["run", "wf.yaml", "--resume", "fail=0"], tmp_path)
    assert refused.returncode == 2
    assert "`token` held a secret" in refused.stderr
    assert "token=VALUE" in refused.stderr
    resumed = run(["run", "wf.yaml", "--resume", f"token={API_KEY}", "fail=0", "--force"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "got.txt").read_text() == API_KEY
    assert_clean(resumed.stdout + resumed.stderr, "resume")
