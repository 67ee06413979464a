"""LLM steps in all three front doors, against the real local server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from batchline.context import (
    BatchExecutor,
    CentralContextStore,
    ContextEntry,
    EntryType,
    TaskBatcher,
    TaskSpec,
    context_handler,
)
from batchline.llm import ChatModel
from batchline.pipeline import LLMAgent, Pipeline
from batchline.testing import OpenAICompatibleServer


class Tag(BaseModel):
    label: str
    confidence: float


def test_llm_agent_per_item_and_per_batch(server: OpenAICompatibleServer, tmp_path: Path) -> None:
    model = ChatModel("test-model", base_url=server.base_url, api_key="t", cache_dir=tmp_path)
    tagger = LLMAgent(model, "Tag the company.", Tag, input_field="companies", output_field="tags")
    result = Pipeline(tagger).run({"companies": ["acme", "globex", "initech"]})
    assert result.context["tags"][0]["label"].endswith("acme:label")
    assert len(result.context["tags"]) == 3
    before = server.counts["requests"]
    packed = LLMAgent(
        model, "Tag the company.", Tag, input_field="companies", output_field="tags", per_batch=True
    )
    result = Pipeline(packed).run({"companies": ["a", "b", "c", "d"]})
    assert len(result.context["tags"]) == 4
    assert server.counts["requests"] - before == 1  # four items, one request


def test_llm_task_in_a_batch_keeps_many_requests_in_flight_on_few_threads(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(latency=0.2)
    workflow = tmp_path / "llm.yaml"
    workflow.write_text(f"""name: tags
steps:
  - name: tag
    task: batch
    inputs:
      items: "{{{{ range(48) | list }}}}"
      chunk_size: 8
      max_concurrency: 24
      task:
        task: llm
        inputs:
          model: test-model
          base_url: {server.base_url}
          prompt: "Tag item {{{{ batch.item }}}}"
          output_schema: {{type: object, properties: {{label: {{type: string}}}},
                          required: [label]}}
""")
    threads_before = threading.active_count()
    done = subprocess.run(
        [sys.executable, "-m", "batchline.cli", "run", str(workflow), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
        env={**__import__("os").environ, "OPENAI_API_KEY": "t"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["steps"]["tag"]["result"]
    assert result["stats"]["processed"] == 48
    assert result["results"][5] == {"label": "Tag item 5:label"}
    assert server.max_in_flight >= 20  # 24 in flight asked: async, on 3 chunk threads
    assert threading.active_count() - threads_before < 5
    again = subprocess.run(
        [sys.executable, "-m", "batchline.cli", "run", str(workflow), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
        env={**__import__("os").environ, "OPENAI_API_KEY": "t"},
    )
    assert again.returncode == 0
    assert server.counts["requests"] == 48  # a re-run pays nothing: the workspace cache
    first_usage = json.loads(done.stdout)["usage"]
    assert first_usage["calls"] == 48
    assert first_usage["cost_usd"] > 0
    second_usage = json.loads(again.stdout)["usage"]
    assert second_usage["cached_calls"] == 48
    assert second_usage["cost_usd"] == 0


def test_context_handler_with_the_batch_executor(
    server: OpenAICompatibleServer, tmp_path: Path
) -> None:
    store = CentralContextStore()
    for i in range(4):
        store.add(ContextEntry(f"f{i}", EntryType.FILE, f"src/f{i}.py", f"code {i}", f"file {i}"))
    tasks = [
        TaskSpec(f"t{i}", f"review file {i % 4}", [f"f{i % 4}", f"f{(i + 1) % 4}"])
        for i in range(8)
    ]
    batches = TaskBatcher(3).create_batches(tasks)
    model = ChatModel("test-model", base_url=server.base_url, api_key="t", cache=False)
    handler = context_handler(model, "Review the code.")
    results = BatchExecutor(store, max_entries=3).execute_all(batches, handler)
    assert all(r.success for r in results), [r.error for r in results]
    answers = BatchExecutor.get_all_task_results(results)
    assert sorted(answers) == sorted(t.id for t in tasks)
