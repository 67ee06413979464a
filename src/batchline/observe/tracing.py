"""OpenTelemetry spans, cheap when nobody listens.

Spans go to the tracer provider given, or the global one. When no SDK is configured
(the API's no-op default), ``enabled`` is False and callers skip per-call spans.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode


class Tracing:
    """A tracer plus the knowledge of whether anyone records its spans."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        provider = provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer("batchline")
        self.enabled = not isinstance(
            provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
        )

    @contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        parent: Span | None = None,
    ) -> Iterator[Span]:
        """A span as the current one (child of ``parent`` if given); errors are recorded."""
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        with self.tracer.start_as_current_span(
            name, context=ctx, attributes=dict(attributes or {}), record_exception=True
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                span.set_attribute("error.type", type(exc).__name__)
                raise
