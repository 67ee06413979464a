"""Observability: progress display (tracing and logging helpers join here)."""
