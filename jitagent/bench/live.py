"""Runs a workload against a live engine in real time and scores it, as :func:`~jitagent.bench.runner.simulate`
does in virtual time.

The driver plays the same applications the same way (:mod:`jitagent.bench.driver`): each single
request is issued at its arrival time; each pipeline run round by round, a round's calls together,
the next round after the last of them finishes and its tool gap has passed, every call carrying the
round's stage deadline. Token times are read on the engine's clock as the tokens arrive. After the arrival window the engine
serves on for up to ``drain_s``; calls still unfinished then are cancelled (aborted in the engine)
and count as missed. A refused call (:class:`~jitagent.slo.InfeasibleSLOError`) counts as missed.

Any :class:`~jitagent.engines.protocol.Engine` can be driven: the vLLM engine, or
:class:`~jitagent.engines.sim.SimEngine` in real time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from jitagent.bench.driver import PipelineRun, call_record
from jitagent.bench.runner import DEFAULT_DRAIN_S, RunOutcome, default_warmup
from jitagent.bench.suite import BenchConfig, outcome_row
from jitagent.bench.workloads import CallSpec, PipelineArrival, SingleArrival, Workload, build_workload
from jitagent.engines.protocol import Engine
from jitagent.evaluation.goodput import RequestRecord, Window, summarize
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO, InfeasibleSLOError

__all__ = ["serve_live", "serve_grid", "runs_bar"]

logger = logging.getLogger(__name__)

_LEAD_S = 0.2   # the first arrival's head start: the driver's own tasks are set up by then


class _Driver:
    def __init__(self, workload: Workload, engine: Engine, policy: str, rate: float) -> None:
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
            record.refused_at = self.clock()
            self.refused += 1
        except ValueError as exc:
            self.unservable += 1
            logger.debug("%s cannot be served: %s", request_id, exc)

    async def single(self, arrival: SingleArrival, index: int) -> None:
        await self._sleep_until(arrival.time)
        await self._call(f"r{index}", arrival.call, arrival.slo, arrival.score_class, self.clock())

    async def pipeline(self, spec: PipelineArrival) -> None:
        await self._sleep_until(spec.time)
        run = PipelineRun.of(spec)
        while run.next_round < len(spec.rounds):
            if gap := spec.rounds[run.next_round].gap_s:
                await asyncio.sleep(gap)
            at = self.clock()
            started = run.begin_round(at, clock_offset=self.start)
            await asyncio.gather(*(
                self._call(run.call_id(started.index, j), call, run.slo, spec.score_class, at, started.context,
                           run.run_id, run.start, started.final)
                for j, call in enumerate(started.round.calls)))

    async def run(self, horizon: float, on_progress: Callable[[float], None] | None) -> float:
        self.start = self.engine.now() + _LEAD_S
        tasks = [asyncio.create_task(self.pipeline(a) if isinstance(a, PipelineArrival) else self.single(a, i))
                 for i, a in enumerate(self.workload.arrivals)]
        pending: set[asyncio.Task[None]] = set(tasks)
        try:
            while pending and self.clock() < horizon:
                _, pending = await asyncio.wait(pending, timeout=min(1.0, max(0.01, horizon - self.clock())))
                if on_progress is not None:
                    on_progress(self.clock())
        except BaseException:   # the run is abandoned (Ctrl-C): its calls end with it, their outcomes taken
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for task in pending:  # past the drain: abandon (abort) what is left, it counts as missed
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, asyncio.CancelledError):
                raise result
        return self.clock()


async def serve_live(workload: Workload, engine: Engine, *, policy: str, rate: float, decode_weight: float = 1.0,
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


def runs_bar(total_runs: int, progress: bool) -> tqdm:
    """One progress bar over every run of a live benchmark (:func:`serve_grid` advances it within each
    run by the run's clock)."""
    return tqdm(total=total_runs, unit="run", disable=not progress,
                bar_format="{l_bar}{bar}| {n:.1f}/{total} runs [{elapsed}]")


async def serve_grid(config: BenchConfig, engine: Engine, *, policy: str, slo_scale: float, drain_s: float,
                     bar: tqdm) -> tuple[list[dict[str, Any]], list[RequestRecord]]:
    """Every (rate, seed) of ``config`` served live on ``engine`` in turn, each starting on an idle
    engine, its SLOs multiplied by ``slo_scale``: the results' rows and (if ``config.keep_records``)
    every request's record."""
    runs: list[dict[str, Any]] = []
    records: list[RequestRecord] = []
    for rate in config.rates:
        for seed in config.seeds:
            workload = build_workload(config.workload, rate=rate, duration=config.duration, seed=seed,
                                      arrivals=config.arrivals).with_slo_scale(slo_scale)
            done = bar.n

            def advance(now: float, done: float = done) -> None:
                bar.n = done + min(1.0, now / (config.duration + drain_s))
                bar.refresh()

            outcome = await serve_live(workload, engine, policy=policy, rate=rate, decode_weight=config.decode_weight,
                                       warmup=config.warmup, drain_s=drain_s, on_progress=advance)
            await engine.wait_idle()   # the next run starts on an idle engine
            bar.n = done + 1
            bar.refresh()
            runs.append(outcome_row(policy, outcome))
            if config.keep_records:
                records.extend(outcome.records)
    return runs, records
