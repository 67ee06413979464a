"""The ``llm`` task of YAML workflows (async: a batch of them runs as coroutines)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from batchline.engine import child_run_id
from batchline.llm import ChatModel, Usage
from batchline.llm.batch import JOURNAL_CHILD, BatchJournal, request_name
from batchline.llm.prices import parse_prices
from batchline.workflow.errors import TaskError
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
    provider = str(inputs.get("provider") or "openai")
    mode = str(inputs.get("mode") or "online")
    journal_run = _journal_run(config) if mode == "batch" else None
    shared_key = (name, base_url, str(config.workspace), provider, mode, journal_run)
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
                shared = _MODELS[shared_key] = _new_model(
                    config, name, base_url, journal_run, prices
                )
            step = _STEPS[step_key] = shared.with_limits(
                max_concurrency=int(inputs.get("max_concurrency") or 64),
                rpm=inputs.get("rpm"),
                tpm=inputs.get("tpm"),
                max_cost_usd=inputs.get("max_cost_usd"),
                prices=prices,
            )
        return step


def _journal_run(config: TaskConfig) -> str | None:
    """The run that keeps the step's batch jobs: a child of the step's own run."""
    run_id = config.settings.get("run_id")
    if not run_id or config.settings.get("store") is None:
        return None
    step_run = config.settings.get("step_run_id") or child_run_id(str(run_id), config.name)
    return child_run_id(str(step_run), JOURNAL_CHILD)


def _new_model(
    config: TaskConfig,
    name: str,
    base_url: Any,
    journal_run: str | None,
    prices: dict[str, tuple[float, float, float]],
) -> ChatModel:
    """The model shared by the steps that ask the same endpoint in the same mode."""
    inputs = config.inputs
    journal = None
    if journal_run is not None:
        journal = BatchJournal(config.settings["store"], journal_run)
    try:
        return ChatModel(
            name,
            base_url=base_url,
            cache_dir=Path(config.workspace),
            prices=prices,
            provider=str(inputs.get("provider") or "openai"),
            mode=str(inputs.get("mode") or "online"),
            poll_interval=float(inputs.get("poll_interval") or 30.0),
            batch_prices=_prices(config, inputs.get("batch_prices")),
            batch_journal=journal,
        )
    except ValueError as exc:
        raise TaskError(f"step `{config.name}`: {exc}", "llm") from None


def _prices(config: TaskConfig, raw: Any) -> dict[str, tuple[float, float, float]] | None:
    """``batch_prices: {model: [input, cached_input, output]}`` (USD per 1M tokens)."""
    if raw is None:
        return None
    try:
        return {str(k): (float(v[0]), float(v[1]), float(v[2])) for k, v in dict(raw).items()}
    except (TypeError, ValueError, IndexError, KeyError):
        raise TaskError(
            f"step `{config.name}`: `batch_prices` is {raw!r}; expected a mapping of model "
            "name to [input, cached_input, output] USD per 1M tokens, e.g. "
            "{'gpt-4o-mini': [0.075, 0.0375, 0.3]}",
            "llm",
        ) from None


@register_task("llm")
async def llm_task(config: TaskConfig) -> Any:
    """Ask a model: ``prompt`` (a template), ``system``, ``model``, ``output_schema`` (a JSON
    schema), ``temperature``, ``max_tokens``, ``cache`` (default true), ``prices``,
    ``allow_truncated`` (default false: an answer cut at ``max_tokens`` fails the item),
    ``provider`` (``openai`` or ``anthropic``), ``mode`` (``online`` or ``batch``: the
    provider's batch API), ``poll_interval`` (seconds), ``batch_prices``.

    Result: the text, or the parsed object with ``output_schema``.
    """
    inputs = config.inputs
    model = model_for(config)
    options: dict[str, Any] = {}
    for name in ("temperature", "max_tokens"):
        if inputs.get(name) is not None:
            options[name] = inputs[name]
    with request_name(_item_name(config)):
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


def _item_name(config: TaskConfig) -> str | None:
    """The item's name inside a batch step (its key in the run state, else its number):
    the custom id of its batch request."""
    batch = config.context.get("batch") if isinstance(config.context, dict) else None
    if not isinstance(batch, dict):
        return None
    key = batch.get("key")
    if key is not None:
        return str(key)
    number = batch.get("number")
    return None if number is None else f"item-{number}"


def usage_snapshot() -> dict[str, float | int]:
    """Usage summed over the models the ``llm`` task made in this process (with the batch
    jobs and batch-mode calls, so a step's usage says which mode it ran in)."""
    total = Usage()
    jobs = batch_calls = 0
    for model in list(_STEPS.values()):
        total.add(model.usage)
        if model.batch is not None:
            jobs += model.batch.submitted_jobs
            batch_calls += model.usage.calls - model.usage.cached_calls
    snapshot = total.as_dict()
    if jobs or batch_calls:
        snapshot["batch_jobs"] = jobs
        snapshot["batch_calls"] = batch_calls
    return snapshot


async def _close_all() -> None:
    """Close the shared models' connections on the current event loop."""
    for model in list(_MODELS.values()):
        await model.aclose()


def _collects(inputs: Any) -> bool:
    """Whether the task (with these raw inputs) gathers its calls into provider jobs."""
    return isinstance(inputs, dict) and str(inputs.get("mode", "")).strip() == "batch"


llm_task.aclose = _close_all  # type: ignore[attr-defined]  # the batch task calls it per loop
llm_task.collects = _collects  # type: ignore[attr-defined]  # the batch task widens its chunks
