"""jitagent's own metrics, recorded with the real OpenTelemetry SDK."""

from __future__ import annotations

import pytest

from jitagent.telemetry.instruments import Instruments
from otel_recorder import Recorder


@pytest.mark.parametrize("level", ["call", "stage", "run"])
def test_late_outcomes_are_recorded_as_lateness_not_dropped(level: str) -> None:
    # The SDK refuses negative histogram values (it logs and drops them): a signed slack histogram
    # would only ever show outcomes that met their deadline.
    rec = Recorder()
    instruments = Instruments(rec.meter_provider.get_meter("test"))
    instruments.record_outcome(level, 1.5, 10, {"jitagent.policy": "jit"})
    instruments.record_outcome(level, -2.0, 0, {"jitagent.policy": "jit"})
    instruments.record_outcome(level, -0.5, 0, {"jitagent.policy": "jit"})
    instruments.record_outcome(level, None, 0, {"jitagent.policy": "jit"})    # no deadline: neither

    [slack] = rec.points("jitagent.slack")
    [lateness] = rec.points("jitagent.lateness")
    assert (slack.count, slack.sum) == (1, pytest.approx(1.5))
    assert (lateness.count, lateness.sum) == (2, pytest.approx(2.5))
    assert lateness.min == pytest.approx(0.5) and lateness.max == pytest.approx(2.0)
    assert lateness.attributes == {"jitagent.policy": "jit", "jitagent.level": level}
    [goodput] = rec.points("jitagent.goodput")
    assert goodput.value == 10
