"""Serving a schedule of graph runs on a fresh simulated engine in real time, for one side.

Each side gets its own :class:`~jitagent_langgraph.bench.recorder.RecordingSimEngine` running its
policy, a ``JITClient`` on it, and the graphs built on the client's chat model: wrapped in
``jit_slo`` (each run's calls then carry its pipeline context: run, end-to-end deadline, stage and
stage deadline) or compiled as they are (the calls carry no SLO). The side first makes
``train_runs`` unscored runs of each graph one at a time (``jit_slo``'s planner and the policy's
length estimator learn from them); then every run of the schedule starts at its arrival time,
concurrently. A run still going at ``abandon`` times its deadline, or at the cutoff, is cancelled
(its calls aborted in the engine) and counts as missed; so does a run whose call the engine
refused. Times are wall seconds on the engine clock.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel

from jitagent.client import JITClient
from jitagent.engines.sim import SimConfig
from jitagent.evaluation.goodput import RequestRecord
from jitagent.scheduling.policies import make_policy
from jitagent_langgraph.apps import GraphApp
from jitagent_langgraph.bench.recorder import GraphRun, RecordingSimEngine, recording
from jitagent_langgraph.bench.arrivals import RunArrival, Side
from jitagent_langgraph.graph import jit_slo
from jitagent_langgraph.wrap import RunReport

__all__ = ["Replay", "ReplaySettings", "replay", "unloaded_latency"]

logger = logging.getLogger(__name__)

_LEAD_S = 0.05            # the first arrival's head start: the runs' tasks are set up by then
_MIN_DEADLINE_S = 1e-3    # what a run that starts after its deadline is given (jit_slo needs > 0)
_TRAIN_TIGHTNESS = 3.0    # deadline of the unscored training runs, in deadline units


@dataclass(frozen=True)
class ReplaySettings:
    """How each side is served.

    Attributes:
        sim: the simulated engine's profile and settings.
        time_scale: wall seconds per modelled second of the engine (> 0).
        train_runs: unscored runs of each graph, one at a time, before the schedule.
        abandon: a run still going at this many times its deadline is cancelled (missed).
        decode_weight: the policy's weight of an output token against a prompt token.
    """

    sim: SimConfig
    time_scale: float = 0.1
    train_runs: int = 3
    abandon: float = 3.0
    decode_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ValueError(f"time_scale must be > 0 to replay graphs in real time, got {self.time_scale}")
        if self.train_runs < 0 or not self.abandon >= 1:
            raise ValueError(f"train_runs must be >= 0 and abandon >= 1, got {self.train_runs}, {self.abandon}")


@dataclass
class Replay:
    """One side's replay of a schedule. ``origin`` is the engine clock of the first arrival."""

    side: Side
    runs: list[GraphRun]
    origin: float
    end: float               # when the last run ended
    steps: int               # engine steps and preemptions during the schedule
    preemptions: int
    wall_s: float            # training included

    def records(self, time_scale: float, **provenance: Any) -> list[RequestRecord]:
        """Every call of every run, on the modelled clock from ``origin`` (see :meth:`GraphRun.records`)."""
        return [record for run in self.runs for record in run.records(self.origin, time_scale, **provenance)]


@asynccontextmanager
async def _served(policy: str, settings: ReplaySettings) -> AsyncIterator[tuple[RecordingSimEngine, BaseChatModel]]:
    """A fresh engine running ``policy`` and a chat model served by it; both closed on exit."""
    engine = RecordingSimEngine(settings.sim, policy=make_policy(policy, decode_weight=settings.decode_weight),
                                time_scale=settings.time_scale)
    client = JITClient(engine=engine)
    try:
        yield engine, client.chat_model()
    finally:
        await client.close()
        await engine.aclose()


def _graphs(apps: Sequence[GraphApp], llm: BaseChatModel, with_jit_slo: bool, time_scale: float) -> dict[str, Any]:
    """Each app's graph on ``llm``: wrapped in ``jit_slo`` (the deadline is given per run) or compiled."""
    built = {app.name: app.build(llm, time_scale) for app in apps}
    if with_jit_slo:
        return {name: jit_slo(builder, deadline_s=1.0) for name, builder in built.items()}
    return {name: builder.compile() for name, builder in built.items()}


async def _invoke(graph: Any, payload: dict[str, Any], deadline_s: float, with_jit_slo: bool) -> RunReport | None:
    """One run of ``graph``; ``jit_slo``'s report of it on a ``jit_slo`` side."""
    if not with_jit_slo:
        await graph.ainvoke(payload)
        return None
    await graph.ainvoke(payload, deadline_s=max(_MIN_DEADLINE_S, deadline_s))
    return graph.last_run  # set as ainvoke returned, before any other run could end


async def unloaded_latency(apps: Sequence[GraphApp], settings: ReplaySettings, runs: int = 3) -> dict[str, float]:
    """Each graph's median latency (wall seconds) over ``runs`` runs, one at a time, as they are
    (no ``jit_slo``) on an idle ``fcfs`` engine: the unit of the benchmark's deadlines."""
    loop = asyncio.get_running_loop()
    latency = {}
    async with _served("fcfs", settings) as (_, llm):
        graphs = _graphs(apps, llm, False, settings.time_scale)
        for app in apps:
            times = []
            for i in range(runs):
                start = loop.time()
                await graphs[app.name].ainvoke(app.make_input(-1 - i))
                times.append(loop.time() - start)
            latency[app.name] = statistics.median(times)
    return latency


async def replay(side: Side, schedule: Sequence[RunArrival], apps: Sequence[GraphApp], unit_s: Mapping[str, float],
                 settings: ReplaySettings, cutoff_s: float | None = None) -> Replay:
    """Serve ``schedule`` (arrival times in wall seconds after the first) on a fresh engine for ``side``.

    Args:
        apps: the graphs the schedule names.
        unit_s: each graph's deadline unit in wall seconds: a run's deadline is its tightness times it.
        cutoff_s: every run still going this long after the first arrival is cancelled (missed).
    """
    started = time.perf_counter()
    by_name = {app.name: app for app in apps}
    loop = asyncio.get_running_loop()
    async with _served(side.policy, settings) as (engine, llm):
        graphs = _graphs(apps, llm, side.jit_slo, settings.time_scale)
        for app in apps:  # unscored training, one run at a time
            for i in range(settings.train_runs):
                await _invoke(graphs[app.name], app.make_input(10_000 + i), _TRAIN_TIGHTNESS * unit_s[app.name],
                              side.jit_slo)

        steps, preemptions = engine.core.num_steps, engine.core.num_preemptions
        origin = loop.time() + _LEAD_S
        cutoff = origin + cutoff_s if cutoff_s is not None else None
        runs = [GraphRun(f"run{a.index}", a, origin + a.at, a.tightness * unit_s[a.graph]) for a in schedule]

        async def serve(run: GraphRun) -> None:
            await asyncio.sleep(max(0.0, run.start - loop.time()))
            give_up = run.start + settings.abandon * run.deadline_s
            app = by_name[run.arrival.graph]
            with recording(run):
                try:
                    async with asyncio.timeout_at(give_up if cutoff is None else min(give_up, cutoff)):
                        run.report = await _invoke(graphs[app.name], app.make_input(run.arrival.index),
                                                   run.start + run.deadline_s - loop.time(), side.jit_slo)
                        run.finish = loop.time()
                except TimeoutError:
                    logger.debug("%s %s: abandoned", side.label, run.run_id)
                except openai.APIError as exc:   # a call refused by the engine: the run fails
                    logger.debug("%s %s failed: %s", side.label, run.run_id, exc)

        await asyncio.gather(*(serve(run) for run in runs))
        end = loop.time()
        steps, preemptions = engine.core.num_steps - steps, engine.core.num_preemptions - preemptions
    failed = sum(not run.completed for run in runs)
    if failed:
        logger.info("%s: %d of %d runs abandoned or failed", side.label, failed, len(runs))
    return Replay(side, runs, origin, end, steps, preemptions, time.perf_counter() - started)
