"""Provider batch APIs (OpenAI Batch, Anthropic Message Batches), against the real local
server: jobs, retries of errored and expired requests, batch prices, the budget, and a
real driver killed with SIGKILL while its jobs are in progress."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from batchline.llm import BudgetExceededError, ChatModel
from batchline.llm.batch import request_name
from batchline.state import SQLiteStateStore
from batchline.testing import OpenAICompatibleServer

PROVIDERS = ["openai", "anthropic"]


def _model(server: OpenAICompatibleServer, provider: str, tmp_path: Path, **options: Any) -> Any:
    return ChatModel(
        "test-model",
        base_url=server.base_url,
        api_key="test",
        provider=provider,
        mode="batch",
        poll_interval=0.05,
        cache_dir=tmp_path,
        **options,
    )


async def _ask_all(model: ChatModel, names: list[str]) -> list[Any]:
    async def one(name: str) -> Any:
        with request_name(name):
            return await model.acomplete(f"question {name}")

    return await asyncio.gather(*(one(name) for name in names))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_errored_and_expired_items_are_resubmitted_and_answered(
    make_server: Any, tmp_path: Path, provider: str
) -> None:
    server = make_server(
        batch={"completion_time": 0.1, "error_ids": ["item-3"], "expire_ids": ["item-5"]}
    )
    model = _model(server, provider, tmp_path)
    names = [f"item-{i}" for i in range(12)]
    answers = asyncio.run(_ask_all(model, names))
    assert [a.text for a in answers] == [f"echo: question {name}" for name in names]
    counts = server.batches.counts()
    assert counts["jobs"] == 2  # everything in one job, then the two failures in a second
    assert counts["submitted"]["item-3"] == counts["submitted"]["item-5"] == 2
    assert counts["errored"] == {"item-3": 1}
    assert counts["expired"] == {"item-5": 1}
    assert all(counts["answered"][name] == 1 for name in names)
    assert sum(counts["submitted"].values()) == 14


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_request_that_keeps_failing_fails_with_the_providers_error(
    make_server: Any, tmp_path: Path, provider: str
) -> None:
    server = make_server(batch={"completion_time": 0.0, "fail_jobs": 99})
    model = _model(server, provider, tmp_path)
    model.batch.max_attempts = 2
    with pytest.raises(Exception, match=r"`item-0` failed in provider batch job .* after 2"):
        asyncio.run(_ask_all(model, ["item-0"]))
    assert server.batches.counts()["submitted"] == {"item-0": 2}


def test_a_job_that_fails_as_a_whole_is_reported_and_its_items_retried(
    make_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(batch={"completion_time": 0.0, "fail_jobs": 1})
    model = _model(server, "openai", tmp_path)
    with caplog.at_level(logging.WARNING, logger="batchline.llm.batch"):
        answers = asyncio.run(_ask_all(model, ["a", "b", "c"]))
    assert [a.text for a in answers] == ["echo: question a", "echo: question b", "echo: question c"]
    assert "failed as a whole (server_error: the batch failed (injected))" in caplog.text
    counts = server.batches.counts()
    assert counts["jobs"] == 2
    assert counts["answered"] == {"a": 1, "b": 1, "c": 1}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_cost_is_half_the_online_cost_for_the_same_tokens(
    make_server: Any, tmp_path: Path, provider: str
) -> None:
    server = make_server(batch={"completion_time": 0.0})
    prompts = [f"summarise document number {i} please" for i in range(20)]
    online = ChatModel(
        "test-model", base_url=server.base_url, api_key="t", provider=provider, cache=False
    )

    async def ask(model: ChatModel) -> None:
        await asyncio.gather(*(model.acomplete(p) for p in prompts))
        await model.aclose()

    asyncio.run(ask(online))
    batch = _model(server, provider, tmp_path, cache=False)
    asyncio.run(ask(batch))
    assert batch.usage.calls == online.usage.calls == 20
    assert batch.usage.prompt_tokens == online.usage.prompt_tokens > 0
    assert batch.usage.completion_tokens == online.usage.completion_tokens > 0
    assert batch.usage.cost_usd == pytest.approx(online.usage.cost_usd / 2)
    assert server.batches.counts()["jobs"] == 1
    priced = _model(
        server, provider, tmp_path / "own", cache=False, batch_prices={"test-model": (0, 0, 1)}
    )
    asyncio.run(ask(priced))
    assert priced.usage.cost_usd == pytest.approx(priced.usage.completion_tokens / 1e6)


def test_cached_answers_are_never_resubmitted(make_server: Any, tmp_path: Path) -> None:
    server = make_server(batch={"completion_time": 0.0})
    first = _model(server, "openai", tmp_path)
    asyncio.run(_ask_all(first, ["a", "b"]))
    again = _model(server, "openai", tmp_path)
    answers = asyncio.run(_ask_all(again, ["a", "b", "c"]))
    assert [a.cached for a in answers] == [True, True, False]
    assert server.batches.counts()["submitted"] == {"a": 1, "b": 1, "c": 1}


def test_the_budget_is_reserved_before_a_job_is_submitted(make_server: Any, tmp_path: Path) -> None:
    server = make_server(batch={"completion_time": 0.0})
    model = _model(server, "openai", tmp_path, max_cost_usd=0.0001)
    with pytest.raises(BudgetExceededError, match="does not fit in the budget"):
        asyncio.run(_ask_all(model, [f"i{n}" for n in range(10)]))
    assert server.batches.counts()["jobs"] == 0


def test_jobs_are_split_by_the_providers_limits(make_server: Any, tmp_path: Path) -> None:
    server = make_server(batch={"completion_time": 0.0})
    model = _model(server, "anthropic", tmp_path)
    model.batch.provider.max_requests = 4
    asyncio.run(_ask_all(model, [f"i{n}" for n in range(10)]))
    assert server.batches.counts()["jobs"] == 3  # 4 + 4 + 2
    bytes_model = _model(server, "openai", tmp_path / "b", cache=False)
    provider = bytes_model.batch.provider
    body = {"model": "test-model", "messages": [{"role": "user", "content": "question j0"}]}
    provider.max_bytes = 2 * provider.size("j0", body) + 1  # two requests a job
    asyncio.run(_ask_all(bytes_model, [f"j{n}" for n in range(6)]))
    assert server.batches.counts()["jobs"] == 3 + 3


WORKFLOW = """name: tags
settings: {{workspace: ws}}
steps:
  - name: tag
    task: batch
    inputs:
      items: "{{{{ range({items}) | list }}}}"
      chunk_size: 20
      max_concurrency: 4
      task:
        task: llm
        inputs:
          model: test-model
          provider: {provider}
          base_url: {base_url}
          mode: batch
          poll_interval: 0.1
          prompt: "Tag item {{{{ batch.item }}}}"
          output_schema: {{type: object, properties: {{label: {{type: string}}}},
                          required: [label]}}
"""


def _journaled_jobs(state: Path) -> int:
    if not state.exists():
        return 0
    store = SQLiteStateStore(state)
    try:
        runs = [info.run_id for info in store.list_runs() if info.run_id.endswith("/llm-batches")]
        return sum(len(list(store.iter_items(run))) for run in runs)
    finally:
        store.close()


def _run(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OPENAI_API_KEY": "t", "ANTHROPIC_API_KEY": "t"}
    return subprocess.Popen(
        [sys.executable, "-m", "batchline.cli", "run", "wf.yaml", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_sigkill_while_jobs_run_then_resume_submits_nothing_twice(
    make_server: Any, tmp_path: Path, provider: str
) -> None:
    server = make_server(batch={"completion_time": 3.0})
    base_url = server.base_url if provider == "openai" else server.base_url.removesuffix("/v1")
    (tmp_path / "wf.yaml").write_text(
        WORKFLOW.format(items=1000, provider=provider, base_url=base_url)
    )
    driver = _run(tmp_path, "--format", "json")
    deadline = time.monotonic() + 60
    while _journaled_jobs(tmp_path / "ws" / "state.db") == 0:  # the job id is committed
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, "no job was journaled"
        time.sleep(0.05)
    counts = server.batches.counts()
    assert counts["jobs"] == 1  # 1,000 items, chunk_size 20, max_concurrency 4: one job
    assert not any(counts["answered"].values())  # still in progress at the provider
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=30)
    assert driver.returncode == -signal.SIGKILL

    resumed = _run(tmp_path, "--resume", "--format", "json")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert "found in" in err
    assert "not submitted again" in err
    result = json.loads(out)
    step = result["steps"]["tag"]
    assert step["result"]["stats"]["processed"] == 1000
    assert step["result"]["results"][7] == {"label": "Tag item 7:label"}
    counts = server.batches.counts()
    assert counts["jobs"] == 1  # no job submitted twice
    assert len(counts["submitted"]) == 1000
    assert set(counts["submitted"].values()) == {1}
    assert set(counts["answered"].values()) == {1}  # every item answered exactly once
    assert step["usage"]["batch_calls"] == 1000
    assert step["usage"]["cost_usd"] > 0
    assert server.counts["requests"] == 0  # and no online call at all


def test_ctrl_c_stops_waiting_without_cancelling_and_a_resume_collects(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(batch={"completion_time": 2.0})
    (tmp_path / "wf.yaml").write_text(
        WORKFLOW.format(items=30, provider="openai", base_url=server.base_url)
    )
    driver = _run(tmp_path)
    deadline = time.monotonic() + 60
    while _journaled_jobs(tmp_path / "ws" / "state.db") == 0:
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert "stopped waiting for 1 provider batch job(s)" in err
    assert "NOT cancelled" in err
    assert "--cancel-jobs" in err
    assert "Resume with: batchline resume tags-" in err
    job = next(iter(server.batches.jobs.values()))
    assert not job.cancelled
    resumed = _run(tmp_path, "--resume", "--format", "json")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert json.loads(out)["steps"]["tag"]["result"]["stats"]["processed"] == 30
    counts = server.batches.counts()
    assert counts["jobs"] == 1
    assert set(counts["answered"].values()) == {1}


def test_a_batch_requests_custom_id_is_the_items_key(make_server: Any, tmp_path: Path) -> None:
    server = make_server(batch={"completion_time": 0.0})
    (tmp_path / "wf.yaml").write_text(
        f"""name: keyed
settings: {{workspace: ws}}
steps:
  - name: tag
    task: batch
    inputs:
      items: [{{id: acme-1, name: Acme}}, {{id: globex-2, name: Globex}}, {{id: "x y/3", name: X}}]
      key: id
      task:
        task: llm
        inputs:
          model: test-model
          base_url: {server.base_url}
          mode: batch
          poll_interval: 0.05
          prompt: "Tag {{{{ batch.item.name }}}}"
"""
    )
    done = _run(tmp_path, "--format", "json")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    # The key as the provider sees it (ids are [A-Za-z0-9_-], so `x y/3` becomes `x_y_3`).
    assert server.batches.counts()["submitted"] == {"acme-1": 1, "globex-2": 1, "x_y_3": 1}
    step = json.loads(out)["steps"]["tag"]
    assert step["result"]["results"] == ["echo: Tag Acme", "echo: Tag Globex", "echo: Tag X"]
    assert step["usage"]["batch_calls"] == 3
    assert step["usage"]["mode"] == "batch"
    shown = subprocess.run(
        [sys.executable, "-m", "batchline.cli", "show", json.loads(out)["run_id"],
         "--workspace", "ws"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "step `tag`: 3 calls (0 from cache, batch mode)" in shown.stdout
