"""Whether a request can still meet its SLO: the arithmetic JIT admits by, and the SLO-aware router
(:mod:`jitagent.routing`) routes by, so that the two never disagree about what is feasible.

A request's next token comes once its remaining prefill has run, behind the prefill committed ahead
of it, plus one step; from then on it delivers one token a step. A deadline kind is feasible when its
last token, at an estimate of its output length, comes by the earlier of its deadline and (for a
pipeline call) its run's; a stream when its next token comes by its due time.
"""

from __future__ import annotations

from jitagent.scheduling.request import RequestState

__all__ = ["prefill_left", "first_token_at", "finish_slack", "completion_due"]


def prefill_left(req: RequestState) -> int:
    """Prefill tokens ``req`` has left to compute before its next token: none in decode."""
    left = req.num_uncomputed
    return left if left > 1 or req.num_generated == 0 else 0


def first_token_at(start: float, prefill_tokens: int, token_time: float, step_time: float) -> float:
    """When a request's next token comes if its ``prefill_tokens`` of prefill start at ``start``
    (``token_time`` seconds a token) and its token is sampled a step later."""
    return start + prefill_tokens * token_time + step_time


def finish_slack(first_token: float, remaining: float, step_time: float, due: float) -> float:
    """Seconds to spare (negative: late) for a request whose next token comes at ``first_token`` and
    that then delivers its ``remaining`` output tokens one a step, against ``due``."""
    return due - (first_token + (remaining - 1) * step_time)


def completion_due(req: RequestState) -> float:
    """When a deadline kind's last token is due: its deadline (a pipeline call's stage deadline), or
    its run's deadline where that comes first."""
    return req.deadline if req.pipeline is None else min(req.deadline, req.pipeline.run_deadline)
