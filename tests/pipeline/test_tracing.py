"""OpenTelemetry spans: pipeline > scope > batch > agent, checked with the SDK's exporter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from batchline.pipeline import BATCH_KEY, Agent, Pipeline


def make(name: str, run: Any) -> type[Agent]:
    return type(name, (Agent,), {"run": lambda self, ctx: run(ctx)})


def test_spans_nest_and_carry_batch_attributes() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def enrich(ctx: Mapping[str, Any]) -> dict[str, Any]:
        if ctx[BATCH_KEY]["number"] == 2:
            raise ValueError("bad batch")
        return {"xs": [x * 2 for x in ctx["xs"]]}

    Discover = make("Discover", lambda ctx: {"xs": list(range(7))})
    Enrich = make("Enrich", enrich).triggers_batching(chunk_size=3, over="xs")
    Score = make("Score", lambda ctx: {"total": [sum(ctx["xs"])]}).ends_batching()
    Pipeline(Discover >> Enrich >> Score, tracer_provider=provider, max_concurrency=2).run()

    spans = exporter.get_finished_spans()
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (pipeline,) = by_name["batchline.pipeline"]
    (scope,) = by_name["batchline.scope"]
    batches = sorted(by_name["batchline.batch"], key=lambda s: s.attributes["batch.number"])  # type: ignore[index]
    assert scope.parent is not None
    assert scope.parent.span_id == pipeline.context.span_id
    assert scope.attributes["scope.total_batches"] == 3  # type: ignore[index]
    assert [b.attributes["batch.number"] for b in batches] == [1, 2, 3]  # type: ignore[index]
    for batch in batches:
        assert batch.parent is not None
        assert batch.parent.span_id == scope.context.span_id
        assert batch.attributes["batch.total"] == 3  # type: ignore[index]
        assert "batch.duration_ms" in batch.attributes  # type: ignore[operator]
    assert [b.attributes["batch.size"] for b in batches] == [3, 3, 1]  # type: ignore[index]
    assert batches[1].status.status_code == StatusCode.ERROR
    assert batches[1].attributes["error.type"] == "ValueError"  # type: ignore[index]
    assert batches[0].status.status_code != StatusCode.ERROR

    agents = by_name["batchline.agent"]
    discover = [a for a in agents if a.attributes["agent.name"] == "Discover"]  # type: ignore[index]
    assert discover[0].parent is not None
    assert discover[0].parent.span_id == pipeline.context.span_id
    batch_ids = {b.context.span_id for b in batches}
    inside = [a for a in agents if a.attributes["agent.name"] in ("Enrich", "Score")]  # type: ignore[index]
    assert len(inside) == 5  # Enrich x3 (one failed) + Score x2
    assert all(a.parent is not None and a.parent.span_id in batch_ids for a in inside)
