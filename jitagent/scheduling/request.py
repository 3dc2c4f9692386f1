"""Request state as every policy sees it, whatever engine runs the model.

A request's tokens are its prompt followed by what it has generated. ``num_computed`` counts the
tokens whose KV cache is in memory; a step that brings ``num_computed`` up to ``num_tokens``
samples one new output token (as in vLLM V1, the final output token is never itself computed).
Preemption by recompute sets ``num_computed`` back to zero: the prompt and the generated tokens
are prefilled again when the request resumes.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from jitagent.slo import SLO, DeadlineSLO, PipelineSLO, StreamSLO, is_finite_number

__all__ = ["RequestStatus", "PipelineContext", "RequestState", "MAX_NAME_CHARS"]

#: The longest request class, run id or stage a caller may send: the schedulers key on them.
MAX_NAME_CHARS = 256


class RequestStatus(enum.IntEnum):
    WAITING = 0
    RUNNING = 1
    PREEMPTED = 2
    FINISHED = 3
    ABORTED = 4
    REJECTED = 5    # refused by the policy: it cannot meet its SLO and its caller asked for a refusal, or it
                    # waited past its deadline with nothing left to earn (JIT's bounded wait)

    @property
    def is_done(self) -> bool:
        return self >= RequestStatus.FINISHED


@dataclass(frozen=True, slots=True)
class PipelineContext:
    """Where a call stands in its pipeline run. Times are absolute, on the engine's clock.

    Raises TypeError or ValueError, naming the field, for a field of the wrong type or a time
    that is not a finite number. (A deadline may lie before the run's start: a late run.)
    """

    run_id: str
    run_start: float
    run_deadline: float
    stage: str
    stage_deadline: float

    def __post_init__(self) -> None:
        for name in ("run_id", "stage"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"pipeline {name} must be a string, got {getattr(self, name)!r}")
        for name in ("run_start", "run_deadline", "stage_deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"pipeline {name} must be a number of seconds on the engine clock, got {value!r}")
            if not is_finite_number(value):
                raise ValueError(f"pipeline {name} must be a finite number of seconds on the engine clock, "
                                 f"got {value!r:.80}")


class RequestState:
    """One request's plain scheduling state; engines update it, policies read it.

    ``policy_data`` is a slot a policy may use for its own per-request bookkeeping.
    """

    __slots__ = (
        "id", "arrival", "prompt_len", "max_tokens", "slo", "request_class", "pipeline",
        "deadline", "num_computed", "num_generated", "num_blocks", "status", "token_times",
        "num_preemptions", "first_scheduled", "policy_data",
    )

    def __init__(
        self,
        id: str,
        arrival: float,
        prompt_len: int,
        max_tokens: int,
        slo: SLO | None = None,
        request_class: str = "default",
        pipeline: PipelineContext | None = None,
    ) -> None:
        self.id = id
        self.arrival = arrival
        self.prompt_len = prompt_len
        self.max_tokens = max_tokens
        self.slo = slo
        self.request_class = request_class
        self.pipeline = pipeline
        self.deadline = _completion_deadline(slo, arrival, pipeline)
        self.num_computed = 0
        self.num_generated = 0
        self.num_blocks = 0
        self.status = RequestStatus.WAITING
        self.token_times: list[float] = []
        self.num_preemptions = 0
        self.first_scheduled: float | None = None
        self.policy_data: Any = None

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens: what must be in the KV cache before the next token is sampled."""
        return self.prompt_len + self.num_generated

    @property
    def num_uncomputed(self) -> int:
        """Tokens to compute before the next output token: 1 in decode, the rest of the (re)prefill otherwise."""
        return self.prompt_len + self.num_generated - self.num_computed

    def next_due(self) -> float:
        """When this request's next deliverable is due: the next token for a stream, the stage or
        completion deadline otherwise; ``inf`` with no SLO."""
        if isinstance(self.slo, StreamSLO):
            return self.slo.token_due(self.arrival, self.num_generated + 1)
        return self.deadline

    def __repr__(self) -> str:
        return (f"RequestState({self.id!r}, {self.status.name}, prompt={self.prompt_len}, "
                f"generated={self.num_generated}, computed={self.num_computed})")


def _completion_deadline(slo: SLO | None, arrival: float, pipeline: PipelineContext | None) -> float:
    if isinstance(slo, DeadlineSLO):
        return arrival + slo.deadline_s
    if isinstance(slo, PipelineSLO):
        return pipeline.stage_deadline if pipeline is not None else arrival + slo.deadline_s
    return math.inf  # a stream's deadlines are per token: see next_due()
