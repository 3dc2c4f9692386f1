"""``jitagent bench --workload langgraph``: the benchmark's pipeline workload as runs of real
LangGraph graphs (the example applications) on the simulated engine in real time.

Rates, durations, SLOs and token times are in modelled seconds, as in the rest of ``jitagent bench``:
the engine runs ``time_scale`` wall seconds per modelled second, and the graphs' own Python time
counts on the same clock (scaled up by ``1 / time_scale``). First each graph's unloaded latency is
measured (the median of a few runs one at a time on an idle ``fcfs`` engine); a run's end-to-end
deadline is its tightness (drawn from ``tightness``) times that, times ``slo_scale``. Then, for
every rate and seed, the same Poisson arrivals of runs, with the same deadlines and inputs (so the
same simulated answers), are replayed for each side on a fresh engine
(:mod:`jitagent_langgraph.bench.replay`), and scored from the records of their calls like any
pipeline workload: a run's tokens count if its last call finished by its deadline. Results have the
simulated benchmark's shape, so the same tables, plot and ``results.json`` come out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from jitagent.bench.runner import RunOutcome, default_warmup
from jitagent.bench.suite import BenchConfig, BenchResult, outcome_row
from jitagent.evaluation.goodput import RequestRecord, Window, summarize
from jitagent_langgraph.apps import APPS, GraphApp, get_app
from jitagent_langgraph.bench.replay import ReplaySettings, replay, unloaded_latency
from jitagent_langgraph.bench.arrivals import Side, parse_side, poisson_runs

__all__ = ["GraphBenchOptions", "run_graph_bench"]


@dataclass(frozen=True)
class GraphBenchOptions:
    """What a graph benchmark adds to :class:`~jitagent.bench.suite.BenchConfig`.

    Attributes:
        graphs: the example graphs runs are drawn from (:data:`jitagent_langgraph.apps.APPS`).
        time_scale: wall seconds per modelled second.
        tightness: a run's deadline is one of these (at random) times its graph's unloaded latency.
        train_runs: unscored runs of each graph, one at a time, before each side's schedule.
        calibration_runs: runs of each graph whose median latency is the deadline unit.
        abandon: a run still going at this many times its deadline is cancelled (missed).
    """

    graphs: tuple[str, ...] = tuple(APPS)
    time_scale: float = 0.1
    tightness: tuple[float, ...] = (1.5, 2.0, 3.0)
    train_runs: int = 3
    calibration_runs: int = 3
    abandon: float = 3.0

    def __post_init__(self) -> None:
        if not self.graphs or not self.tightness:
            raise ValueError("a graph benchmark needs at least one graph and one tightness")
        if not (self.time_scale > 0 and min(self.tightness) > 0):
            raise ValueError(f"time scale and tightness must be > 0, got {self.time_scale} and {self.tightness}")

    def apps(self) -> list[GraphApp]:
        """The graphs by name; ValueError for an unknown one."""
        return [get_app(name) for name in self.graphs]


def run_graph_bench(config: BenchConfig, options: GraphBenchOptions = GraphBenchOptions(), *,
                    progress: bool = True) -> tuple[BenchResult, dict[str, Any]]:
    """Run every (policy, rate, seed) of ``config`` through the graphs of ``options``.

    ``config.policies`` name the sides (:func:`~jitagent_langgraph.bench.arrivals.parse_side`:
    ``fcfs`` serves plain graphs, other policies ``jit_slo`` graphs, ``+jit_slo``/``+plain``
    choose). Returns the result and what the graphs add to ``results.json`` (under ``"langgraph"``:
    the options, each graph's unloaded latency and whether each side used ``jit_slo``).

    Raises:
        ValueError: an unknown graph or policy, or a setting this benchmark does not support
            (capacity search, trace arrivals).
    """
    apps = options.apps()
    sides = [parse_side(text) for text in config.policies]
    if config.capacity:
        raise ValueError("--capacity is not supported with the langgraph workload: each run takes real time")
    if config.arrivals != "poisson":
        raise ValueError("the langgraph workload has Poisson arrivals only")
    settings = ReplaySettings(config.sim, options.time_scale, options.train_runs, options.abandon,
                              config.decode_weight)
    return asyncio.run(_run(config, options, apps, sides, settings, progress))


async def _run(config: BenchConfig, options: GraphBenchOptions, apps: Sequence[GraphApp], sides: Sequence[Side],
               settings: ReplaySettings, progress: bool) -> tuple[BenchResult, dict[str, Any]]:
    started = time.perf_counter()
    scale = options.time_scale
    unloaded = await unloaded_latency(apps, settings, options.calibration_runs)
    unit = {name: latency * (config.slo_scale or 1.0) for name, latency in unloaded.items()}
    warmup = default_warmup(config.duration) if config.warmup is None else config.warmup
    window = Window(warmup, config.duration)
    runs: list[dict[str, Any]] = []
    records: list[RequestRecord] = []
    bar = tqdm(total=len(config.rates) * len(config.seeds) * len(sides), unit="run", disable=not progress,
               bar_format="{l_bar}{bar}| {n}/{total} runs [{elapsed}<{remaining}]")
    try:
        for rate in config.rates:
            for seed in config.seeds:
                arrivals = poisson_runs(options.graphs, rate / scale, options.tightness, seed)
                schedule = list(itertools.takewhile(lambda a: a.at < config.duration * scale, arrivals))
                for side in sides:
                    done = await replay(side, schedule, apps, unit, settings,
                                        cutoff_s=(config.duration + config.drain_s) * scale)
                    calls = done.records(scale, policy=side.label, seed=seed, rate=rate)
                    outcome = RunOutcome(side.label, rate, seed, calls,
                                         summarize(calls, window, decode_weight=config.decode_weight),
                                         done.steps, done.preemptions, (done.end - done.origin) / scale, done.wall_s)
                    runs.append({**outcome_row(side.label, outcome), "jit_slo": side.jit_slo})
                    if config.keep_records:
                        records.extend(calls)
                    bar.update(1)
    finally:
        bar.close()
    extra = {"langgraph": {**dataclasses.asdict(options),
                           "unloaded_latency_s": {name: latency / scale for name, latency in unloaded.items()},
                           "jit_slo": {side.label: side.jit_slo for side in sides}}}
    return BenchResult(config, runs, None, None, records, time.perf_counter() - started), extra
