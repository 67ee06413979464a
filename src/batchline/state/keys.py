"""The item key type, shared by the state stores and the engine (which re-exports it)."""

from __future__ import annotations

Key = str | int
"""An item's identity: a ``str`` or an ``int``, compared exactly (``1 != "1"``)."""

__all__ = ["Key"]
