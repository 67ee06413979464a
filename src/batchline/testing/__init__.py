"""Real local services for tests and benchmarks (no internet, no keys)."""

from batchline.testing.server import OpenAICompatibleServer, fill_schema

__all__ = ["OpenAICompatibleServer", "fill_schema"]
