"""Service-level objectives: the latency promise each request carries.

Three kinds, as DESIGN.md defines them:

* :class:`StreamSLO`: the first token within ``ttft_s`` of arrival, then token *i* (1-based) by
  ``arrival + ttft_s + (i - 1) * tpot_s``;
* :class:`DeadlineSLO`: the whole response within ``deadline_s`` of arrival;
* :class:`PipelineSLO`: the last LLM call of a pipeline run completes within ``deadline_s`` of the
  run's start.

SLOs are immutable pydantic models. :func:`parse_slo` turns user input (a dict, a model, JSON text)
into one of them and raises :class:`ValueError` with a message that names what is wrong.
"""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from jitagent.validation import describe_validation_error

__all__ = ["SLO", "StreamSLO", "DeadlineSLO", "PipelineSLO", "parse_slo", "InfeasibleSLOError", "is_finite_number"]

_FLOAT_MAX = sys.float_info.max


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is an int or a float (not a bool) that is finite as a float.

    Python's (and JSON's) integers are unbounded: ``10**400`` is not one, where ``math.isfinite``
    would raise ``OverflowError`` on it. The one check of this kind for every number a caller gives.
    """
    if isinstance(value, float):
        return math.isfinite(value)
    # int-float comparisons are exact in Python: no conversion, no overflow
    return isinstance(value, int) and not isinstance(value, bool) and -_FLOAT_MAX <= value <= _FLOAT_MAX


class InfeasibleSLOError(RuntimeError):
    """The scheduler refused a request that cannot meet its SLO at the engine's current load: at
    once when it asked for that (``on_infeasible="reject"``), else after waiting as best effort."""


class _SLOBase(BaseModel):
    """Fields every SLO kind has.

    ``on_infeasible`` says what to do with a request that cannot meet its SLO even if served every
    step: ``"best_effort"`` serves it with leftover capacity, ``"reject"`` refuses it at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    on_infeasible: Literal["best_effort", "reject"] = "best_effort"

    @field_validator("*", mode="after")
    @classmethod
    def _positive_finite(cls, value: Any) -> Any:
        if isinstance(value, float) and not (math.isfinite(value) and value > 0):
            raise ValueError(f"must be a positive finite number of seconds, got {value!r}")
        return value

    def scaled(self, factor: float) -> "SLO":
        """This SLO with every time budget multiplied by ``factor`` (the workloads' tightness)."""
        if not (is_finite_number(factor) and factor > 0):
            raise ValueError(f"SLO scale factor must be positive and finite, got {factor!r:.80}")
        fields = {k: v * factor for k, v in self.model_dump().items() if isinstance(v, float)}
        if not all(math.isfinite(v) and v > 0 for v in fields.values()):  # model_copy does not validate
            raise ValueError(f"{self!r} scaled by {factor!r:.80} is beyond the range of a float")
        return self.model_copy(update=fields)  # type: ignore[return-value]


class StreamSLO(_SLOBase):
    """A token stream that starts within ``ttft_s`` and then keeps pace at ``tpot_s`` per token."""

    kind: Literal["stream"] = "stream"
    ttft_s: float
    tpot_s: float

    def token_due(self, arrival: float, index: int) -> float:
        """Due time of output token ``index`` (1-based) for a request that arrived at ``arrival``."""
        return arrival + self.ttft_s + (index - 1) * self.tpot_s


class DeadlineSLO(_SLOBase):
    """The whole response delivered within ``deadline_s`` of arrival (a tool call, a batch job)."""

    kind: Literal["deadline"] = "deadline"
    deadline_s: float


class PipelineSLO(_SLOBase):
    """A multi-call run (an agent, a pipeline) whose last call completes within ``deadline_s`` of its start."""

    kind: Literal["pipeline"] = "pipeline"
    deadline_s: float


SLO = Annotated[Union[StreamSLO, DeadlineSLO, PipelineSLO], Field(discriminator="kind")]
_SLO_ADAPTER: TypeAdapter[SLO] = TypeAdapter(SLO)
_KINDS = ("stream", "deadline", "pipeline")


def parse_slo(value: Any) -> SLO:
    """Validate ``value`` (an SLO model, a mapping or JSON text) into an SLO.

    Raises:
        ValueError: with a one-line message naming the offending field, e.g.
            ``invalid SLO: ttft_s: must be a positive finite number of seconds, got -1.0``.
    """
    if isinstance(value, (StreamSLO, DeadlineSLO, PipelineSLO)):
        return value
    try:
        if isinstance(value, (str, bytes)):
            return _SLO_ADAPTER.validate_json(value)
        return _SLO_ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise ValueError(f"invalid SLO: {describe_validation_error(exc, tags=_KINDS)}") from None
