"""Running flow nodes on one context: agents, parallel groups, chunked agents.

One runner serves the whole pipeline: the top level, every batch of a scope, and scope
batches shipped to Ray workers (the runner is picklable; only how an agent is called
differs: traced on the driver, plain in a worker). Chunked agents run on the engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from batchline.engine import RetryPolicy, run_batches
from batchline.pipeline.calls import call_agent, run_parallel
from batchline.pipeline.errors import StepError
from batchline.pipeline.flow import Chunked, Node, Parallel, Sequence, Step
from batchline.state import MemoryStateStore

CallAgent = Callable[[Step, dict[str, Any]], dict[str, Any]]


def plain_call(step: Step, context: dict[str, Any]) -> dict[str, Any]:
    """Call an agent; an error is marked with the agent's name (for failure reports)."""
    try:
        return call_agent(step, context)
    except Exception as exc:
        if not hasattr(exc, "batchline_agent"):
            try:
                exc.batchline_agent = step.name  # type: ignore[attr-defined]
                exc.add_note(f"in agent `{step.name}`")
            except AttributeError:  # pragma: no cover - exceptions with __slots__
                pass
        raise


@dataclass
class NodeRunner:
    """Runs nodes with ``call`` for each agent and ``retry`` for agent-level chunks."""

    call: CallAgent
    retry: RetryPolicy

    def run_nodes(self, nodes: tuple[Node, ...], context: dict[str, Any]) -> dict[str, Any]:
        """Run ``nodes`` in order on ``context``; return the fields they produced."""
        produced: dict[str, Any] = {}
        for node in nodes:
            new = self.run_node(node, context)
            context.update(new)
            produced.update(new)
        return produced

    def run_node(self, node: Node, context: dict[str, Any]) -> dict[str, Any]:
        """Run one node; return the fields it produced."""
        if isinstance(node, Step):
            return self.call(node, context)
        if isinstance(node, Chunked):
            return self.run_chunked(node, context)
        if isinstance(node, Sequence):
            return self.run_nodes(node.steps, context)
        if isinstance(node, Parallel):
            branches: list[Callable[[dict[str, Any]], dict[str, Any]]] = [
                partial(self.run_node, branch) for branch in node.branches
            ]
            return run_parallel(branches, context, [repr(b) for b in node.branches])
        raise TypeError(f"cannot run {node!r}")  # pragma: no cover

    def run_chunked(self, node: Chunked, context: dict[str, Any]) -> dict[str, Any]:
        """One agent over ``context[input_field]`` in chunks, on the engine."""
        values = context.get(node.input_field)
        if not isinstance(values, list):
            raise StepError(
                f"agent `{node.name}` runs in chunks over {node.input_field!r}, which is "
                f"{type(values).__name__ if node.input_field in context else 'missing'}; "
                "expected a list.",
                node.name,
            )
        if not values:
            return {node.output_field: []}

        def run_chunk(batch: Any) -> list[Any]:
            local = dict(context)
            local[node.input_field] = list(batch.items)
            output = self.call(node.step, local).get(node.output_field, [])
            return [output, *([None] * (len(batch.items) - 1))]

        positions = itertools.count()
        result = run_batches(
            values,
            run_chunk,
            chunk_size=node.chunk_size,
            key=lambda _item: next(positions),
            store=MemoryStateStore(keep_results=False, require_json=False),
            retry=self.retry,
            handle_signals=False,
        )
        if result.failures:
            failure = result.failures[0]
            raise StepError(
                f"agent `{node.name}` failed on chunk {failure.batch_number}: "
                f"{failure.error_type}: {failure.message}",
                node.name,
            )
        merged: list[Any] = []
        for output in result.results:
            if output is not None:
                merged.extend(output if isinstance(output, list) else [output])
        return {node.output_field: merged}
