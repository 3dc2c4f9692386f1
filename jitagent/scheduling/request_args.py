"""The wire format of a request's SLO and pipeline data on its way to a scheduler in another
process: ``SamplingParams.extra_args`` in vLLM, filled from the request body's ``vllm_xargs``.

Whoever sends a request to a jitagent scheduler it does not share a process with encodes here
(:func:`encode_request_args`: ``JITClient`` to a remote ``vllm serve``, the in-process vLLM engine
to its engine process); the scheduler decodes here (:func:`parse_request_args`).

``vllm serve`` fills ``extra_args`` from the request body's ``vllm_xargs``, whose values must be
flat (strings, numbers or lists of them), so every field is a flat key:

=====================  =====================================================================
``slo``                the SLO as JSON text (or, in-process, a mapping or an SLO model), e.g.
                       ``'{"kind": "stream", "ttft_s": 1, "tpot_s": 0.1}'``
``request_class``      the kind of call (a graph node, an endpoint); the scheduler learns
                       output lengths per class (at most 256 characters, as ``run_id``
                       and ``stage``)
``run_id``, ``stage``  the pipeline run this call belongs to and its stage (both or neither)
``run_deadline_s``     seconds from the request's arrival to the run's end-to-end deadline
``stage_deadline_s``   seconds from the request's arrival to the stage's deadline (default:
                       the run's)
``run_elapsed_s``      seconds the run had been going when this call arrived (default 0)
``declared_max_tokens`` the ``max_tokens`` the scheduler should assume, when vLLM's own
                       ``max_tokens`` stands in for where the model stops (trace replay)
=====================  =====================================================================

Pipeline times are relative to the request's arrival so that no clock is shared between the caller
and the engine. Every field is optional; a request without ``slo`` is served without a promise.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jitagent.inputs import is_unicode
from jitagent.scheduling.request import MAX_NAME_CHARS, PipelineContext
from jitagent.slo import SLO, PipelineSLO, parse_slo

__all__ = ["RequestArgs", "parse_request_args", "encode_request_args", "ARG_KEYS", "MAX_NAME_CHARS"]

ARG_KEYS = frozenset({"slo", "request_class", "run_id", "stage", "run_deadline_s", "stage_deadline_s",
                      "run_elapsed_s", "declared_max_tokens"})
_PIPELINE_KEYS = ("run_id", "stage", "run_deadline_s", "stage_deadline_s", "run_elapsed_s")
_MAX_TOKENS = 2**63 - 1                  # vLLM's bound on its integer fields


@dataclass(frozen=True, slots=True)
class RequestArgs:
    """A request's validated scheduling data; pipeline times relative to its arrival."""

    slo: SLO | None = None
    request_class: str = "default"
    run_id: str | None = None
    stage: str | None = None
    run_deadline_s: float | None = None
    stage_deadline_s: float | None = None
    run_elapsed_s: float = 0.0
    declared_max_tokens: int | None = None

    def pipeline(self, arrival: float) -> PipelineContext | None:
        """The pipeline context on the clock that ``arrival`` is read from."""
        if self.run_id is None or self.stage is None or self.run_deadline_s is None:
            return None
        stage_deadline = self.stage_deadline_s if self.stage_deadline_s is not None else self.run_deadline_s
        return PipelineContext(self.run_id, arrival - self.run_elapsed_s, arrival + self.run_deadline_s,
                               self.stage, arrival + stage_deadline)


def parse_request_args(extra_args: Mapping[str, Any] | None) -> RequestArgs:
    """Validate the jitagent keys of ``extra_args`` (others are left to whoever owns them).

    Raises:
        ValueError: one line naming the field and what is wrong with it.
    """
    if not extra_args:
        return RequestArgs()
    args = {k: v for k, v in extra_args.items() if k in ARG_KEYS}
    if not args:
        return RequestArgs()
    slo = parse_slo(args["slo"]) if args.get("slo") is not None else None
    request_class = args.get("request_class", "default")
    run_id, stage = args.get("run_id"), args.get("stage")
    _check_name("request_class", request_class, required=True)
    _check_name("run_id", run_id)
    _check_name("stage", stage)
    times = {k: _seconds(k, args[k]) for k in ("run_deadline_s", "stage_deadline_s", "run_elapsed_s") if k in args}
    has_pipeline = any(k in args for k in _PIPELINE_KEYS)
    if has_pipeline and (run_id is None or stage is None or "run_deadline_s" not in times):
        raise ValueError("pipeline data needs run_id, stage and run_deadline_s together")
    if has_pipeline and not isinstance(slo, PipelineSLO):
        raise ValueError("pipeline data (run_id, stage, ...) needs a pipeline SLO ('kind': 'pipeline')")
    declared = args.get("declared_max_tokens")
    if declared is not None and (not isinstance(declared, int) or isinstance(declared, bool)
                                 or not 1 <= declared <= _MAX_TOKENS):
        raise ValueError(f"declared_max_tokens must be an integer from 1 to {_MAX_TOKENS}, got {declared!r}")
    return RequestArgs(slo, request_class, run_id, stage, times.get("run_deadline_s"), times.get("stage_deadline_s"),
                       times.get("run_elapsed_s", 0.0), declared)


def encode_request_args(slo: SLO | None = None, *, request_class: str | None = None,
                        pipeline: PipelineContext | None = None, now: float | None = None,
                        declared_max_tokens: int | None = None) -> dict[str, Any]:
    """The ``extra_args`` (or ``vllm_xargs``) that carry this data; ``pipeline`` times are read on
    the same clock as ``now``, and sent relative to it."""
    args: dict[str, Any] = {}
    if slo is not None:
        args["slo"] = parse_slo(slo).model_dump_json()
    if request_class is not None:
        _check_name("request_class", request_class)
        args["request_class"] = request_class
    if pipeline is not None:
        if now is None:
            raise ValueError("encoding a pipeline context needs `now`, on the clock of its times")
        _check_name("run_id", pipeline.run_id)
        _check_name("stage", pipeline.stage)
        args.update(run_id=pipeline.run_id, stage=pipeline.stage, run_deadline_s=pipeline.run_deadline - now,
                    stage_deadline_s=pipeline.stage_deadline - now, run_elapsed_s=max(0.0, now - pipeline.run_start))
    if declared_max_tokens is not None:
        args["declared_max_tokens"] = declared_max_tokens
    return args


def _check_name(name: str, value: Any, required: bool = False) -> None:
    """ValueError unless ``value`` (``None`` allowed unless ``required``) is a name the scheduler can
    keep: a non-empty string of at most :data:`MAX_NAME_CHARS` characters, valid Unicode (vLLM
    sends ``extra_args`` to its engine process as UTF-8, which has no lone surrogates)."""
    if value is None and not required:
        return
    if not (isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS and is_unicode(value)):
        raise ValueError(f"{name} must be a non-empty string of valid Unicode of at most {MAX_NAME_CHARS} "
                         f"characters, got {reprlib.repr(value)}")


def _seconds(name: str, value: Any) -> float:
    # Deadlines may already have passed (negative); they must still be numbers.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if name == "run_elapsed_s" and value < 0:
        raise ValueError(f"run_elapsed_s must not be negative, got {value!r}")
    return float(value)
