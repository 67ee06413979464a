"""Running a scope's nodes in another process (Ray): agents, parallel groups, chunked agents.

Plain calls with no tracing and no state store, since those live with the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from batchline.pipeline.calls import call_agent, run_parallel
from batchline.pipeline.flow import Chunked, Parallel, Sequence, Step


def run_nodes(nodes: tuple[Any, ...], context: dict[str, Any]) -> dict[str, Any]:
    """Run ``nodes`` in order on ``context``; return the fields they produced."""
    produced: dict[str, Any] = {}
    for node in nodes:
        new = _run(node, context)
        context.update(new)
        produced.update(new)
    return produced


def _branch(node: Any, context: dict[str, Any]) -> dict[str, Any]:
    return run_nodes((node,), context)


def _run(node: Any, context: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node, Step):
        try:
            return call_agent(node, context)
        except Exception as exc:
            if not hasattr(exc, "batchline_agent"):
                exc.batchline_agent = node.name  # type: ignore[attr-defined]
            raise
    if isinstance(node, Sequence):
        return run_nodes(node.steps, dict(context))
    if isinstance(node, Parallel):
        branches: list[Callable[[dict[str, Any]], dict[str, Any]]] = [
            partial(_branch, branch) for branch in node.branches
        ]
        return run_parallel(branches, context, [repr(b) for b in node.branches])
    if isinstance(node, Chunked):
        values = list(context.get(node.input_field) or [])
        merged: list[Any] = []
        for start in range(0, len(values), node.chunk_size):
            local = dict(context)
            local[node.input_field] = values[start : start + node.chunk_size]
            output = _run(node.step, local).get(node.output_field, [])
            merged.extend(output if isinstance(output, list) else [output])
        return {node.output_field: merged}
    raise TypeError(f"cannot run {node!r} remotely")
