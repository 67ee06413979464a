"""Calling user hooks safely: an exception in a hook is logged and never breaks a run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("batchline.hooks")


def call_hook(name: str, hook: Callable[..., Any] | None, *args: Any) -> None:
    """Call ``hook(*args)`` if set; log (with traceback) and swallow what it raises."""
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:
        label = getattr(hook, "__qualname__", repr(hook))
        log.exception("hook %s (%s) raised; the run goes on", name, label)
