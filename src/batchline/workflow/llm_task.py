"""The ``llm`` task of YAML workflows (async: a batch of them runs as coroutines)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from batchline.llm import ChatModel, Usage
from batchline.llm.prices import parse_prices
from batchline.workflow.tasks import TaskConfig, register_task

_MODELS: dict[tuple[Any, ...], ChatModel] = {}
_STEPS: dict[tuple[Any, ...], ChatModel] = {}
_LOCK = threading.Lock()


def model_for(config: TaskConfig) -> ChatModel:
    """The model of one step: its own ``rpm``, ``tpm``, ``max_cost_usd`` and usage, sharing
    connections, cache and the endpoint's rate governor with every step of the workspace."""
    inputs = config.inputs
    name = str(inputs.get("model") or config.settings.get("llm_model") or "gpt-4o-mini")
    base_url = inputs.get("base_url")
    prices = {
        **parse_prices(config.settings.get("llm_prices"), "settings.prices"),
        **parse_prices(inputs.get("prices"), f"steps.{config.name}.prices"),
    }
    shared_key = (name, base_url, str(config.workspace))
    limits = (
        inputs.get("max_concurrency"),
        inputs.get("rpm"),
        inputs.get("tpm"),
        inputs.get("max_cost_usd"),
        tuple(sorted(prices.items())),
    )
    step_key = (*shared_key, config.settings.get("run_id"), config.name, limits)
    with _LOCK:  # chunk threads ask at the same time: make exactly one model per key
        step = _STEPS.get(step_key)
        if step is None:
            shared = _MODELS.get(shared_key)
            if shared is None:
                shared = _MODELS[shared_key] = ChatModel(
                    name, base_url=base_url, cache_dir=Path(config.workspace), prices=prices
                )
            step = _STEPS[step_key] = shared.with_limits(
                max_concurrency=int(inputs.get("max_concurrency") or 64),
                rpm=inputs.get("rpm"),
                tpm=inputs.get("tpm"),
                max_cost_usd=inputs.get("max_cost_usd"),
                prices=prices,
            )
        return step


@register_task("llm")
async def llm_task(config: TaskConfig) -> Any:
    """Ask a model: ``prompt`` (a template), ``system``, ``model``, ``output_schema`` (a JSON
    schema), ``temperature``, ``max_tokens``, ``cache`` (default true), ``prices``,
    ``allow_truncated`` (default false: an answer cut at ``max_tokens`` fails the item).

    Result: the text, or the parsed object with ``output_schema``.
    """
    inputs = config.inputs
    model = model_for(config)
    options: dict[str, Any] = {}
    for name in ("temperature", "max_tokens"):
        if inputs.get(name) is not None:
            options[name] = inputs[name]
    completion = await model.acomplete(
        str(config.require("prompt")),
        system=inputs.get("system"),
        output=inputs.get("output_schema"),
        cache=bool(inputs.get("cache", True)),
        allow_truncated=bool(inputs.get("allow_truncated", False)),
        **options,
    )
    tally = config.settings.get("client_retries")
    if isinstance(tally, list) and tally:
        tally[0] += completion.retries  # the batch task counts them in its `retried` stat
    return completion.parsed if completion.parsed is not None else completion.text


def usage_snapshot() -> dict[str, float | int]:
    """Usage summed over the models the ``llm`` task made in this process."""
    total = Usage()
    for model in list(_STEPS.values()):
        total.add(model.usage)
    return total.as_dict()


async def _close_all() -> None:
    """Close the shared models' connections on the current event loop."""
    for model in list(_MODELS.values()):
        await model.aclose()


llm_task.aclose = _close_all  # type: ignore[attr-defined]  # the batch task calls it per loop
