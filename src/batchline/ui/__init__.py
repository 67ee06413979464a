"""``batchline ui``: a local, read-only dashboard over the state files runs write.

Importing this package starts nothing; ``create_app`` builds the web application and
``serve`` starts it (the CLI's ``batchline ui`` does both).
"""

from batchline.ui.server import create_app, serve
from batchline.ui.source import ItemRow, Page, RunRow, StateSource

__all__ = ["ItemRow", "Page", "RunRow", "StateSource", "create_app", "serve"]
