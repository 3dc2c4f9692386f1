"""Attribute sets that several spans share: an SLO's, and a deadline with its slack."""

from __future__ import annotations

from typing import Any

from jitagent.slo import SLO, StreamSLO
from jitagent.telemetry import names

__all__ = ["slo_attributes", "slack_attributes"]


def slo_attributes(slo: SLO | None) -> dict[str, Any]:
    """The SLO's kind and its parameters (nothing without an SLO)."""
    if slo is None:
        return {}
    attributes: dict[str, Any] = {names.SLO_KIND: slo.kind, names.SLO_ON_INFEASIBLE: slo.on_infeasible}
    if isinstance(slo, StreamSLO):
        attributes[names.SLO_TTFT] = slo.ttft_s
        attributes[names.SLO_TPOT] = slo.tpot_s
    else:
        attributes[names.SLO_DEADLINE] = slo.deadline_s
    return attributes


def slack_attributes(deadline: float, start: float, end: float, met: bool | None, *, offset: float,
                     slack_end_s: float | None = None) -> dict[str, Any]:
    """The deadline (as a Unix time: ``offset`` turns the times' clock into Unix time), the slack
    at the start and at the end, and whether the deadline was met. ``slack_end_s`` overrides
    ``deadline - end`` (a stream's slack is that of its worst token)."""
    attributes: dict[str, Any] = {
        names.DEADLINE: deadline + offset,
        names.SLACK_START: deadline - start,
        names.SLACK_END: deadline - end if slack_end_s is None else slack_end_s,
    }
    if met is not None:
        attributes[names.SLO_MET] = met
    return attributes
