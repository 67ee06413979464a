"""OpenTelemetry spans, cheap when nobody listens.

Spans go to the tracer provider given, or the global one. When no SDK is configured
(the API's no-op default), ``enabled`` is False and callers skip per-call spans.
Attributes, error statuses and recorded exceptions go through the process-wide
redactor (:mod:`batchline.redact`): a secret never reaches a span.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from batchline.redact import active


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
        redactor = active()
        with self.tracer.start_as_current_span(
            name,
            context=ctx,
            attributes=redactor.data(dict(attributes or {})),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                message = active().text(f"{type(exc).__name__}: {exc}")
                span.add_event(
                    "exception",
                    {
                        "exception.type": type(exc).__name__,
                        "exception.message": active().text(str(exc)),
                    },
                )
                span.set_status(Status(StatusCode.ERROR, message))
                span.set_attribute("error.type", type(exc).__name__)
                raise
