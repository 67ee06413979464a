"""The ``llm`` task of YAML workflows (async: a batch of them runs as coroutines)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from batchline.llm import ChatModel, Usage
from batchline.workflow.tasks import TaskConfig, register_task

_MODELS: dict[tuple[Any, ...], ChatModel] = {}
_LOCK = threading.Lock()


def model_for(config: TaskConfig) -> ChatModel:
    """One shared ``ChatModel`` per (model, endpoint, workspace): limits and cache are shared."""
    inputs = config.inputs
    name = str(inputs.get("model") or config.settings.get("llm_model") or "gpt-4o-mini")
    base_url = inputs.get("base_url")
    key = (name, base_url, str(config.workspace), inputs.get("max_concurrency"))
    with _LOCK:  # chunk threads ask at the same time: make exactly one model per key
        return _MODELS.get(key) or _MODELS.setdefault(key, _new_model(config, name, base_url))


def _new_model(config: TaskConfig, name: str, base_url: Any) -> ChatModel:
    inputs = config.inputs
    return ChatModel(
        name,
        base_url=base_url,
        cache_dir=Path(config.workspace),
        max_concurrency=int(inputs.get("max_concurrency") or 64),
        rpm=inputs.get("rpm"),
        tpm=inputs.get("tpm"),
        max_cost_usd=inputs.get("max_cost_usd"),
    )


@register_task("llm")
async def llm_task(config: TaskConfig) -> Any:
    """Ask a model: ``prompt`` (a template), ``system``, ``model``, ``output_schema`` (a JSON
    schema), ``temperature``, ``max_tokens``, ``cache`` (default true).

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
        **options,
    )
    return completion.parsed if completion.parsed is not None else completion.text


def usage_snapshot() -> dict[str, float | int]:
    """Usage summed over the models the ``llm`` task made in this process."""
    total = Usage()
    for model in list(_MODELS.values()):
        total.add(model.usage)
    return total.as_dict()


async def _close_all() -> None:
    """Close the shared models' connections on the current event loop."""
    for model in list(_MODELS.values()):
        await model.aclose()


llm_task.aclose = _close_all  # type: ignore[attr-defined]  # the batch task calls it per loop
