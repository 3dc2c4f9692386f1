"""What crosses from the caller's side of the app (the HTTP ingress, a Python handle) to a replica.

A call travels as a :class:`ReplicaCall`: the OpenAI request as it came (its body without jitagent's
scheduling fields) and those fields in the one wire format of SLO and pipeline data,
:mod:`jitagent.scheduling.request_args`, whose pipeline times are relative to the request's
arrival, so no clock is shared between the caller, the router and the replica. The router reads
the same fields to choose a replica (:meth:`ReplicaCall.request_args`).

A replica answers with a stream: a :class:`ReplyHead` first (status and headers), then the body's
bytes (one piece for a JSON reply, one server-sent event a piece for a streamed one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jitagent.scheduling.request_args import RequestArgs, parse_request_args

__all__ = ["ReplicaCall", "ReplyHead"]


@dataclass(frozen=True, slots=True)
class ReplicaCall:
    """One OpenAI request on its way to a replica.

    Attributes:
        method, path: the HTTP method and the path relative to the API root (``/chat/completions``).
        body: the request body, jitagent's scheduling fields taken out (they are in ``args``).
        args: the scheduling fields as :func:`~jitagent.scheduling.request_args.encode_request_args`
            writes them, pipeline times relative to ``sent_at``.
        prompt_tokens, max_tokens: the request's size as the router estimates it.
        sent_at: wall-clock time (``time.time()``) the call left the caller's side: the replica counts
            the time it spent being routed against the pipeline's deadlines.
        trace: the caller's W3C trace context (``traceparent``, ``tracestate``), so the replica's
            call span is a child of the caller's.
        refusal: set by the router when it refuses the call (no replica can meet its SLO, and the
            SLO asks for a refusal then): why. The replica answers 429 ``slo_infeasible`` at once.
    """

    method: str
    path: str
    body: bytes
    args: dict[str, Any]
    prompt_tokens: int = 0
    max_tokens: int | None = None
    sent_at: float = field(default_factory=time.time)
    trace: dict[str, str] = field(default_factory=dict)
    refusal: str | None = None

    def request_args(self) -> RequestArgs:
        """The scheduling fields, validated (the caller's side checked them before sending)."""
        return parse_request_args(self.args)

    def routing_delay(self) -> float:
        """Seconds since the call was sent (never negative: hosts' clocks may disagree a little)."""
        return max(0.0, time.time() - self.sent_at)


@dataclass(frozen=True, slots=True)
class ReplyHead:
    """The first item of a replica's answer: the HTTP status and headers of the reply."""

    status: int
    headers: dict[str, str]

    @property
    def streamed(self) -> bool:
        """Whether the body that follows is server-sent events (else one JSON document)."""
        return self.headers.get("content-type", "").startswith("text/event-stream")
