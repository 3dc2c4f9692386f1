"""The run object, and the wrapper each node of a ``jit_slo`` graph runs inside.

A run's state lives in one mutable :class:`RunState` held by a context variable set before the
graph starts: LangGraph copies the context into every task (``Send`` fan-out and thread-pool
tasks included), so all of a run's nodes find the same object. At a node's start the wrapper asks
the planner for the stage deadline and enters :func:`jitagent.client.slo_scope` with the run's
pipeline context for as long as the node runs, so every LLM call the node makes through a
``JITClient`` (or a ``ChatOpenAI`` wired to one) carries it to the scheduler. The run's span and
the stage's are current in the same way (see :mod:`jitagent_langgraph.telemetry`).
"""

from __future__ import annotations

import contextvars
import math
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span

from jitagent.client import slo_scope
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import PipelineSLO
from jitagent_langgraph._compat import RunnableCallable
from jitagent_langgraph.planner import Planner, RunPath, StagePlan
from jitagent_langgraph.telemetry import GraphTelemetry

__all__ = [
    "MAX_REPORT_STAGES",
    "DeadlineExceeded",
    "OnLate",
    "RunReport",
    "RunState",
    "StageRecord",
    "UsageCallback",
    "current_run",
    "wrap_node",
]

OnLate = Literal["best_effort", "raise"]

MAX_REPORT_STAGES = 1_000  # stage records a run's report keeps (the latest); the others are counted


class DeadlineExceeded(TimeoutError):
    """A ``jit_slo`` run with ``on_late="raise"`` was past its end-to-end deadline at a node boundary."""


@dataclass(slots=True)
class StageRecord:
    """One node instance of a run: its plan and what happened (absolute times on the engine clock,
    ``time.monotonic()``)."""

    node: str
    step: int
    visit: int                 # this node's how-many-th superstep in the run
    start: float
    stage_deadline: float
    expected_s: float
    remaining_work_s: float    # W at the start: this node plus the likely steps after it
    finish: float | None = None
    llm_calls: int = 0
    tokens: int = 0

    @property
    def slack_s(self) -> float | None:
        """Stage deadline minus finish (negative: late); ``None`` while running."""
        return None if self.finish is None else self.stage_deadline - self.finish


@dataclass(frozen=True, slots=True)
class RunReport:
    """A finished run (or the part of it one call ran): its deadline, when it ended, and its
    stages in start order, the last :data:`MAX_REPORT_STAGES` of them."""

    run_id: str
    start: float               # the run's first start, also when this part was a resume
    deadline: float
    finish: float
    completed: bool            # False when it raised or was cancelled
    stages: tuple[StageRecord, ...]
    tokens: int = 0            # of all its stages (LangChain model calls: see ``UsageCallback``)
    stages_dropped: int = 0    # earliest stages left out of ``stages``
    paused: bool = False       # completed at an interrupt: resuming its thread goes on with this run
    resumed_at: float | None = None  # when this part began, if it resumed an interrupted run

    @property
    def met(self) -> bool:
        """Completed by its deadline (a paused run has not completed yet)."""
        return self.completed and not self.paused and self.finish <= self.deadline

    def format_stages(self) -> str:
        """The stages as a text table, each stage's deadline against its actual finish (seconds from
        the run's start), with the run's outcome last."""
        lines = [f"{'stage':<10}{'step':>5}{'deadline':>10}{'finish':>9}{'slack':>8}{'calls':>7}{'tokens':>8}"]
        for s in self.stages:
            finish = s.finish - self.start if s.finish is not None else float("nan")
            lines.append(f"{s.node:<10}{s.step:>5}{s.stage_deadline - self.start:>10.3f}{finish:>9.3f}"
                         f"{s.slack_s or 0.0:>8.3f}{s.llm_calls:>7}{s.tokens:>8}")
        lines.append(f"run deadline {self.deadline - self.start:.3f} s, finished at {self.finish - self.start:.3f} s: "
                     f"{'met' if self.met else 'MISSED'}")
        return "\n".join(lines)


@dataclass(slots=True)
class _StepNode:
    """The instances of one node in one superstep."""

    visit: int
    running: int = 0
    slowest_s: float = 0.0
    llm_calls: int = 0
    tokens: int = 0
    plan: StagePlan | None = None


@dataclass
class RunState:
    """One run of a ``jit_slo`` graph, shared by all its tasks (hence the lock: sync graphs run
    nodes on threads).

    What it keeps does not grow with the run's length: the steps not yet over (in a LangGraph
    run, the current one and perhaps the one before), the path the planner will learn from (a
    :class:`~jitagent_langgraph.planner.RunPath`), running totals, and the last
    :data:`MAX_REPORT_STAGES` stage records for the report. ``start`` and ``run_id`` are those of
    the run's first part when the run resumes an interrupted one (``resumed_at`` is then when
    this part began).
    """

    planner: Planner
    deadline_s: float
    on_late: OnLate
    telemetry: GraphTelemetry
    start: float = field(default_factory=time.monotonic)
    run_id: str = field(default_factory=lambda: f"run-{uuid.uuid4().hex[:12]}")
    resumed_at: float | None = None
    usage: UsageCallback = field(default_factory=lambda: UsageCallback())
    _records: deque[StageRecord] = field(default_factory=lambda: deque(maxlen=MAX_REPORT_STAGES))
    _stages: int = 0                 # stage records made, kept or not
    _tokens: int = 0                 # of the stages that ended
    _steps: dict[int, dict[str, _StepNode]] = field(default_factory=dict)  # steps not yet over
    _floor: float = -math.inf        # latest stage deadline of the steps that are over
    _path: RunPath = field(default_factory=RunPath)
    _visits: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.deadline = self.start + self.deadline_s
        self.slo = PipelineSLO(deadline_s=self.deadline_s)
        self.span: Span = INVALID_SPAN   # the run's span, once started

    def check_late(self, node: str, where: str) -> None:
        late = time.monotonic() - self.deadline
        if self.on_late == "raise" and late > 0:
            raise DeadlineExceeded(f"jit_slo run {self.run_id} passed its {self.deadline_s:g} s deadline "
                                   f"{late:.3f} s ago, at the {where} of node {node!r}")

    def begin(self, node: str, step: int) -> StageRecord:
        """Plan a node instance starting now: learn from the steps that are over, then ask the planner."""
        now = time.monotonic()
        with self._lock:
            self._retire_steps(before=step)
            nodes = self._steps.setdefault(step, {})
            entry = nodes.get(node)
            if entry is None:  # the node's first instance in this step (others are Send fan-out)
                self._visits[node] += 1
                entry = nodes[node] = _StepNode(self._visits[node])
            entry.running += 1
            if entry.plan is None:  # Send fan-out: the instances of a step share the first one's plan
                entry.plan = self.planner.plan(node, entry.visit, self._visits, now, self.deadline,
                                               self._floor_before(step))
            plan = entry.plan
            record = StageRecord(node, step, entry.visit, now, plan.stage_deadline, plan.expected_s,
                                 plan.remaining_work_s)
            self._records.append(record)
            self._stages += 1
        return record

    def end(self, record: StageRecord) -> None:
        record.finish = time.monotonic()
        with self._lock:
            entry = self._steps[record.step][record.node]
            entry.running -= 1
            entry.slowest_s = max(entry.slowest_s, record.finish - record.start)
            entry.llm_calls += record.llm_calls
            entry.tokens += record.tokens
            self._tokens += record.tokens

    def pipeline(self, record: StageRecord) -> PipelineContext:
        return PipelineContext(self.run_id, self.start, self.deadline, record.node, record.stage_deadline)

    def _floor_before(self, step: int) -> float:
        """The latest stage deadline of the steps before ``step`` (the run's start if none)."""
        pending = (entry.plan.stage_deadline for s, nodes in self._steps.items() if s < step
                   for entry in nodes.values() if entry.plan is not None)
        return max(self._floor, *pending, self.start)

    def _retire_steps(self, before: float) -> None:
        """Teach the planner each node's time in the steps before ``before`` that are over, in step
        order, and forget those steps (a run keeps only the steps still under way)."""
        for step in sorted(self._steps):
            nodes = self._steps[step]
            if step >= before or any(entry.running for entry in nodes.values()):
                return
            del self._steps[step]
            for node, entry in nodes.items():
                self.planner.observe_step(node, entry.slowest_s, entry.llm_calls, entry.tokens)
                if entry.plan is not None:
                    self._floor = max(self._floor, entry.plan.stage_deadline)
            self._path.add(frozenset(nodes))

    def start_span(self) -> None:
        """Start the run's span (at this part's start), a child of the current one."""
        began = self.start if self.resumed_at is None else self.resumed_at
        self.span = self.telemetry.start_run(self.run_id, began, self.slo)

    def finish(self, completed: bool, paused: bool = False) -> RunReport:
        """Close the run: learn from it when it completed whole (not paused at an interrupt, nor a
        resumed part), report it, end its span (with the exception being handled, if the run ended
        with one), and let go of everything the run held."""
        with self._lock:
            if completed:
                self._retire_steps(before=math.inf)
                if not paused and self.resumed_at is None:
                    self.planner.observe_run(self._path)
            records = tuple(sorted(self._records, key=lambda r: (r.start, r.step)))
            self._steps.clear()
            self._records.clear()
            self._path = RunPath()
            self.usage.clear()
        report = RunReport(self.run_id, self.start, self.deadline, time.monotonic(), completed, records,
                           tokens=self._tokens, stages_dropped=self._stages - len(records), paused=paused,
                           resumed_at=self.resumed_at)
        self.telemetry.end_run(self.span, report, None if completed else sys.exception())
        return report


_RUN: contextvars.ContextVar[RunState | None] = contextvars.ContextVar("jitagent_langgraph_run", default=None)
_STAGE: contextvars.ContextVar[StageRecord | None] = contextvars.ContextVar("jitagent_langgraph_stage",
                                                                           default=None)


def current_run() -> RunState | None:
    """The ``jit_slo`` run the calling code belongs to, if any."""
    return _RUN.get()


def run_context(run: RunState) -> contextvars.Context:
    """A copy of the current context in which ``run`` is the current run, and its span (when it
    records) the current span."""
    ctx = contextvars.copy_context()
    ctx.run(_RUN.set, run)
    if run.span.is_recording():
        # Never detached: the copy is the run's own and ends with it.
        ctx.run(otel_context.attach, trace.set_span_in_context(run.span))
    return ctx


@contextmanager
def _stage(run: RunState, node: str, config: RunnableConfig) -> Iterator[None]:
    run.check_late(node, "start")
    step = int((config.get("metadata") or {}).get("langgraph_step", 0))
    record = run.begin(node, step)
    token = _STAGE.set(record)
    span = INVALID_SPAN
    try:
        with run.telemetry.stage(run.run_id, record) as span, \
                slo_scope(run.slo, pipeline=run.pipeline(record), request_class=record.node):
            yield
    finally:
        _STAGE.reset(token)
        run.end(record)
        run.telemetry.end_stage(span, record)
    run.check_late(node, "end")


def wrap_node(name: str, inner: Runnable) -> RunnableCallable:
    """``inner`` (a node's runnable) run inside its stage's SLO scope when a ``jit_slo`` run is
    current, and unchanged otherwise.

    The wrappers are closures over ``inner`` on purpose: LangGraph finds a subgraph node by
    looking at the nonlocals of a node's function, which default arguments would hide.
    """

    def run_sync(input: Any, config: RunnableConfig) -> Any:
        run = _RUN.get()
        if run is None:
            return inner.invoke(input, config)
        with _stage(run, name, config):
            return inner.invoke(input, config)

    async def run_async(input: Any, config: RunnableConfig) -> Any:
        run = _RUN.get()
        if run is None:
            return await inner.ainvoke(input, config)
        with _stage(run, name, config):
            return await inner.ainvoke(input, config)

    return RunnableCallable(run_sync, run_async, name=name, trace=False, recurse=False)


class UsageCallback(BaseCallbackHandler):
    """Counts the LangChain LLM calls of each stage of one run, and their tokens. A model that calls another
    (a wrapper around ``ChatOpenAI``) counts once, as its innermost call; calls made with the raw
    OpenAI client are not seen by callbacks and are not counted."""

    run_inline = True  # in the caller's context, where the stage context variable is set

    def __init__(self) -> None:
        self._open: dict[UUID, bool] = {}  # LLM run in flight -> whether it made an LLM call itself

    def clear(self) -> None:
        """Forget the calls still open: their run has ended (a cancelled call reports no end)."""
        self._open.clear()

    def _start(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        if _STAGE.get() is not None:
            self._open[run_id] = False
            if parent_run_id in self._open:
                self._open[parent_run_id] = True

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start(run_id, parent_run_id)

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start(run_id, parent_run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._open.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        record = _STAGE.get()
        if self._open.pop(run_id, True) or record is None:  # an outer model, or outside every stage
            return
        record.llm_calls += 1
        record.tokens += _total_tokens(response)


def _total_tokens(response: LLMResult) -> int:
    usage = (response.llm_output or {}).get("token_usage") or {}
    if usage.get("total_tokens"):
        return int(usage["total_tokens"])
    for generations in response.generations:
        for gen in generations:
            metadata = getattr(getattr(gen, "message", None), "usage_metadata", None)
            if metadata:
                return int(metadata.get("total_tokens", 0))
    return 0
