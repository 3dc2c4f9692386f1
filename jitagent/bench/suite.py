"""A benchmark: every policy at every rate and seed on one workload, plus optional capacity search.

On several replicas a "policy" is ``ROUTER/POLICY`` (:func:`routed`): every replica runs the policy,
the router places each request (``pow2/fcfs`` is what Ray Serve and vLLM give by default).

Runs are independent, so they go to a pool of worker processes (one per core by default); each
worker builds its workload from the seed, so nothing large crosses a process boundary but the
results. Progress is reported in simulated seconds.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import statistics
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from tqdm import tqdm

from jitagent.bench.capacity import find_capacity
from jitagent.bench.runner import DEFAULT_DRAIN_S, RunOutcome, default_warmup, simulate
from jitagent.bench.workloads import Workload, build_workload
from jitagent.engines.sim import SimConfig
from jitagent.evaluation.goodput import RequestRecord
from jitagent.scheduling.policies import make_policy

__all__ = ["BenchConfig", "BenchResult", "run_bench", "outcome_row", "routed", "ROUTED_SEPARATOR"]

#: Between a router and a policy in a run's name: ``slo/jit`` is the ``slo`` router before ``jit`` replicas.
ROUTED_SEPARATOR = "/"


def routed(name: str) -> tuple[str | None, str]:
    """The router (``None`` for none) and the policy of a run's name, ``ROUTER/POLICY`` or ``POLICY``."""
    router, _, policy = name.rpartition(ROUTED_SEPARATOR)
    return router or None, policy


@dataclass(frozen=True)
class BenchConfig:
    """Everything that defines a benchmark; stored verbatim in ``results.json``."""

    workload: str
    policies: tuple[str, ...]
    rates: tuple[float, ...]
    seeds: tuple[int, ...]
    duration: float
    sim: SimConfig = field(default_factory=SimConfig)
    arrivals: str = "poisson"
    decode_weight: float = 1.0
    warmup: float | None = None
    drain_s: float = DEFAULT_DRAIN_S
    capacity: bool = False
    capacity_target: float = 0.9
    keep_records: bool = False
    slo_scale: float | None = None   # SLOs and tool gaps multiplied by this; None: 1 (measured on a live engine)
    replicas: int = 1   # engines, each running the policy, behind the router a policy's name gives (ROUTER/POLICY)

    def to_dict(self) -> dict[str, Any]:
        config = asdict(self)
        config["warmup"] = default_warmup(self.duration) if self.warmup is None else self.warmup
        return config


@dataclass
class BenchResult:
    config: BenchConfig
    runs: list[dict[str, Any]]
    capacity: dict[str, float | None] | None   # None for a policy whose search had nothing to score
    capacity_probes: dict[str, list[tuple[float, float]]] | None
    records: list[RequestRecord]
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"config": self.config.to_dict(), "runs": self.runs, "wall_s": self.wall_s}
        if self.capacity is not None:
            result["capacity"] = self.capacity
            result["capacity_probes"] = {p: [list(x) for x in probes] for p, probes in (self.capacity_probes or {}).items()}
        return result


# -- work done in the worker processes ------------------------------------------------------------

_progress: Any = None  # the worker's queue to the progress bar, set by _init_worker


def _init_worker(progress: Any) -> None:
    global _progress
    _progress = progress


def _init_pool_worker(progress: Any) -> None:
    """A worker process leaves Ctrl-C to the parent, which ends the pool: a worker that took it
    would print a traceback of its own, and the pool would wait for the others' runs to end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(progress)


def _report(task: int, fraction: float) -> None:
    if _progress is not None:
        _progress.put((task, min(1.0, fraction)))


@lru_cache(maxsize=8)
def _workload(config: BenchConfig, rate: float, seed: int) -> Workload:
    workload = build_workload(config.workload, rate=rate, duration=config.duration, seed=seed, arrivals=config.arrivals)
    return workload.with_slo_scale(config.slo_scale or 1.0)


def _simulate(config: BenchConfig, policy: str, rate: float, seed: int,
              on_progress: Callable[[float], None] | None) -> RunOutcome:
    router, policy = routed(policy)
    return simulate(_workload(config, rate, seed), make_policy(policy, decode_weight=config.decode_weight),
                    config.sim, rate=rate,
                    decode_weight=config.decode_weight, warmup=config.warmup, drain_s=config.drain_s,
                    on_progress=on_progress, replicas=config.replicas, router=router)


def outcome_row(policy: str, outcome: RunOutcome) -> dict[str, Any]:
    """One run's line of ``results.json``: the policy as asked for (an ablation's name, not its
    class's; ``ROUTER/POLICY`` behind a router), provenance, score, engine counters, and the
    router's (its decisions' cost per request, the calls it refused)."""
    routing = outcome.routing.to_dict() if outcome.routing is not None else {}
    return {"policy": policy, "rate": outcome.rate, "seed": outcome.seed, **outcome.summary.to_dict(),
            "steps": outcome.steps, "engine_preemptions": outcome.preemptions,
            "simulated_s": outcome.simulated_s, "wall_s": outcome.wall_s, **routing}


def _grid_run(task: int, config: BenchConfig, policy: str, rate: float, seed: int) -> tuple[dict[str, Any], list[RequestRecord]]:
    outcome = _simulate(config, policy, rate, seed, lambda now: _report(task, now / config.duration))
    _report(task, 1.0)
    return outcome_row(policy, outcome), (outcome.records if config.keep_records else [])


_CAPACITY_PROBES_EXPECTED = 8


class _NothingScored(Exception):
    """A capacity probe whose runs scored no request: attainment there is undefined."""


def _capacity_search(task: int, config: BenchConfig, policy: str) -> tuple[str, float | None, list[tuple[float, float]]]:
    """The policy's capacity and its probes; ``None`` when a probed rate scored nothing in any seed
    (so few arrivals in the window that attainment is undefined), with the probes before it."""
    probes: list[tuple[float, float]] = []

    def attainment_at(rate: float) -> float:
        scores = [_simulate(config, policy, rate, seed, None).summary.slo_attainment for seed in config.seeds]
        present = [score for score in scores if score is not None]
        if not present:
            raise _NothingScored(rate)
        probes.append((rate, statistics.fmean(present)))
        _report(task, len(probes) / max(_CAPACITY_PROBES_EXPECTED, len(probes) + 1))
        return probes[-1][1]

    try:
        capacity: float | None = find_capacity(attainment_at, target=config.capacity_target,
                                               start=config.rates[0]).capacity
    except _NothingScored:
        capacity = None
    _report(task, 1.0)
    return policy, capacity, probes


# -- orchestration --------------------------------------------------------------------------------

def run_bench(config: BenchConfig, jobs: int | None = None, progress: bool = True) -> BenchResult:
    """Run every (policy, rate, seed) of ``config``, and the capacity search if asked.

    Args:
        jobs: worker processes (default: one per core; 1 runs everything in this process).
        progress: show a progress bar on stderr.
    """
    started = time.perf_counter()
    _workload.cache_clear()  # a workload file may have changed since the last benchmark in this process
    tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    for policy in config.policies:
        for rate in config.rates:
            for seed in config.seeds:
                tasks.append((_grid_run, (len(tasks), config, policy, rate, seed)))
    if config.capacity:
        # Capacity searches are the longest tasks: start them first.
        tasks = [(_capacity_search, (i, config, p)) for i, p in enumerate(config.policies)] + \
                [(fn, (i + len(config.policies), *args[1:])) for i, (fn, args) in enumerate(tasks)]

    jobs = min(jobs or mp.cpu_count() or 1, len(tasks))
    bar = tqdm(total=len(tasks), unit="run", disable=not progress, smoothing=0.1,
               bar_format="{l_bar}{bar}| {n:.1f}/{total} runs [{elapsed}<{remaining}]")
    try:
        outputs = _execute(tasks, jobs, bar)
    finally:
        bar.close()

    runs: list[dict[str, Any]] = []
    records: list[RequestRecord] = []
    capacity: dict[str, float | None] = {}
    probes: dict[str, list[tuple[float, float]]] = {}
    for fn, output in zip((fn for fn, _ in tasks), outputs):
        if fn is _capacity_search:
            policy, rate, policy_probes = output
            capacity[policy] = rate
            probes[policy] = policy_probes
        else:
            row, run_records = output
            runs.append(row)
            records.extend(run_records)
    return BenchResult(config, runs, capacity if config.capacity else None, probes if config.capacity else None,
                       records, time.perf_counter() - started)


def _execute(tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]], jobs: int, bar: tqdm) -> list[Any]:
    done_fraction = [0.0] * len(tasks)

    def advance(task: int, fraction: float) -> None:
        done_fraction[task] = max(done_fraction[task], fraction)
        bar.n = min(float(bar.total), round(sum(done_fraction), 3))  # no float drift past the total
        bar.refresh()

    if jobs <= 1:
        _init_worker(_LocalProgress(advance))
        try:
            return [fn(*args) for fn, args in tasks]
        finally:
            _init_worker(None)

    context = mp.get_context("fork")  # workers inherit the imported modules: no start-up cost
    progress_queue = context.Queue()
    children_before = set(mp.active_children())
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_pool_worker,
                             initargs=(progress_queue,)) as pool:
        try:
            futures: dict[Future[Any], int] = {pool.submit(fn, *args): i for i, (fn, args) in enumerate(tasks)}
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                while True:
                    try:
                        advance(*progress_queue.get_nowait())
                    except queue.Empty:
                        break
            return [future.result() for future in futures]
        except BaseException:  # Ctrl-C, or a run that failed: the benchmark is over, its other runs too
            # End the pool's processes now, not after their runs (Python 3.14's terminate_workers()).
            pool.shutdown(wait=False, cancel_futures=True)
            for worker in set(mp.active_children()) - children_before:
                worker.terminate()
            raise


class _LocalProgress:
    """The queue interface for in-process runs: reports go straight to the bar."""

    def __init__(self, advance: Callable[[int, float], None]) -> None:
        self._advance = advance

    def put(self, item: tuple[int, float]) -> None:
        self._advance(*item)

