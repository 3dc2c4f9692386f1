"""Spans of a benchmark, made after the fact from its request records (``jitagent bench --trace``).

The benchmark runs in virtual time, so its spans carry explicit timestamps: the run's virtual
seconds, counted from the Unix epoch. Each pipeline run is an ``invoke_workflow`` span holding one
stage span per round (the calls issued together) and the calls' spans; every other call is a span
of its own. Records keep no stage deadlines, so stages carry none, and a pipeline call's deadline
is its run's. Calls carry what the records hold: SLO, usage, queue time, preemptions (a count),
deadline, slack and SLO met, and a first-token event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer

from jitagent.evaluation.goodput import RequestRecord
from jitagent.slo import PipelineSLO
from jitagent.telemetry import names
from jitagent.telemetry.attributes import slack_attributes, slo_attributes
from jitagent.telemetry.calls import call_attributes, finish_call_span
from jitagent.telemetry.clock import unix_ns
from jitagent.telemetry.stats import GenerationStats

__all__ = ["trace_records"]

_VIRTUAL = 0.0   # virtual seconds are Unix seconds as they are


def trace_records(records: Iterable[RequestRecord], tracer: Tracer, model: str) -> int:
    """Make the spans of ``records`` (a benchmark's, any mix of policies, rates and seeds) with
    ``tracer``; ``model`` names the simulated model. Returns the number of spans made."""
    runs: dict[tuple[str, float, int, str], list[RequestRecord]] = defaultdict(list)
    made = 0
    for record in records:
        if record.pipeline_run is not None and isinstance(record.slo, PipelineSLO):
            runs[record.policy, record.rate, record.seed, record.pipeline_run].append(record)
        else:
            _call_span(tracer, model, record, None, None)
            made += 1
    for calls in runs.values():
        made += _run_spans(tracer, model, calls)
    return made


def _end(record: RequestRecord) -> float:
    return record.token_times[-1] if record.token_times else record.arrival


def _provenance(record: RequestRecord) -> dict[str, Any]:
    return {names.POLICY: record.policy, "jitagent.bench.rate": record.rate, "jitagent.bench.seed": record.seed}


def _call_span(tracer: Tracer, model: str, record: RequestRecord, parent: Span | None,
               run_deadline: float | None) -> None:
    context = trace.set_span_in_context(parent) if parent is not None else None
    span = tracer.start_span(f"chat {model}", context, SpanKind.INTERNAL, start_time=unix_ns(record.arrival, _VIRTUAL))
    span.set_attributes({**call_attributes("chat", model, record.prompt_tokens, None, record.slo, record.score_class,
                                           None, record.policy),
                         **_provenance(record), names.RESPONSE_ID: record.id})
    if record.pipeline_run is not None:
        span.set_attribute(names.RUN_ID, record.pipeline_run)
    stats = GenerationStats(record.arrival, record.first_scheduled, tuple(record.token_times), record.num_preemptions,
                            policy=record.policy)
    end = _end(record)
    finish_call_span(span, stats, record.slo, start=record.arrival, end=end, finished=record.finished,
                     prompt_tokens=record.prompt_tokens, stage_deadline=run_deadline, offset=_VIRTUAL, stream=False)
    span.end(unix_ns(end, _VIRTUAL))


def _run_spans(tracer: Tracer, model: str, calls: Sequence[RequestRecord]) -> int:
    """The spans of one pipeline run: the run, its rounds, their calls."""
    head = calls[0]
    slo = head.slo
    assert isinstance(slo, PipelineSLO) and head.run_start is not None and head.pipeline_run is not None
    start, deadline = head.run_start, head.run_start + slo.deadline_s
    complete = any(c.final_round for c in calls) and all(c.finished for c in calls)
    finish = max(_end(c) for c in calls)
    run = tracer.start_span(f"invoke_workflow {head.score_class}", kind=SpanKind.INTERNAL,
                            start_time=unix_ns(start, _VIRTUAL))
    run.set_attributes({names.OPERATION: "invoke_workflow", names.WORKFLOW_NAME: head.score_class,
                        names.RUN_ID: head.pipeline_run, names.RUN_COMPLETED: complete, **_provenance(head),
                        **slo_attributes(slo),
                        **slack_attributes(deadline, start, finish, complete and finish <= deadline, offset=_VIRTUAL)})
    rounds: dict[float, list[RequestRecord]] = defaultdict(list)
    for call in calls:
        rounds[call.arrival].append(call)
    for index, (arrival, members) in enumerate(sorted(rounds.items())):
        stage = tracer.start_span(f"invoke_agent round {index}", trace.set_span_in_context(run), SpanKind.INTERNAL,
                                  start_time=unix_ns(arrival, _VIRTUAL))
        stage.set_attributes({names.OPERATION: "invoke_agent", names.AGENT_NAME: f"round {index}",
                              names.RUN_ID: head.pipeline_run, names.STAGE_STEP: index,
                              names.STAGE_LLM_CALLS: len(members),
                              names.STAGE_TOKENS: sum(c.prompt_tokens + len(c.token_times) for c in members)})
        for call in members:
            _call_span(tracer, model, call, stage, deadline)
        stage.end(unix_ns(max(_end(c) for c in members), _VIRTUAL))
    run.end(unix_ns(finish, _VIRTUAL))
    return 1 + len(rounds) + len(calls)
