"""Where a component's telemetry goes: its tracer, its metric instruments, and whether it may
record prompt and completion text.

jitagent depends on the OpenTelemetry API only. With no provider passed and none configured by
the application, the API's tracer and meter do nothing, and jitagent checks for that before it
computes anything, so uninstrumented use costs next to nothing.
"""

from __future__ import annotations

import os
import threading

from opentelemetry import metrics, trace

from jitagent._version import __version__
from jitagent.telemetry import names
from jitagent.telemetry._compat import ProxyMeterProvider
from jitagent.telemetry.instruments import Instruments

__all__ = ["Telemetry", "CONTENT_ENV"]

CONTENT_ENV = "JITAGENT_TRACE_CONTENT"
_TRUE = {"1", "true", "yes", "on"}

_global_instruments: Instruments | None = None
_global_lock = threading.Lock()


def _instruments(meter_provider: metrics.MeterProvider | None) -> Instruments:
    """The metric instruments for ``meter_provider``; from the global provider, one set for the
    process. Until the application sets a global provider, the API's proxy provider keeps every
    meter asked of it (and each meter every instrument), to hand them on later: a set per client
    would grow with every short-lived client (7 objects and their locks each). An SDK provider
    returns the same meter and instruments when asked again, so one set loses nothing."""
    if meter_provider is not None:
        return Instruments(metrics.get_meter(names.INSTRUMENTATION_SCOPE, __version__, meter_provider))
    global _global_instruments
    with _global_lock:
        if _global_instruments is None:
            _global_instruments = Instruments(metrics.get_meter(names.INSTRUMENTATION_SCOPE, __version__))
        return _global_instruments


class Telemetry:
    """A tracer and the metric instruments, from the given providers or the global ones.

    Args:
        tracer_provider: where spans go; ``None``: the global provider (as the application sets
            it with ``opentelemetry.trace.set_tracer_provider``, at any time).
        meter_provider: where metrics go; ``None``: the global provider.
        trace_content: record prompt and completion text on call spans; ``None``: only when the
            ``JITAGENT_TRACE_CONTENT`` environment variable is ``1`` (or ``true``, ``yes``, ``on``).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None, trace_content: bool | None = None) -> None:
        for name, value, kind in (("tracer_provider", tracer_provider, trace.TracerProvider),
                                  ("meter_provider", meter_provider, metrics.MeterProvider)):
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"{name} must be an OpenTelemetry {kind.__name__} (or None for the global one), "
                                f"got {type(value).__name__}: {value!r:.80}")
        if trace_content is not None and not isinstance(trace_content, bool):
            raise TypeError(f"trace_content must be True, False or None, got {trace_content!r}")
        self.tracer = trace.get_tracer(names.INSTRUMENTATION_SCOPE, __version__, tracer_provider)
        self.instruments = _instruments(meter_provider)
        self._meter_provider = meter_provider
        if trace_content is None:
            trace_content = os.environ.get(CONTENT_ENV, "").strip().lower() in _TRUE
        self.trace_content = trace_content

    @property
    def measuring(self) -> bool:
        """Whether metrics go anywhere: a meter provider was passed, or the application set one."""
        provider = self._meter_provider or metrics.get_meter_provider()
        # The API answers a proxy while no global provider is set: nothing is measured through it.
        return not isinstance(provider, (metrics.NoOpMeterProvider, ProxyMeterProvider))
