"""Which LLM calls each graph run made, and what the engine did with them, as benchmark records.

A benchmark runs each graph run inside :func:`recording`, which makes the run current in a
context variable; LangGraph copies the context into every task of the run (``Send`` fan-out
included), and the client hands each call to the engine in the caller's context, so
:class:`RecordingSimEngine` finds the run of every call it is given, whether or not the graph is
wrapped in ``jit_slo`` (the scheduler is told nothing by this). Calls outside any run (warm-up)
are not recorded. :meth:`GraphRun.records` turns a run into the
:class:`~jitagent.evaluation.goodput.RequestRecord` of each call, as the rest of ``jitagent bench``
scores them: a pipeline run whose tokens count if its last call finished by the run's deadline.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jitagent.engines.sim import RequestLog, SimEngine
from jitagent.evaluation.goodput import RequestRecord
from jitagent.slo import PipelineSLO
from jitagent_langgraph.bench.arrivals import RunArrival
from jitagent_langgraph.wrap import RunReport

__all__ = ["GraphRun", "RecordedCall", "RecordingSimEngine", "recording"]


@dataclass(slots=True)
class RecordedCall:
    """One LLM call of a run: its sizes, when it was handed to the engine, and the engine's view
    of it (``log.request``, once the engine took it)."""

    prompt_len: int
    max_tokens: int
    output_len: int          # the answer's true length
    issued: float
    log: RequestLog

    @property
    def finished(self) -> bool:
        """The engine delivered the whole answer."""
        req = self.log.request
        return req is not None and len(req.token_times) == min(self.output_len, self.max_tokens)


@dataclass(slots=True)
class GraphRun:
    """One graph run of a benchmark. Times are on the engine clock (wall seconds)."""

    run_id: str
    arrival: RunArrival
    start: float                 # when it was due to start (its deadline counts from here)
    deadline_s: float
    calls: list[RecordedCall] = field(default_factory=list)
    finish: float | None = None  # when ``ainvoke`` returned; None if it did not complete
    report: RunReport | None = None   # jit_slo's report of the run (jit_slo sides, completed runs)

    @property
    def completed(self) -> bool:
        return self.finish is not None

    @property
    def latency_s(self) -> float:
        """Start to finish; infinite if the run did not complete."""
        return self.finish - self.start if self.finish is not None else math.inf

    @property
    def met(self) -> bool:
        """Completed by its deadline."""
        return self.latency_s <= self.deadline_s

    def records(self, origin: float, time_scale: float, **provenance: Any) -> list[RequestRecord]:
        """The run's calls as records on the benchmark's modelled clock: seconds after ``origin``
        divided by ``time_scale``; ``provenance``: policy, seed, rate.

        The last call of a completed run is its final round; its calls that did not finish (refused
        by the engine, then retried by the client) are left out. A run that did not complete has no
        final round, so it is scored as missed; one that made no call at all (abandoned first) is
        represented by a single call of one token, never delivered, so that it is scored too.
        """
        def clock(t: float) -> float:
            return (t - origin) / time_scale

        common: dict[str, Any] = {"score_class": f"pipeline:{self.arrival.graph}",
                                  "slo": PipelineSLO(deadline_s=self.deadline_s / time_scale),
                                  "pipeline_run": self.run_id, "run_start": clock(self.start), **provenance}
        calls = [call for call in self.calls if call.finished] if self.completed else self.calls
        if not calls:
            return [RequestRecord(id=f"{self.run_id}/none", arrival=clock(self.start), prompt_tokens=0,
                                  output_tokens=1, token_times=[], **common)]
        records = []
        for k, call in enumerate(calls):
            req = call.log.request   # None: the engine never took the call
            records.append(RequestRecord(
                id=f"{self.run_id}/{k}", arrival=clock(req.arrival if req is not None else call.issued),
                prompt_tokens=call.prompt_len, output_tokens=min(call.output_len, call.max_tokens),
                token_times=[clock(t) for t in req.token_times] if req is not None else [],
                num_preemptions=req.num_preemptions if req is not None else 0,
                first_scheduled=clock(req.first_scheduled) if req is not None and req.first_scheduled is not None
                else None,
                final_round=self.completed and k == len(calls) - 1, **common))
        return records


_RUN: contextvars.ContextVar[GraphRun | None] = contextvars.ContextVar("jitagent_langgraph_bench_run", default=None)


@contextmanager
def recording(run: GraphRun) -> Iterator[GraphRun]:
    """Record the LLM calls made in this block (and in the tasks it starts) as ``run``'s."""
    token = _RUN.set(run)
    try:
        yield run
    finally:
        _RUN.reset(token)


class RecordingSimEngine(SimEngine):
    """A :class:`SimEngine` that notes each call made inside :func:`recording` in its run."""

    def generate(self, prompt_len: int, max_tokens: int, output_len: int, *, log: RequestLog | None = None,
                 **kwargs: Any) -> AsyncIterator[int]:
        run = _RUN.get()
        if run is not None:
            log = log if log is not None else RequestLog()
            run.calls.append(RecordedCall(prompt_len, max_tokens, output_len, self.now(), log))
        return super().generate(prompt_len, max_tokens, output_len, log=log, **kwargs)
