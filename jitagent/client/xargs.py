"""A call's scheduling data on its way to vLLM's own OpenAI server: jitagent's body fields become
``vllm_xargs`` (:mod:`jitagent.scheduling.request_args`, what ``JITScheduler`` reads).

Used wherever a call goes to such a server: in this process (``jitagent_vllm.server``) and over
HTTP (:mod:`jitagent.client.remote`). The SLO, pipeline and request class are read as the simulated
engine's server reads them (:func:`~jitagent.client.handlers.call_scheduling`); keys the caller put
in ``vllm_xargs`` itself win; and the result is checked as the scheduler will check it, so that a
mistake is a 400 at the call, not a refusal inside the engine.
"""

from __future__ import annotations

from typing import Any

from jitagent.client.context import CallScope
from jitagent.client.handlers import JITAGENT_FIELDS, APIErrorReply, call_scheduling
from jitagent.scheduling.request import PipelineContext
from jitagent.scheduling.request_args import encode_request_args, parse_request_args
from jitagent.slo import SLO

__all__ = ["move_to_vllm_xargs"]


def move_to_vllm_xargs(body: dict[str, Any], scope: CallScope | None, *, now: float, default_slo: SLO | None = None,
                       default_pipeline: PipelineContext | None = None) -> tuple[SLO | None, PipelineContext | None, str | None]:
    """Take jitagent's fields out of ``body`` and put the call's scheduling data in its
    ``vllm_xargs``, pipeline times relative to ``now`` (on the pipeline's clock). Returns the
    call's SLO, pipeline and request class (``None``: unnamed). ``body`` is left without
    ``vllm_xargs`` when the call carries nothing.

    Raises:
        APIErrorReply: 400 naming the field that is wrong.
    """
    slo, pipeline, request_class = call_scheduling(body, scope, default_slo, default_pipeline)
    for name in JITAGENT_FIELDS:
        body.pop(name, None)
    own = body.get("vllm_xargs")
    if own is not None and not isinstance(own, dict):
        raise APIErrorReply(400, f"'vllm_xargs' must be an object, got {type(own).__name__}", param="vllm_xargs")
    try:
        xargs = {**encode_request_args(slo, request_class=request_class, pipeline=pipeline, now=now), **(own or {})}
        parse_request_args(xargs)
    except (ValueError, TypeError) as exc:
        raise APIErrorReply(400, str(exc), param="vllm_xargs", code="invalid_slo") from None
    if xargs:
        body["vllm_xargs"] = xargs
    return slo, pipeline, request_class
