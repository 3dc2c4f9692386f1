"""The parts of OpenTelemetry that jitagent reaches and OpenTelemetry does not publish as API, in one
place: a release that moves or renames one of them breaks this module (and its test) only.

* ``opentelemetry.metrics._internal._ProxyMeterProvider``: what ``metrics.get_meter_provider()``
  answers while the application has set no provider. Metrics sent to it go nowhere until one is
  set, so :attr:`~jitagent.telemetry.providers.Telemetry.measuring` skips the work of computing them.
"""

from __future__ import annotations

from opentelemetry.metrics._internal import _ProxyMeterProvider as ProxyMeterProvider

__all__ = ["ProxyMeterProvider", "PRIVATE_APIS"]

# Every private name used, as "module:attribute.path", for the test that imports each.
PRIVATE_APIS = ("opentelemetry.metrics._internal:_ProxyMeterProvider",)
