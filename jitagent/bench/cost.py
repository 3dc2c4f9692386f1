"""What a policy's decisions cost: wall time of ``schedule()`` per step under a heavy, steady load.

The engine is brought to ``running`` requests decoding (all seats taken, admitted first come, first
served) with ``waiting`` more queued behind them, then the policy under test takes over and every
one of its ``schedule()`` calls is timed over ``steps`` steps, frames of re-ranking included, so the
mean is the cost amortised the way the policy runs. Output lengths are long enough that nobody
finishes during the measurement, so the load stays as set. The objects of the set-up are frozen
out of the garbage collector for the measurement (``gc.freeze``), so that a full collection of the
queue the benchmark built is not timed as one decision; collections of what the steps allocate
are. The KV cache is the profile's, or larger
when that cannot hold the running requests (1,024 running need more than one A100): what a decision
costs does not depend on it while nobody is admitted.

:func:`measure_growth` measures a grid of loads (running x waiting), every policy at each load in
turn and the whole grid ``repeats`` times, pooling the timings, so that a machine busy with other
work slows every policy alike; :func:`write_growth` writes the figures as ``cost.json`` and
``cost.png``. From the command line::

    jitagent cost --policies fcfs,jit --running 64,256,1024 --waiting 100,2000,20000 --repeats 3
"""

from __future__ import annotations

import gc
import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from jitagent.bench.workloads import PipelineArrival, build_workload
from jitagent.engines.core import EngineCore
from jitagent.engines.sim import SimConfig
from jitagent.scheduling.plan import SchedulerView
from jitagent.scheduling.policies import FCFS, make_policy
from jitagent.scheduling.request import PipelineContext, RequestState

__all__ = ["DecisionCost", "measure_decision_cost", "measure_growth", "write_growth"]

#: Longest prompt of a measured request, and its max_tokens: what the KV cache must hold per seat.
_PROMPT_CAP = 2048
_MAX_TOKENS = 4096


@dataclass
class _Timings:
    """Per ``schedule()`` call: wall and CPU seconds; per step: the modelled duration (seconds)."""

    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)

    def extend(self, other: _Timings) -> None:
        self.wall_s += other.wall_s
        self.cpu_s += other.cpu_s
        self.step_s += other.step_s


@dataclass(frozen=True)
class DecisionCost:
    policy: str
    running: int
    waiting: int
    steps: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    mean_step_ms: float        # modelled step duration over the same steps
    # The same calls' CPU time (this thread's): what the policy computed, without the time the
    # machine gave to other processes meanwhile (on a busy machine, wall-time tails are theirs).
    cpu_median_ms: float = math.nan
    cpu_p99_ms: float = math.nan
    cpu_mean_ms: float = math.nan

    @classmethod
    def of(cls, policy: str, running: int, waiting: int, timings: _Timings) -> DecisionCost:
        """Figures of ``schedule()`` timings and the modelled durations of the same steps."""
        ms, cpu = np.asarray(timings.wall_s) * 1e3, np.asarray(timings.cpu_s) * 1e3
        return cls(policy, running, waiting, len(ms), float(np.median(ms)), float(np.percentile(ms, 90)),
                   float(np.percentile(ms, 99)), float(ms.mean()), statistics.fmean(timings.step_s) * 1e3,
                   float(np.median(cpu)), float(np.percentile(cpu, 99)), float(cpu.mean()))

    @property
    def amortised_share(self) -> float:
        """Mean decision time as a share of the mean modelled step time."""
        return self.mean_ms / self.mean_step_ms

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "amortised_share": self.amortised_share}


def _requests(count: int, seed: int, now: float, min_output: int) -> list[tuple[RequestState, int]]:
    """``count`` requests shaped like the ``mixed`` workload's calls (lengths, SLOs, pipelines)."""
    workload = build_workload("mixed", rate=max(1.0, count / 60), duration=120, seed=seed)
    made: list[tuple[RequestState, int]] = []
    for arrival in workload.arrivals:
        if isinstance(arrival, PipelineArrival):
            round_ = arrival.rounds[0]
            context = PipelineContext(arrival.run_id, now, now + arrival.slo.deadline_s, round_.stage,
                                      now + arrival.slo.deadline_s / max(1.0, round_.expected_rounds_left))
            calls = [(c, arrival.slo, context) for c in round_.calls]
        else:
            calls = [(arrival.call, arrival.slo, None)]
        for call, slo, context in calls:
            req = RequestState(f"c{len(made)}", now, min(call.prompt_len, _PROMPT_CAP), _MAX_TOKENS, slo=slo,
                               request_class=call.request_class, pipeline=context)
            made.append((req, max(call.output_len, min_output)))
            if len(made) == count:
                return made
    raise ValueError(f"the mixed workload gave fewer than {count} calls")


def measure_decision_cost(policy: str, *, running: int = 256, waiting: int = 2000, steps: int = 400,
                          profile: str = "llama-3.1-8b-a100", seed: int = 0) -> DecisionCost:
    """Time ``policy``'s ``schedule()`` with ``running`` requests decoding and ``waiting`` queued."""
    timings, running_now, waiting_now = _time_steps(policy, running, waiting, steps, profile, seed)
    return DecisionCost.of(policy, running_now, waiting_now, timings)


def _time_steps(policy: str, running: int, waiting: int, steps: int, profile: str,
                seed: int) -> tuple[_Timings, int, int]:
    """Each ``schedule()`` call's times and each step's modelled duration, and the running and
    waiting requests at the end."""
    config = SimConfig(profile=profile, max_num_seqs=running)
    limits = config.resolve()[1]
    needed = running * limits.blocks_for(_PROMPT_CAP + _MAX_TOKENS)
    if needed > limits.num_blocks:
        config = replace(config, num_blocks=needed)
    core: EngineCore = config.build_core(FCFS(), check_plans=False)
    now = 0.0
    for req, output_len in _requests(running, seed, now, min_output=10_000):
        core.add_request(req, output_len)
    while len(core.running) < running or any(r.num_generated == 0 for r in core.running):
        step = core.begin_step(now)
        if step is None or step.idle:
            raise ValueError(f"the engine cannot hold {running} running requests with profile {profile}")
        now += step.duration
        core.end_step(step, now)

    measured = make_policy(policy)
    for req in core.running:   # the policy takes over the running requests as they are
        if hasattr(measured, "estimator"):
            measured.estimator.observe(req.request_class, req.num_generated + 200)
    core.policy = measured
    for req, output_len in _requests(waiting, seed + 1, now, min_output=1):
        core.add_request(req, output_len)

    timings = _Timings()
    original = measured.schedule

    def timed(view: SchedulerView):  # type: ignore[no-untyped-def]
        cpu, wall = time.thread_time(), time.perf_counter()
        plan = original(view)
        timings.wall_s.append(time.perf_counter() - wall)
        timings.cpu_s.append(time.thread_time() - cpu)
        return plan

    measured.schedule = timed  # type: ignore[method-assign]
    gc.freeze()  # the set-up's objects are not the policy's garbage: no timed step scans them
    try:
        for _ in range(steps):
            step = core.begin_step(now)
            assert step is not None
            timings.step_s.append(step.duration)
            now += step.duration
            core.end_step(step, now)
    finally:
        gc.unfreeze()
    return timings, len(core.running), core.num_live - len(core.running)


def measure_growth(policies: Sequence[str], *, running: Sequence[int] = (64, 256, 1024),
                   waiting: Sequence[int] = (100, 2000, 20_000), steps: int = 400, repeats: int = 1,
                   profile: str = "llama-3.1-8b-a100", seed: int = 0) -> list[DecisionCost]:
    """:func:`measure_decision_cost` of every policy at every (running, waiting) load, ``repeats``
    times over, the policies taking turns at each load; a result per policy and load, its timings
    pooled over the repeats."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    results: list[DecisionCost] = []
    for r in running:
        for w in waiting:
            pooled = {p: _Timings() for p in policies}
            held: dict[str, tuple[int, int]] = {}
            for _ in range(repeats):
                for policy in policies:
                    timings, running_now, waiting_now = _time_steps(policy, r, w, steps, profile, seed)
                    pooled[policy].extend(timings)
                    held[policy] = (running_now, waiting_now)
            results += [DecisionCost.of(p, *held[p], pooled[p]) for p in policies]
    return results


def write_growth(results: Sequence[DecisionCost], out: Path,
                 about: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """``cost.json`` (``about``'s fields, e.g. the version and command line, then ``"results"``: one
    object per policy and load) and ``cost.png`` (mean and p99 decision time, wall and CPU, against
    the waiting requests, a line per policy and running count) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data = out / "cost.json"
    data.write_text(json.dumps({**(about or {}), "results": [r.to_dict() for r in results]}, indent=1) + "\n")
    return data, _plot_growth(results, out / "cost.png")


def _plot_growth(results: Sequence[DecisionCost], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 2, figsize=(11, 8), sharey=True)
    axes = grid.ravel()
    lines = dict.fromkeys((r.policy, r.running) for r in results)
    panels = [("mean_ms", "mean wall"), ("p99_ms", "p99 wall"), ("cpu_mean_ms", "mean CPU"), ("cpu_p99_ms", "p99 CPU")]
    for ax, (key, label) in zip(axes, panels):
        for policy, running in lines:
            points = sorted((r.waiting, getattr(r, key)) for r in results
                            if (r.policy, r.running) == (policy, running))
            ax.plot(*zip(*points), marker="o", label=f"{policy}, {running} running")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("waiting requests")
        ax.set_title(f"{label} decision time")
        ax.grid(alpha=0.3, which="both")
    for ax in grid[:, 0]:
        ax.set_ylabel("ms per schedule() call")
    for ax in grid[:, 1]:
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
