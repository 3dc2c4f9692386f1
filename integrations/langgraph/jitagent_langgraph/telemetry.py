"""Spans and metrics of ``jit_slo`` runs: the run (``invoke_workflow {graph}``) and each node
instance, a stage (``invoke_agent {node}``), both INTERNAL.

A stage's span is the current span while its node runs, so the spans of the LLM calls the node
makes through a ``JITClient`` (``Send`` fan-out and concurrent calls included: LangGraph copies
the context into each task) are its children, and the stages are the run's. Each carries its
deadline and its slack at the start and at the end; the slack histogram gets one value per stage
and per run, and the goodput counter the tokens of every run that met its deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from langgraph.errors import GraphBubbleUp
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from jitagent.telemetry import names
from jitagent.telemetry.attributes import slack_attributes, slo_attributes
from jitagent.telemetry.clock import monotonic_offset, unix_ns
from jitagent.telemetry.providers import Telemetry

if TYPE_CHECKING:
    from jitagent.slo import PipelineSLO
    from jitagent_langgraph.wrap import RunReport, StageRecord

__all__ = ["GraphTelemetry"]


class GraphTelemetry:
    """The telemetry of one ``jit_slo`` graph, named ``workflow``."""

    def __init__(self, telemetry: Telemetry, workflow: str) -> None:
        self.telemetry = telemetry
        self.workflow = workflow

    def start_run(self, run_id: str, start: float, slo: PipelineSLO) -> Span:
        """The run's span, started at ``start`` (``time.monotonic()``), a child of the current span."""
        span = self.telemetry.tracer.start_span(f"invoke_workflow {self.workflow}", kind=SpanKind.INTERNAL,
                                                start_time=unix_ns(start, monotonic_offset()))
        if span.is_recording():
            span.set_attributes({names.OPERATION: "invoke_workflow", names.WORKFLOW_NAME: self.workflow,
                                 names.RUN_ID: run_id, **slo_attributes(slo)})
        return span

    def end_run(self, span: Span, report: RunReport, error: BaseException | None) -> None:
        """End the run's span at its finish; record its slack, and its tokens as goodput if it met
        its deadline (tokens of LangChain model calls: see ``UsageCallback``). A run paused at an
        interrupt has no outcome yet: its span ends, its metrics wait for the part that ends it.
        The span of a resumed part starts when the part did, and so does its slack at the start."""
        offset = monotonic_offset()
        began = report.start if report.resumed_at is None else report.resumed_at
        if span.is_recording():
            span.set_attributes({names.RUN_COMPLETED: report.completed and not report.paused,
                                 **slack_attributes(report.deadline, began, report.finish,
                                                    None if report.paused else report.met, offset=offset)})
            if error is not None:
                span.set_attribute(names.ERROR_TYPE, type(error).__name__)
                span.set_status(StatusCode.ERROR, str(error) or type(error).__name__)
        span.end(unix_ns(report.finish, offset))
        if self.telemetry.measuring and not report.paused:
            self.telemetry.instruments.record_outcome("run", report.deadline - report.finish,
                                                      report.tokens if report.met else 0,
                                                      {names.WORKFLOW_NAME: self.workflow})

    @contextmanager
    def stage(self, run_id: str, record: StageRecord) -> Iterator[Span]:
        """The span of a stage (a :class:`~jitagent_langgraph.wrap.StageRecord`), current while the
        block runs; the caller ends it with :meth:`end_stage` once the record has its finish."""
        span = self.telemetry.tracer.start_span(f"invoke_agent {record.node}", kind=SpanKind.INTERNAL,
                                                start_time=unix_ns(record.start, monotonic_offset()))
        if not span.is_recording():  # never made current: a no-op span would cut the calls off from their parent
            yield span
            return
        span.set_attributes({names.OPERATION: "invoke_agent", names.AGENT_NAME: record.node,
                             names.WORKFLOW_NAME: self.workflow, names.RUN_ID: run_id, names.STAGE: record.node,
                             names.STAGE_STEP: record.step, names.STAGE_VISIT: record.visit,
                             names.STAGE_EXPECTED: record.expected_s})
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            try:
                yield span
            except GraphBubbleUp:  # LangGraph's control flow (an interrupt, a Command to a parent): no error
                raise
            except Exception as error:
                span.record_exception(error)
                span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
                raise

    def end_stage(self, span: Span, record: StageRecord) -> None:
        """End a stage's span at its record's finish, with its deadline, slack and LLM usage."""
        offset = monotonic_offset()
        finish = record.finish
        assert finish is not None, "end_stage needs a finished stage"
        met = finish <= record.stage_deadline
        if span.is_recording():
            span.set_attributes({names.STAGE_LLM_CALLS: record.llm_calls, names.STAGE_TOKENS: record.tokens,
                                 **slack_attributes(record.stage_deadline, record.start, finish, met, offset=offset)})
        span.end(unix_ns(finish, offset))
        if self.telemetry.measuring:
            self.telemetry.instruments.record_outcome("stage", record.stage_deadline - finish, 0, {
                names.WORKFLOW_NAME: self.workflow, names.REQUEST_CLASS: record.node})
