"""How one LLM call fared against its SLO: its deadline, its slack, whether it met the SLO, and the
tokens it adds to service goodput (by :func:`jitagent.evaluation.goodput.score_request`, the
benchmark's own rule, output tokens weighing 1).

* stream: due by the last token's due time; the slack at the end is that of the worst token
  (negative as soon as one token was late); met when it finished with every token on time; its
  prompt counts if the first token was on time, and each output token if it was.
* deadline: due by ``arrival + deadline_s``; met and counted whole when it finished by then.
* pipeline: due by its stage deadline; met when it finished by then. Its tokens count with its
  run's, once the run is over (see ``jit_slo``), so the call itself adds none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jitagent.evaluation.goodput import RequestRecord, score_request
from jitagent.slo import SLO, DeadlineSLO, StreamSLO

__all__ = ["CallOutcome", "score_call"]


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """The verdict on one call; times on the clock of its inputs. All ``None`` (and no goodput)
    for a call without an SLO."""

    deadline: float | None
    slack_end_s: float | None
    met: bool | None
    goodput_tokens: int = 0


_NO_SLO = CallOutcome(None, None, None)


def score_call(slo: SLO | None, arrival: float, token_times: Sequence[float], finished: bool, end: float,
               prompt_tokens: int, stage_deadline: float | None = None) -> CallOutcome:
    """Score a call that arrived at ``arrival`` and was over at ``end``.

    Args:
        token_times: when each output token was delivered.
        finished: the answer was complete (not cut short by an error or an abort).
        stage_deadline: a pipeline call's stage deadline (else its SLO's ``deadline_s`` from arrival).
    """
    if slo is None:
        return _NO_SLO
    owed = max(len(token_times) + (not finished), 1)   # an unfinished call still owes the token it never delivered
    if isinstance(slo, StreamSLO):
        met, counted = _score(slo, arrival, token_times, owed, prompt_tokens)
        return CallOutcome(slo.token_due(arrival, owed),
                           _stream_slack(slo, arrival, token_times, finished, end), met, int(counted))
    deadline = arrival + slo.deadline_s
    if not isinstance(slo, DeadlineSLO) and stage_deadline is not None:
        deadline = stage_deadline
    done = token_times[-1] if finished and token_times else end
    if isinstance(slo, DeadlineSLO):
        met, counted = _score(slo, arrival, token_times, owed, prompt_tokens)
        return CallOutcome(deadline, deadline - done, met, int(counted))
    return CallOutcome(deadline, deadline - done, finished and done <= deadline)


def _score(slo: StreamSLO | DeadlineSLO, arrival: float, token_times: Sequence[float], owed: int,
           prompt_tokens: int) -> tuple[bool, float]:
    """The benchmark's verdict on the call as a record of ``owed`` output tokens."""
    return score_request(RequestRecord("call", "", arrival, slo, prompt_tokens, owed, list(token_times)))


def _stream_slack(slo: StreamSLO, arrival: float, token_times: Sequence[float], finished: bool, end: float) -> float:
    """The worst token's margin; an unfinished stream is also judged on the token it never delivered."""
    worst = min((slo.token_due(arrival, index) - delivered for index, delivered in enumerate(token_times, 1)),
                default=float("inf"))
    if not finished:
        worst = min(worst, slo.token_due(arrival, len(token_times) + 1) - end)
    return worst
