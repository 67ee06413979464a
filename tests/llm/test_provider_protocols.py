"""The local server speaks the providers' real protocols: the official `openai` and
`anthropic` clients drive it; ChatModel speaks Anthropic's native Messages API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from batchline.llm import ChatModel, LLMRequestError
from batchline.pipeline import LLMAgent, Pipeline
from batchline.testing import OpenAICompatibleServer


def _wait(check: Any) -> Any:
    deadline = time.monotonic() + 20
    while True:
        value = check()
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_the_openai_sdk_runs_a_batch_on_the_test_server(make_server: Any) -> None:
    server = make_server(batch={"completion_time": 0.2, "error_ids": ["b"]})
    client = openai.OpenAI(base_url=server.base_url, api_key="t", max_retries=0)
    lines = "".join(
        json.dumps(
            {
                "custom_id": cid,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "test-model", "messages": [{"role": "user", "content": cid}]},
            }
        )
        + "\n"
        for cid in ("a", "b", "c")
    )
    upload = client.files.create(file=("in.jsonl", lines.encode()), purpose="batch")
    job = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert job.status in ("validating", "in_progress")
    done = _wait(
        lambda: b if (b := client.batches.retrieve(job.id)).status == "completed" else None
    )
    assert done is not None
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
    output = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert {row["custom_id"] for row in output} == {"a", "c"}
    assert output[0]["response"]["body"]["choices"][0]["message"]["content"].startswith("echo:")
    errors = client.files.content(done.error_file_id).text
    assert '"custom_id": "b"' in errors
    assert [b.id for b in client.batches.list()] == [job.id]


def test_the_anthropic_sdk_talks_to_the_test_server(server: OpenAICompatibleServer) -> None:
    client = anthropic.Anthropic(
        base_url=server.base_url.removesuffix("/v1"), api_key="t", max_retries=0
    )
    message = client.messages.create(
        model="test-model",
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello"}],
    )
    assert message.content[0].type == "text"
    assert message.usage.input_tokens > 0
    request = urllib.request.Request(  # noqa: S310 - the local server
        server.base_url + "/messages",
        data=json.dumps(
            {"model": "test-model", "messages": [{"role": "user", "content": "x"}]}
        ).encode(),
        headers={"x-api-key": "t", "anthropic-version": "2023-06-01"},
    )
    with pytest.raises(urllib.error.HTTPError) as missing:  # max_tokens is required
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - the local server
    assert missing.value.code == 400
    assert "max_tokens" in json.loads(missing.value.read())["error"]["message"]
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": f"r{i}",
                "params": {
                    "model": "test-model",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"q{i}"}],
                },
            }
            for i in range(3)
        ]
    )
    ended = _wait(
        lambda: (
            b
            if (b := client.messages.batches.retrieve(batch.id)).processing_status == "ended"
            else None
        )
    )
    assert ended is not None
    assert ended.request_counts.succeeded == 3
    results = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
    assert results == {"r0": "succeeded", "r1": "succeeded", "r2": "succeeded"}


def test_chat_model_speaks_anthropics_messages_api(
    server: OpenAICompatibleServer, tmp_path: Path
) -> None:
    model = ChatModel(
        "test-model",
        base_url=server.base_url.removesuffix("/v1"),
        api_key="t",
        provider="anthropic",
        cache_dir=tmp_path,
    )
    answer = model.complete("hi", system="Be brief.")
    assert answer.text == "echo: hi"
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    structured = model.complete("count", output=schema)  # through a forced tool
    assert isinstance(structured.parsed["n"], int)
    assert server.anthropic.requests == 2
    assert server.counts["requests"] == 0  # never the OpenAI endpoint
    keyless = ChatModel(
        "test-model", base_url=server.base_url, api_key="", provider="anthropic", cache=False
    )
    keyless.api_key = ""
    keyless._transport.headers["x-api-key"] = ""
    with pytest.raises(LLMRequestError, match="401"):
        keyless.complete("hi")


def test_llm_agent_in_batch_mode(make_server: Any, tmp_path: Path) -> None:
    server = make_server(batch={"completion_time": 0.0})
    model = ChatModel("test-model", base_url=server.base_url, api_key="t", cache_dir=tmp_path)
    agent = LLMAgent(model, "Tag.", input_field="items", output_field="tags", mode="batch")
    agent.model.batch.poll_interval = 0.05
    result = Pipeline(agent).run({"items": ["a", "b", "c"]})
    assert result.context["tags"] == ["echo: a", "echo: b", "echo: c"]
    counts = server.batches.counts()
    assert counts["jobs"] == 1
    assert counts["submitted"] == {"item-0": 1, "item-1": 1, "item-2": 1}
    assert server.counts["requests"] == 0
