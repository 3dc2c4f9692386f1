"""The metrics: GenAI server latencies per call, and jitagent's slack and lateness histograms and
goodput counter.

Every measurement carries the operation, provider and model (for calls), and ``jitagent.policy``
and ``jitagent.request_class`` where they are known; ``jitagent.level`` tells a call's slack from a
stage's or a run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import Meter

from jitagent.telemetry import names

__all__ = ["Instruments"]

# The GenAI conventions' advised buckets for time to first token and time per output token.
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
# OpenTelemetry histograms take no negative values (the SDK drops them with a warning), so signed
# slack is two histograms: how much time was left by those that met their deadline, and how late
# those that missed it were.
_SLACK_BUCKETS = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class Instruments:
    """The instruments of one meter."""

    def __init__(self, meter: Meter) -> None:
        self.ttft = meter.create_histogram(names.METRIC_TTFT, "s", "Time to the first output token",
                                           explicit_bucket_boundaries_advisory=_TTFT_BUCKETS)
        self.tpot = meter.create_histogram(names.METRIC_TPOT, "s", "Time per output token after the first",
                                           explicit_bucket_boundaries_advisory=_TPOT_BUCKETS)
        self.duration = meter.create_histogram(names.METRIC_DURATION, "s", "End-to-end duration of a call",
                                               explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)
        self.slack = meter.create_histogram(names.METRIC_SLACK, "s",
                                            "Deadline minus finish of calls, stages and runs that met their SLO",
                                            explicit_bucket_boundaries_advisory=_SLACK_BUCKETS)
        self.lateness = meter.create_histogram(names.METRIC_LATENESS, "s",
                                               "Finish minus deadline of calls, stages and runs that missed it",
                                               explicit_bucket_boundaries_advisory=_SLACK_BUCKETS)
        self.goodput = meter.create_counter(names.METRIC_GOODPUT, "{token}",
                                            "Tokens delivered within their SLO (service goodput's numerator)")

    def record_outcome(self, level: str, slack_s: float | None, goodput_tokens: int,
                       attributes: Mapping[str, Any]) -> None:
        """Slack (or lateness, when ``slack_s`` is negative) and goodput of one call, stage or run."""
        attributes = {**attributes, names.LEVEL: level}
        if slack_s is not None:
            if slack_s >= 0:
                self.slack.record(slack_s, attributes)
            else:
                self.lateness.record(-slack_s, attributes)
        if goodput_tokens:
            self.goodput.add(goodput_tokens, attributes)
