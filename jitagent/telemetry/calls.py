"""The span of one LLM call, ``chat {model}`` or ``text_completion {model}``, and its metrics.

The in-process server starts a :class:`CallTrace` when it takes a call, as a child of the caller's
current span (a ``jit_slo`` stage's, when a graph node makes the call), and ends it when the
answer is over. The span is INTERNAL (the engine runs in-process) and follows the GenAI
conventions, with jitagent's SLO, deadline, slack and scheduling attributes; the engine's moments
(first seat, first token, preemptions) are its events. :func:`call_attributes` and
:func:`finish_call_span` are shared with the benchmark's spans, which are made after the fact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode

from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO
from jitagent.telemetry import names
from jitagent.telemetry.attributes import slack_attributes, slo_attributes
from jitagent.telemetry.clock import monotonic_offset, unix_ns
from jitagent.evaluation.outcome import CallOutcome, score_call
from jitagent.telemetry.providers import Telemetry
from jitagent.telemetry.stats import GenerationStats

if TYPE_CHECKING:  # the client is an optional part of jitagent: no import of it at run time
    from jitagent.client.backend import GenerationRequest

__all__ = ["CallTrace", "start_call", "call_attributes", "finish_call_span"]


def call_attributes(operation: str, model: str, prompt_tokens: int, max_tokens: int | None, slo: SLO | None,
                    request_class: str, pipeline: PipelineContext | None, policy: str | None) -> dict[str, Any]:
    """What a call's span carries from its start (``None``: not known)."""
    attributes: dict[str, Any] = {
        names.OPERATION: operation,
        names.PROVIDER_NAME: names.PROVIDER,
        names.REQUEST_MODEL: model,
        names.INPUT_TOKENS: prompt_tokens,
        names.REQUEST_CLASS: request_class,
        **slo_attributes(slo),
    }
    if max_tokens is not None:
        attributes[names.REQUEST_MAX_TOKENS] = max_tokens
    if policy is not None:
        attributes[names.POLICY] = policy
    if pipeline is not None:
        attributes[names.RUN_ID] = pipeline.run_id
        attributes[names.STAGE] = pipeline.stage
    return attributes


def finish_call_span(span: Span, stats: GenerationStats, slo: SLO | None, *, start: float, end: float,
                     finished: bool, prompt_tokens: int, stage_deadline: float | None, offset: float,
                     stream: bool) -> CallOutcome:
    """Score the call and, if ``span`` records, give it the engine's view: token usage, queue
    time, time sat out, preemptions, the output-length estimate, the deadline and slack, and the
    engine's moments as events. Times on the engine clock; ``offset`` makes them Unix times."""
    times = stats.token_times
    outcome = score_call(slo, stats.arrival, times, finished, end, prompt_tokens, stage_deadline)
    if not span.is_recording():
        return outcome
    attributes: dict[str, Any] = {names.OUTPUT_TOKENS: len(times)}
    if stats.first_scheduled is not None:
        attributes[names.QUEUE] = stats.first_scheduled - stats.arrival
        span.add_event(names.EVENT_ADMITTED, timestamp=unix_ns(stats.first_scheduled, offset))
    if times:
        span.add_event(names.EVENT_FIRST_TOKEN, timestamp=unix_ns(times[0], offset))
        if stream:
            attributes[names.TIME_TO_FIRST_CHUNK] = times[0] - start
    for at in stats.preempted_at or ():
        span.add_event(names.EVENT_PREEMPTED, timestamp=unix_ns(at, offset))
    optional = {names.PREEMPTIONS: stats.preemptions, names.SAT_OUT: stats.sat_out_s,
                names.ESTIMATED_OUTPUT_TOKENS: stats.estimated_output_tokens, names.POLICY: stats.policy}
    attributes.update((key, value) for key, value in optional.items() if value is not None)
    if outcome.deadline is not None:
        attributes.update(slack_attributes(outcome.deadline, start, end, outcome.met, offset=offset,
                                           slack_end_s=outcome.slack_end_s))
    span.set_attributes(attributes)
    return outcome


def _messages(prompt: Any) -> str:
    """A chat message list or a completion prompt in the GenAI conventions' message form."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict):
        messages = [{"role": m.get("role"), "parts": [{"type": "text", "content": _text(m.get("content"))}]}
                    for m in prompt]
    else:
        messages = [{"role": "user", "parts": [{"type": "text", "content": _text(prompt)}]}]
    return json.dumps(messages, ensure_ascii=False)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):  # text parts
        return "".join(str(part.get("text", part.get("refusal", ""))) for part in content)
    return json.dumps(content)  # token ids


class CallTrace:
    """One call's span and measurements, from :func:`start_call` to :meth:`end`.

    ``trace_content`` says whether the answer's text should be handed to :meth:`end`.
    """

    __slots__ = ("_telemetry", "_span", "_start", "_slo", "_pipeline", "_prompt_tokens", "_stream",
                 "_metric_attributes", "_ended", "trace_content")

    def __init__(self, telemetry: Telemetry, span: Span, slo: SLO | None, pipeline: PipelineContext | None,
                 prompt_tokens: int, stream: bool, metric_attributes: dict[str, Any]) -> None:
        self._telemetry = telemetry
        self._span = span
        self._start = time.monotonic()
        self._slo = slo
        self._pipeline = pipeline
        self._prompt_tokens = prompt_tokens
        self._stream = stream
        self._metric_attributes = metric_attributes
        self._ended = False
        self.trace_content = telemetry.trace_content and span.is_recording()

    def end(self, stats: GenerationStats | None, finish_reason: str | None, text: str | None = None,
            error: BaseException | None = None) -> None:
        """End the span (once; later calls do nothing) and record the metrics.

        ``stats`` is ``None`` when the engine never took the call; ``finish_reason`` is ``None``
        when the answer did not complete (an error, or the caller closed the stream).
        """
        if self._ended:
            return
        self._ended = True
        end = time.monotonic()
        span = self._span
        if stats is None:
            stats = GenerationStats(self._start, None, (), None)
        stage_deadline = self._pipeline.stage_deadline if self._pipeline is not None else None
        outcome = finish_call_span(span, stats, self._slo, start=self._start, end=end,
                                   finished=finish_reason is not None, prompt_tokens=self._prompt_tokens,
                                   stage_deadline=stage_deadline, offset=monotonic_offset(), stream=self._stream)
        error_type = _error_type(error) if error is not None else None
        if span.is_recording():
            if finish_reason is not None:
                span.set_attribute(names.FINISH_REASONS, [finish_reason])
            if text is not None and self.trace_content:
                span.set_attribute(names.OUTPUT_MESSAGES, json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": text}],
                      "finish_reason": finish_reason}], ensure_ascii=False))
            if error_type is not None:
                span.set_attribute(names.ERROR_TYPE, error_type)
                span.set_status(StatusCode.ERROR, str(error))
        span.end()
        if self._telemetry.measuring:
            self._record_metrics(stats, end, outcome, error_type)

    def _record_metrics(self, stats: GenerationStats, end: float, outcome: CallOutcome, error_type: str | None) -> None:
        instruments = self._telemetry.instruments
        attributes = self._metric_attributes
        if stats.policy is not None:
            attributes = {**attributes, names.POLICY: stats.policy}
        if error_type is not None:
            instruments.duration.record(end - self._start, {**attributes, names.ERROR_TYPE: error_type})
            return
        times = stats.token_times
        instruments.duration.record(end - self._start, attributes)
        if times:
            instruments.ttft.record(times[0] - stats.arrival, attributes)
        if len(times) > 1:
            instruments.tpot.record((times[-1] - times[0]) / (len(times) - 1), attributes)
        instruments.record_outcome("call", outcome.slack_end_s, outcome.goodput_tokens, attributes)


def _error_type(error: BaseException) -> str:
    """The error's code when it is an API error reply, else its class name (low cardinality)."""
    body = getattr(error, "error", None)
    if isinstance(body, Mapping) and body.get("code"):
        return str(body["code"])
    return type(error).__name__


def start_call(telemetry: Telemetry, request: GenerationRequest, *, chat: bool, model: str, stream: bool,
               prompt: Any, parent: Context | None) -> CallTrace | None:
    """Start the span of ``request`` under ``parent`` (the caller's OpenTelemetry context);
    ``prompt`` is the messages or the prompt, recorded only with content tracing on. ``None`` when
    neither a span nor a metric would be recorded, so that the caller can skip all the work."""
    operation = "chat" if chat else "text_completion"
    span = telemetry.tracer.start_span(f"{operation} {model}", parent, SpanKind.INTERNAL)
    recording = span.is_recording()
    if not recording and not telemetry.measuring:
        return None
    if recording:
        span.set_attributes(call_attributes(operation, model, request.prompt_tokens, request.max_tokens, request.slo,
                                            request.request_class, request.pipeline, None))
        span.set_attributes({names.RESPONSE_ID: request.request_id, names.RESPONSE_MODEL: model})
        if request.seed is not None:
            span.set_attribute(names.REQUEST_SEED, request.seed)
        if telemetry.trace_content:
            span.set_attribute(names.INPUT_MESSAGES, _messages(prompt))
    metric_attributes = {names.OPERATION: operation, names.PROVIDER_NAME: names.PROVIDER,
                         names.REQUEST_MODEL: model, names.REQUEST_CLASS: request.request_class}
    return CallTrace(telemetry, span, request.slo, request.pipeline, request.prompt_tokens, stream, metric_attributes)

