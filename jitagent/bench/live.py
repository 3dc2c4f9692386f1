"""Runs a workload against a live engine in real time and scores it, as :func:`~jitagent.bench.runner.simulate`
does in virtual time.

The driver plays the same applications the same way: each single request is issued at its arrival
time; each pipeline run round by round, a round's calls together, the next round after the last of
them finishes and its tool gap has passed, every call carrying the round's stage deadline. Token
times are read on the engine's clock as the tokens arrive. After the arrival window the engine
serves on for up to ``drain_s``; calls still unfinished then are cancelled (aborted in the engine)
and count as missed. A refused call (:class:`~jitagent.slo.InfeasibleSLOError`) counts as missed.

Any engine with this interface can be driven (:class:`LiveEngine`): the vLLM engine through
``jitagent_vllm.ReplayEngine``, or :class:`~jitagent.engines.sim.SimEngine` in real time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from jitagent.bench.runner import DEFAULT_DRAIN_S, RunOutcome, call_record, default_warmup, stage_deadline
from jitagent.bench.workloads import CallSpec, PipelineArrival, SingleArrival, Workload
from jitagent.evaluation.goodput import RequestRecord, Window, summarize
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO, InfeasibleSLOError

__all__ = ["LiveEngine", "serve_live"]

logger = logging.getLogger(__name__)

_LEAD_S = 0.2   # the first arrival's head start: the driver's own tasks are set up by then


class LiveEngine(Protocol):
    """An engine serving in real time: tokens of a request of known lengths, on its own clock."""

    def now(self) -> float:
        """The engine's clock, in seconds (pipeline contexts are read on it)."""
        ...

    def generate(self, prompt_len: int, max_tokens: int, output_len: int, *, slo: SLO | None = None,
                 request_class: str = "default", pipeline: PipelineContext | None = None,
                 request_id: str | None = None) -> AsyncIterator[Any]:
        """Serve a request of ``prompt_len`` tokens whose answer is ``output_len`` tokens (capped by
        ``max_tokens``, which is all a policy may know); one item per output token."""
        ...


class _Driver:
    def __init__(self, workload: Workload, engine: LiveEngine, policy: str, rate: float) -> None:
        self.workload = workload
        self.engine = engine
        self.provenance = {"policy": policy, "seed": workload.seed, "rate": rate}
        self.records: list[RequestRecord] = []
        self.start = 0.0
        self.refused = 0        # by the policy, as infeasible
        self.unservable = 0     # too long for the model

    def clock(self) -> float:
        """Seconds since the run started."""
        return self.engine.now() - self.start

    async def _sleep_until(self, at: float) -> None:
        delay = at - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _call(self, request_id: str, call: CallSpec, slo: SLO, score_class: str, at: float,
                    pipeline: PipelineContext | None = None, run_id: str | None = None, run_start: float | None = None,
                    final: bool = False) -> None:
        record = call_record(request_id, call, slo, score_class, at, [], self.provenance, run_id, run_start, final)
        self.records.append(record)
        try:
            async for _ in self.engine.generate(call.prompt_len, call.max_tokens, call.output_len, slo=slo,
                                                request_class=call.request_class, pipeline=pipeline,
                                                request_id=request_id):
                record.token_times.append(self.clock())
        except InfeasibleSLOError:
            self.refused += 1
        except ValueError as exc:
            self.unservable += 1
            logger.debug("%s cannot be served: %s", request_id, exc)

    async def single(self, arrival: SingleArrival, index: int) -> None:
        await self._sleep_until(arrival.time)
        await self._call(f"r{index}", arrival.call, arrival.slo, arrival.score_class, self.clock())

    async def pipeline(self, run: PipelineArrival) -> None:
        await self._sleep_until(run.time)
        deadline = run.time + run.slo.deadline_s
        last = len(run.rounds) - 1
        for index, round_ in enumerate(run.rounds):
            if round_.gap_s:
                await asyncio.sleep(round_.gap_s)
            at = self.clock()
            context = PipelineContext(run.run_id, self.start + run.time, self.start + deadline, round_.stage,
                                      self.start + stage_deadline(at, deadline, round_))
            await asyncio.gather(*(
                self._call(f"{run.run_id}/{index}/{j}", call, run.slo, run.score_class, at, context, run.run_id,
                           run.time, index == last)
                for j, call in enumerate(round_.calls)))

    async def run(self, horizon: float, on_progress: Callable[[float], None] | None) -> float:
        self.start = self.engine.now() + _LEAD_S
        tasks = [asyncio.create_task(self.pipeline(a) if isinstance(a, PipelineArrival) else self.single(a, i))
                 for i, a in enumerate(self.workload.arrivals)]
        pending: set[asyncio.Task[None]] = set(tasks)
        while pending and self.clock() < horizon:
            _, pending = await asyncio.wait(pending, timeout=min(1.0, max(0.01, horizon - self.clock())))
            if on_progress is not None:
                on_progress(self.clock())
        for task in pending:  # past the drain: abandon (abort) what is left, it counts as missed
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, asyncio.CancelledError):
                raise result
        return self.clock()


async def serve_live(workload: Workload, engine: LiveEngine, *, policy: str, rate: float, decode_weight: float = 1.0,
                     warmup: float | None = None, drain_s: float = DEFAULT_DRAIN_S,
                     on_progress: Callable[[float], None] | None = None) -> RunOutcome:
    """Serve ``workload`` on ``engine`` in real time and score it like the simulated benchmark.

    ``policy`` names the engine's policy (for the records; the engine already runs it). Scoring
    covers arrivals in ``[warmup, workload.duration)``; ``on_progress`` gets the run's clock now and then.
    """
    started = time.perf_counter()
    driver = _Driver(workload, engine, policy, rate)
    end = await driver.run(workload.duration + drain_s, on_progress)
    if driver.refused:
        logger.info("%s: the engine refused %d calls as infeasible", policy, driver.refused)
    if driver.unservable:
        logger.warning("%s: %d calls do not fit the model's context and count as missed", policy, driver.unservable)
    warmup = default_warmup(workload.duration) if warmup is None else warmup
    summary = summarize(driver.records, Window(warmup=warmup, end=workload.duration), decode_weight=decode_weight)
    return RunOutcome(policy, rate, workload.seed, driver.records, summary, None, None, end,
                      time.perf_counter() - started)
