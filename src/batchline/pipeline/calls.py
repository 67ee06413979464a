"""Calling agents: contract checks, async agents from sync code (through the engine's
bridge), parallel branches."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

from batchline.engine import run_coroutine
from batchline.pipeline.errors import PipelineWarning, StepError
from batchline.pipeline.flow import Step

log = logging.getLogger("batchline.pipeline")


def call_agent(step: Step, context: dict[str, Any]) -> dict[str, Any]:
    """Run one agent on a read-only view of ``context``; return its new fields."""
    requires = step.requires
    if requires and not context.keys() >= set(requires):
        missing = [name for name in requires if name not in context]
        present = ", ".join(sorted(context)) or "none"
        raise StepError(
            f"agent `{step.name}` requires {', '.join(repr(m) for m in missing)}, which the "
            f"context does not have (fields: {present}). Put an agent that provides it "
            "earlier in the flow, or pass it in the initial context.",
            step.name,
        )
    output = step.agent.run(MappingProxyType(context))
    if type(output) is dict:
        return output
    if asyncio.iscoroutine(output):
        output = run_coroutine(output)
    if output is None:
        return {}
    if not isinstance(output, Mapping):
        raise StepError(
            f"agent `{step.name}` returned {type(output).__name__}; expected a dict of new "
            f"fields (it provides: {', '.join(step.provides) or 'nothing declared'}).",
            step.name,
        )
    return dict(output)


def run_parallel(
    branches: list[Callable[[dict[str, Any]], dict[str, Any]]],
    context: dict[str, Any],
    names: list[str],
) -> dict[str, Any]:
    """Run branches concurrently on copies of ``context``; merge their outputs in order.

    A field two branches both produce goes to the last branch, with a warning naming it.
    """
    if len(branches) == 1:
        return branches[0](dict(context))
    with ThreadPoolExecutor(len(branches), thread_name_prefix="batchline-branch") as pool:
        futures = [pool.submit(branch, dict(context)) for branch in branches]
        outputs = [future.result() for future in futures]
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for name, output in zip(names, outputs, strict=True):
        for field, value in output.items():
            if field in merged:
                message = (
                    f"parallel branches `{owner[field]}` and `{name}` both provide {field!r}; "
                    "the last branch wins"
                )
                log.warning(message)
                warnings.warn(message, PipelineWarning, stacklevel=2)
            merged[field] = value
            owner[field] = name
    return merged
