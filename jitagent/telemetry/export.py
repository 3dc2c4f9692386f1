"""Spans to a JSON-lines file, one span per line as the OpenTelemetry SDK writes it
(``ReadableSpan.to_json``): what ``jitagent bench --trace`` writes and ``jitagent trace`` reads.

Needs the SDK, which the ``otel`` extra brings (``pip install 'jitagent-core[otel]'``).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, TextIO

from jitagent._version import DISTRIBUTION

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["SDKMissingError", "require_sdk", "jsonl_tracer_provider"]


class SDKMissingError(RuntimeError):
    """The OpenTelemetry SDK is not installed."""


def require_sdk() -> None:
    """Raise :class:`SDKMissingError`, saying how to install it, unless the SDK is installed."""
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        raise SDKMissingError(f"writing spans needs the OpenTelemetry SDK: pip install '{DISTRIBUTION}[otel]'")


def jsonl_tracer_provider(out: TextIO, service_name: str = "jitagent") -> TracerProvider:
    """An SDK tracer provider that writes each span, as it ends, to ``out`` as one JSON line.
    Call its ``shutdown()`` when done. Raises :class:`SDKMissingError` without the SDK."""
    require_sdk()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider
