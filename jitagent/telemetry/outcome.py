"""How one LLM call fared against its SLO: its deadline, its slack, whether it met the SLO, and the
tokens it adds to service goodput (as :mod:`jitagent.scheduling.goodput` counts them, output tokens
weighing 1).

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
    if isinstance(slo, StreamSLO):
        return _score_stream(slo, arrival, token_times, finished, end, prompt_tokens)
    deadline = arrival + slo.deadline_s
    if not isinstance(slo, DeadlineSLO) and stage_deadline is not None:
        deadline = stage_deadline
    done = token_times[-1] if finished and token_times else end
    met = finished and done <= deadline
    goodput = prompt_tokens + len(token_times) if met and isinstance(slo, DeadlineSLO) else 0
    return CallOutcome(deadline, deadline - done, met, goodput)


def _score_stream(slo: StreamSLO, arrival: float, token_times: Sequence[float], finished: bool, end: float,
                  prompt_tokens: int) -> CallOutcome:
    worst = float("inf")
    on_time = 0
    for index, delivered in enumerate(token_times, 1):
        margin = slo.token_due(arrival, index) - delivered
        worst = min(worst, margin)
        on_time += margin >= 0
    count = len(token_times)
    if not finished:  # the next token had not come by the end
        count += 1
        worst = min(worst, slo.token_due(arrival, count) - end)
    first_ok = bool(token_times) and token_times[0] <= slo.token_due(arrival, 1)
    met = finished and on_time == len(token_times)
    return CallOutcome(slo.token_due(arrival, max(count, 1)), worst, met,
                       (prompt_tokens if first_ok else 0) + on_time)
