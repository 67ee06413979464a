"""``batchline ui``: a local, read-only dashboard over the state files runs write.

Importing this package starts nothing and loads no web server: ``create_app`` builds
the web application and ``serve`` starts it (the CLI's ``batchline ui`` does both);
aiohttp is imported on first use, so the ``batchline`` command starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchline.ui.source import ItemRow, Page, RunRow, StateSource

if TYPE_CHECKING:
    from batchline.ui.server import create_app, serve

__all__ = ["ItemRow", "Page", "RunRow", "StateSource", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in {"create_app", "serve"}:
        from batchline.ui import server  # noqa: PLC0415 - aiohttp only when the server is wanted

        return getattr(server, name)
    raise AttributeError(f"module 'batchline.ui' has no attribute {name!r}")
