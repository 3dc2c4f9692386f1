"""What an engine tells telemetry about one request: :class:`GenerationStats`.

Backend-neutral: the simulated engine fills it from its request state, the vLLM engine from its
own, and ``jitagent bench --trace`` from benchmark records. Backends reach it as
``jitagent.client.backend.GenerationStats``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GenerationStats"]


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """What an engine saw of one request. Times are on the engine clock (``time.monotonic()`` for
    live engines); a field is ``None`` where the engine cannot tell.

    Attributes:
        arrival: when the engine took the request.
        first_scheduled: when it first ran (got a seat); from ``arrival`` to here it queued.
        token_times: the delivery time of each output token so far, in order.
        preemptions: how many times it was preempted (its KV cache dropped, to be recomputed).
        preempted_at: when, if the engine knows.
        sat_out_s: time spent seated, KV cache kept, in steps it did not run (JIT paces streams
            that are ahead of schedule this way).
        estimated_output_tokens: the scheduler's output-length estimate when the request arrived.
        policy: the name of the scheduling policy.
    """

    arrival: float
    first_scheduled: float | None
    token_times: tuple[float, ...]
    preemptions: int | None
    preempted_at: tuple[float, ...] | None = None
    sat_out_s: float | None = None
    estimated_output_tokens: float | None = None
    policy: str | None = None
