"""``BatchContext``: the template context of each item (or chunk) of a batch step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchline.workflow.task_api import TaskConfig
from batchline.workflow.templating import NAMESPACES, Namespace

BASE_NAMESPACES = ("args", "env", "steps", "workflow")


class BatchContext:
    """Builds the template context of each item (or chunk) of a batch step.

    ``BatchContext(config)`` takes the batch step's :class:`TaskConfig` (the planned API:
    ``name``, ``engine``, ``workspace``, ``retry_config`` come from it);
    ``BatchContext(namespaces, name=..., total=..., chunk_size=...)`` is the runner's form.
    """

    def __init__(
        self,
        base: TaskConfig | Mapping[str, Any] | Any,
        *,
        name: str | None = None,
        total: int | None = None,
        chunk_size: int | None = None,
        arg_name: str | None = None,
    ) -> None:
        self._planned = not isinstance(base, Mapping)
        if not isinstance(base, Mapping):  # a TaskConfig (or anything shaped like one)
            config = base
            inputs = config.inputs if isinstance(config.inputs, Mapping) else {}
            items = inputs.get("items")
            total = total if total is not None else (len(items) if isinstance(items, list) else 0)
            chunk_size = chunk_size or _int(inputs.get("chunk_size"), 20)
            name = name or config.name
            self.engine: Any = config.get_variable("engine")
            self.workspace: Any = config.workspace
            self.retry_config: Any = inputs.get("retry", {})
            base = config.context
        else:
            self.engine = base.get("engine")
            self.workspace = (base.get("workflow") or {}).get("workspace")
            self.retry_config = {}
        self._context = base
        self.base = {space: base[space] for space in BASE_NAMESPACES if space in base}
        self.name = name or ""
        self.total = total or 0
        self.chunk_size = max(1, chunk_size or 20)
        self.arg_name = arg_name

    def create_item_context(self, item: Any, index: int, key: Any = None) -> dict[str, Any]:
        """The base namespaces (``args``, ``env``, ``steps``, ``workflow``) plus ``batch``
        for item ``index`` (0-based): ``item``, ``index``, ``name``, ``number``,
        ``chunk_index``, ``chunk_size``, ``total``, and ``key`` (the item's key in the run
        state) when given. With ``arg_name``, ``args.ARG`` is the item too (yaml-workflow)."""
        context = dict(self.base)
        if self.arg_name:
            context["args"] = Namespace({**self.base.get("args", {}), self.arg_name: item})
        values = {
            "item": item,
            "index": index,
            "number": index + 1,
            "chunk_index": index // self.chunk_size,
            "chunk_size": self.chunk_size,
            "total": self.total,
            "name": self.name,
        }
        if key is not None:
            values["key"] = key
        context["batch"] = Namespace(values)
        return context

    def create_chunk_context(self, items: list[Any], chunk_index: int) -> dict[str, Any]:
        """The context of a whole chunk (``mode: chunk``): ``batch.items`` instead of ``item``."""
        return {
            **self.base,
            "batch": Namespace(
                {
                    "items": items,
                    "index": chunk_index * self.chunk_size,
                    "number": chunk_index + 1,
                    "chunk_index": chunk_index,
                    "chunk_size": self.chunk_size,
                    "total": self.total,
                    "name": self.name,
                }
            ),
        }

    def get_available_variables(self) -> dict[str, list[str]]:
        """Names per namespace: ``args``, ``env``, ``steps`` and ``batch`` (``item``,
        ``index``, ``name``; the runner's contexts also have ``number``, ``chunk_index``,
        ``chunk_size``, ``total`` and, per chunk, ``items``)."""
        available: dict[str, list[str]] = {
            space: [str(k) for k in self._context.get(space) or {}]
            for space in ("args", "env", "steps")
        }
        available["batch"] = ["item", "index", "name"]
        if not self._planned:
            available = {space: sorted(names) for space, names in available.items()}
            available["batch"] = [
                "item",
                "items",
                "index",
                "number",
                "chunk_index",
                "chunk_size",
                "total",
                "name",
            ]
        return available

    def get_error_context(self, error: BaseException) -> dict[str, Any]:
        """What to show with an error: ``error`` (the message), ``available_variables``
        and ``namespaces`` (the context's top-level names; the runner's form also lists
        ``batch`` and ``workflow``, and gives ``error_type``)."""
        if self._planned:
            return {
                "error": str(error),
                "available_variables": self.get_available_variables(),
                "namespaces": list(self._context),
            }
        return {
            "error": str(error),
            "error_type": type(error).__name__,
            "available_variables": self.get_available_variables(),
            "namespaces": list(dict.fromkeys([*NAMESPACES, *self._context])),
        }


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


__all__ = ["BASE_NAMESPACES", "BatchContext"]
