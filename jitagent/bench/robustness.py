"""The robustness benchmark: does ``jit`` deliver at least what the baselines do on every hardware
profile, workload and load?

The matrix is hardware × workload; each of its cells is one :class:`~jitagent.bench.suite.BenchConfig`
(profile, preset, SLO scale, workload). In each cell the load levels are found first: the arrival
rates at which ``fcfs`` attains each target share of SLOs (95%, 85%, 70%, 50%, 30% by default), by
the bracketing and bisection of :func:`~jitagent.bench.capacity.find_capacity`, on the first seed
alone, every probe shared between the targets. Then every policy runs at those rates with every
seed, and each (cell, level) is scored by service goodput (mean over seeds):

* jit / fcfs, jit / best baseline (the best of fcfs, edf, ltr and las there), jit / oracle;
* per policy, the p99 time to the final token or to the refusal, for stream and for deadline
  requests separately (calls whose arrival is scored; pipeline calls are not in these figures). A
  request neither finished nor refused when its run stopped counts the time to the run's end, a
  lower bound on its wait. The records carry no refusal time yet, so a refused request counts the
  same way (an upper bound on its wait).

Then the minima over the whole matrix name the worst cell. Searches and runs are independent, so
they go to a pool of worker processes (``fork``: workers inherit the imported modules); a cell's
runs start as soon as its rates are found. A run is a ``run_bench`` of one policy at one rate and
seed, so its row is the row ``jitagent bench`` writes.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from jitagent.bench.capacity import CapacityResult, find_capacity
from jitagent.bench.report import _render
from jitagent.bench.runner import default_warmup
from jitagent.bench.suite import BenchConfig, run_bench
from jitagent.bench.workloads import build_workload
from jitagent.engines.sim import SimConfig
from jitagent.evaluation.goodput import RequestRecord
from jitagent.scheduling.policies import make_policy
from jitagent.slo import DeadlineSLO, StreamSLO

__all__ = ["Hardware", "MatrixConfig", "MatrixResult", "DEFAULT_HARDWARE", "DEFAULT_WORKLOADS", "SUPPORT_DESK",
           "find_levels", "run_matrix", "format_matrix", "plot_heatmap", "write_outputs"]

BASELINES: tuple[str, ...] = ("fcfs", "edf", "ltr", "las")
DEFAULT_POLICIES: tuple[str, ...] = (*BASELINES, "jit", "oracle")
DEFAULT_TARGETS: tuple[float, ...] = (0.95, 0.85, 0.70, 0.50, 0.30)
SUPPORT_DESK = str(Path(__file__).resolve().parents[2] / "examples" / "workloads" / "support-desk.yaml")
DEFAULT_WORKLOADS: tuple[str, ...] = ("chat", "tool", "pipeline", "mixed", SUPPORT_DESK)
_KINDS: tuple[tuple[str, type], ...] = (("stream", StreamSLO), ("deadline", DeadlineSLO))


@dataclass(frozen=True)
class Hardware:
    """One row group of the matrix: a hardware profile, its engine preset and the SLO scale its
    workloads are played with (``None``: 1)."""

    profile: str
    preset: str | None = None
    slo_scale: float | None = None

    @classmethod
    def parse(cls, text: str) -> Hardware:
        """``PROFILE[:preset=NAME][:slo-scale=X]``, e.g. ``tiny-random-llama-cpu:slo-scale=0.45``.

        Raises:
            ValueError: on an unknown option, a bad scale, or an unknown profile or preset.
        """
        profile, *options = text.strip().split(":")
        given: dict[str, str] = {}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or key not in ("preset", "slo-scale") or key in given or not value:
                raise ValueError(f"hardware {text!r}: expected PROFILE[:preset=NAME][:slo-scale=X], "
                                 f"not {option!r}")
            given[key] = value
        scale = given.get("slo-scale")
        try:
            slo_scale = None if scale is None else float(scale)
        except ValueError:
            slo_scale = math.nan
        if slo_scale is not None and not (math.isfinite(slo_scale) and slo_scale > 0):
            raise ValueError(f"hardware {text!r}: slo-scale must be a positive number, got {scale!r}")
        hardware = cls(profile, given.get("preset"), slo_scale)
        hardware.sim().resolve()  # an unknown profile or preset fails here, before any work
        return hardware

    @property
    def label(self) -> str:
        """The spelling :meth:`parse` reads back."""
        options = ([f"preset={self.preset}"] if self.preset else []) + \
                  ([f"slo-scale={self.slo_scale:g}"] if self.slo_scale is not None else [])
        return ":".join([self.profile, *options])

    def sim(self) -> SimConfig:
        return SimConfig(profile=self.profile, preset=self.preset)


DEFAULT_HARDWARE: tuple[Hardware, ...] = (
    Hardware("llama-3.1-8b-a100"),
    Hardware("llama-3.1-8b-h100"),
    Hardware("llama-3.1-8b-a100", preset="jitserve"),
    Hardware("tiny-random-llama-cpu", slo_scale=0.45),  # its own SLOs as issue 17 measured them
)


@dataclass(frozen=True)
class MatrixConfig:
    """Everything that defines a robustness run; stored verbatim in ``robustness.json``.

    Args:
        hardware: the matrix's hardware rows.
        workloads: built-in workload names or workload files.
        policies: must hold ``fcfs`` and ``jit``; ``oracle`` and the baselines are optional.
        seeds: every policy runs at every level with each; the rates are found on the first.
        duration: arrival window of each run, seconds (warm-up and drain are ``jitagent bench``'s
            defaults); 240 s keeps the default matrix under 20 minutes on 2 cores.
        targets: fcfs attainments that define the load levels, each in (0, 1).
        rel_tol: a level's rate is within this ratio of the highest rate meeting its target.
        start_rate: where the search for the first (highest) target starts, per second.
        max_probes: rates one target's search may try, those another target's search ran included.

    Raises:
        ValueError: on a bad value, an unknown policy or a workload that cannot be built.
    """

    hardware: tuple[Hardware, ...] = DEFAULT_HARDWARE
    workloads: tuple[str, ...] = DEFAULT_WORKLOADS
    policies: tuple[str, ...] = DEFAULT_POLICIES
    seeds: tuple[int, ...] = (0, 1)
    duration: float = 240.0
    targets: tuple[float, ...] = DEFAULT_TARGETS
    rel_tol: float = 0.02
    start_rate: float = 1.0
    max_probes: int = 12

    def __post_init__(self) -> None:
        for name in ("hardware", "workloads", "policies", "seeds", "targets"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
            if len(set(getattr(self, name))) != len(getattr(self, name)):
                raise ValueError(f"{name} must not repeat an entry, got {getattr(self, name)!r}")
        missing = {"fcfs", "jit"} - set(self.policies)
        if missing:
            raise ValueError(f"policies must include fcfs and jit (the ratios' terms); missing {sorted(missing)}")
        for policy in self.policies:
            make_policy(policy)  # an unknown name fails here
        if any(seed < 0 for seed in self.seeds):
            raise ValueError(f"seeds must be >= 0, got {self.seeds!r}")
        if not all(0 < t < 1 for t in self.targets):
            raise ValueError(f"targets are fcfs attainments strictly between 0 and 1, got {self.targets!r}")
        for name in ("duration", "rel_tol", "start_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if self.max_probes < 1:
            raise ValueError(f"max_probes must be >= 1, got {self.max_probes!r}")
        for workload in self.workloads:  # a bad name or file fails here, with its own message
            build_workload(workload, rate=self.start_rate, duration=1.0, seed=self.seeds[0])

    def cells(self) -> list[BenchConfig]:
        """One benchmark configuration per (hardware, workload), policies and rates left to fill in."""
        return [BenchConfig(workload=workload, policies=(), rates=(), seeds=self.seeds, duration=self.duration,
                            sim=hardware.sim(), slo_scale=hardware.slo_scale)
                for hardware in self.hardware for workload in self.workloads]

    def to_dict(self) -> dict[str, Any]:
        config = asdict(self)
        config["hardware"] = [h.label for h in self.hardware]
        return config


# -- finding the load levels ----------------------------------------------------------------------

def find_levels(attainment_at: Callable[[float], float], targets: Sequence[float], *, start: float,
                rel_tol: float, max_probes: int) -> dict[float, CapacityResult]:
    """For each target, the highest rate at which ``attainment_at`` (falling with the rate) meets it.

    The targets are searched from the highest down; each search starts where the previous one's
    failing probes begin, and every rate is evaluated once over all searches.

    Returns:
        the search of each target (``capacity`` 0.0 where even ``start / 256`` misses it).
    """
    seen: dict[float, float] = {}

    def memo(rate: float) -> float:
        if rate not in seen:
            seen[rate] = attainment_at(rate)
        return seen[rate]

    results: dict[float, CapacityResult] = {}
    for target in sorted(targets, reverse=True):
        found = results[target] = find_capacity(memo, target=target, start=start, rel_tol=rel_tol,
                                                max_probes=max_probes)
        if found.capacity > 0:  # the next, lower target is met higher up: start at this one's first miss
            start = min((rate for rate, value in seen.items() if value < target and rate > found.capacity),
                        default=2 * found.capacity)
    return results


def _fcfs_attainment(cell: BenchConfig, rate: float) -> float:
    """fcfs's SLO attainment in ``cell`` at ``rate`` on the cell's first seed; 1 if nothing was scored
    (a rate so low that no request arrived in the window misses nothing)."""
    config = replace(cell, policies=("fcfs",), rates=(rate,), seeds=cell.seeds[:1])
    attainment = run_bench(config, jobs=1, progress=False).runs[0]["slo_attainment"]
    return 1.0 if attainment is None else attainment


def _search(cell: BenchConfig, config: MatrixConfig) -> dict[float, CapacityResult]:
    return find_levels(lambda rate: _fcfs_attainment(cell, rate), config.targets, start=config.start_rate,
                       rel_tol=config.rel_tol, max_probes=config.max_probes)


# -- running the policies -------------------------------------------------------------------------

def outcome_times(records: Iterable[RequestRecord], warmup: float, end: float, run_end: float) -> dict[str, np.ndarray]:
    """Seconds from arrival to the final token, or to the refusal, or to ``run_end`` if neither came
    (abandoned at the end of the drain), per SLO kind, of the stream and deadline requests arriving
    in ``[warmup, end)``."""
    times: dict[str, list[float]] = {kind: [] for kind, _ in _KINDS}
    for record in records:
        if not warmup <= record.arrival < end:
            continue
        for kind, slo_type in _KINDS:
            if isinstance(record.slo, slo_type):
                done = (record.token_times[-1] if record.finished
                        else record.refused_at if record.refused_at is not None else run_end)
                times[kind].append(done - record.arrival)
    return {kind: np.asarray(values, dtype=float) for kind, values in times.items()}


def _run(cell: BenchConfig, policy: str, rate: float, seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One policy at one rate and seed: its ``jitagent bench`` row and its requests' outcome times."""
    config = replace(cell, policies=(policy,), rates=(rate,), seeds=(seed,), keep_records=True)
    result = run_bench(config, jobs=1, progress=False)
    row = result.runs[0]
    return row, outcome_times(result.records, default_warmup(config.duration), config.duration, row["simulated_s"])


# -- results --------------------------------------------------------------------------------------

def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _p99(values: np.ndarray) -> float | None:
    return float(np.percentile(values, 99)) if values.size else None


@dataclass(eq=False)
class Level:
    """One load level of one cell: the rate found for its target and every policy's runs there."""

    target: float
    search: CapacityResult
    runs: dict[str, list[dict[str, Any]]]  # policy -> one row per seed, every policy of the matrix
    times: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # policy -> kind -> seconds

    @property
    def rate(self) -> float | None:
        """``None`` where fcfs missed the target even at the lowest rate searched."""
        return self.search.capacity or None

    def add(self, policy: str, row: dict[str, Any], times: dict[str, np.ndarray]) -> None:
        """One run's row and outcome times; rows kept in seed order, whatever order runs finish in."""
        rows = self.runs[policy]
        rows.append(row)
        rows.sort(key=lambda r: r["seed"])
        pooled = self.times.setdefault(policy, {})
        for kind, values in times.items():  # over the seeds
            pooled[kind] = np.concatenate([pooled[kind], values]) if kind in pooled else values

    def goodput(self, policy: str) -> float | None:
        rows = self.runs.get(policy)
        return statistics.fmean(r["service_goodput"] for r in rows) if rows else None

    def attainment(self, policy: str) -> float | None:
        values = [r["slo_attainment"] for r in self.runs.get(policy, []) if r["slo_attainment"] is not None]
        return statistics.fmean(values) if values else None

    def best_baseline(self) -> str | None:
        present = [p for p in BASELINES if self.goodput(p) is not None]
        return max(present, key=lambda p: self.goodput(p) or 0.0) if present else None

    def ratios(self) -> dict[str, float | None]:
        jit, best = self.goodput("jit"), self.best_baseline()
        return {"jit_vs_fcfs": _ratio(jit, self.goodput("fcfs")),
                "jit_vs_best_baseline": _ratio(jit, self.goodput(best) if best else None),
                "jit_vs_oracle": _ratio(jit, self.goodput("oracle"))}

    def p99(self, policy: str) -> dict[str, float | None]:
        return {kind: _p99(values) for kind, values in self.times.get(policy, {}).items()}

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "rate": self.rate, "search": self.search.to_dict(),
                "fcfs_attainment": self.attainment("fcfs"), "best_baseline": self.best_baseline(),
                **self.ratios(),
                "policies": {p: {"service_goodput": self.goodput(p), "slo_attainment": self.attainment(p),
                                 "p99_outcome_s": self.p99(p), "runs": rows} for p, rows in self.runs.items()}}


@dataclass(eq=False)
class Cell:
    hardware: Hardware
    workload: str
    levels: list[Level]

    @property
    def name(self) -> str:
        workload = Path(self.workload).stem if Path(self.workload).suffix else self.workload
        return f"{self.hardware.label} / {workload}"

    def to_dict(self) -> dict[str, Any]:
        return {"hardware": self.hardware.label, "workload": self.workload,
                "levels": [level.to_dict() for level in self.levels]}


@dataclass
class MatrixResult:
    config: MatrixConfig
    cells: list[Cell]
    wall_s: float

    def minima(self) -> dict[str, dict[str, Any] | None]:
        """Per ratio, its smallest value over the matrix and where; ``None`` if it was never measured."""
        minima: dict[str, dict[str, Any] | None] = {}
        for key in ("jit_vs_fcfs", "jit_vs_best_baseline", "jit_vs_oracle"):
            found = [(ratio, cell, level) for cell in self.cells for level in cell.levels
                     if (ratio := level.ratios()[key]) is not None]
            if not found:
                minima[key] = None
                continue
            ratio, cell, level = min(found, key=lambda item: item[0])
            minima[key] = {"value": ratio, "cell": cell.name, "target": level.target, "rate": level.rate,
                           "fcfs_attainment": level.attainment("fcfs")}
        return minima

    def worst_wait_ratio(self, floor: float = 0.5) -> dict[str, dict[str, Any] | None]:
        """Per SLO kind, the largest jit p99 / fcfs p99 of time to the final token or refusal over the
        levels where fcfs attained at least ``floor``, and where."""
        worst: dict[str, dict[str, Any] | None] = {}
        for kind, _ in _KINDS:
            found = [(ratio, cell, level) for cell in self.cells for level in cell.levels
                     if (level.attainment("fcfs") or 0.0) >= floor
                     and (ratio := _ratio(level.p99("jit").get(kind), level.p99("fcfs").get(kind))) is not None]
            if not found:
                worst[kind] = None
                continue
            ratio, cell, level = max(found, key=lambda item: item[0])
            worst[kind] = {"value": ratio, "cell": cell.name, "target": level.target}
        return worst

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "cells": [cell.to_dict() for cell in self.cells],
                "minima": self.minima(), "worst_p99_jit_vs_fcfs": self.worst_wait_ratio(), "wall_s": self.wall_s}


# -- orchestration --------------------------------------------------------------------------------

def run_matrix(config: MatrixConfig, jobs: int | None = None, progress: bool = True) -> MatrixResult:
    """Find every cell's load levels, run every policy at them, and score them.

    Only ``jobs`` searches are queued at a time, each cell's runs ahead of the next search, so that
    cells complete one after another and a run stopped early has whole cells to show.

    Args:
        jobs: worker processes (default: one per core).
        progress: on stderr, each cell's rates once found, and its tables once complete.
    """
    started = time.perf_counter()
    benches = config.cells()
    cells = [Cell(h, w, []) for h in config.hardware for w in config.workloads]
    workers = jobs or mp.cpu_count() or 1
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
    try:
        searches: dict[Future[Any], int] = {}
        runs: dict[Future[Any], tuple[int, list[Level], str]] = {}
        runs_left = [0] * len(cells)
        pending: set[Future[Any]] = set()

        def search(index: int) -> None:
            if index < len(benches):
                future = pool.submit(_search, benches[index], config)
                searches[future] = index
                pending.add(future)

        for index in range(min(workers, len(benches))):
            search(index)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future in searches:  # a cell's levels: its runs follow at once, then the next search
                    index = searches.pop(future)
                    cells[index].levels = [Level(t, s, {p: [] for p in config.policies})
                                           for t, s in future.result().items()]
                    at_rate: dict[float, list[Level]] = {}  # targets on one cliff may share a rate: run it once
                    for level in cells[index].levels:
                        if level.rate is not None:
                            at_rate.setdefault(level.rate, []).append(level)
                    for rate, levels in at_rate.items():
                        for policy in config.policies:
                            for seed in config.seeds:
                                run = pool.submit(_run, benches[index], policy, rate, seed)
                                runs[run] = (index, levels, policy)
                                pending.add(run)
                                runs_left[index] += 1
                    search(index + workers)
                    _say(progress, started, f"{cells[index].name}: fcfs rates " + ", ".join(
                        f"{lv.target:.0%} {_fmt(lv.rate, '.3g')}/s" for lv in cells[index].levels))
                else:
                    index, levels, policy = runs.pop(future)
                    row, times = future.result()
                    for level in levels:
                        level.add(policy, row, times)
                    runs_left[index] -= 1
                if runs_left[index] == 0:
                    _say(progress, started, f"{cells[index].name}: done\n{_cell_tables(cells[index], config.policies)}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure, no queued run starts
    return MatrixResult(config, cells, time.perf_counter() - started)


def _say(enabled: bool, started: float, line: str) -> None:
    if enabled:
        print(f"[{time.perf_counter() - started:5.0f} s] {line}", file=sys.stderr, flush=True)


# -- reports --------------------------------------------------------------------------------------

def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def _cell_tables(cell: Cell, policies: Sequence[str]) -> str:
    header = ["target", "rate /s", "fcfs attained", "jit/fcfs", "jit/best baseline", "jit/oracle"]
    rows = []
    for level in cell.levels:
        ratios, best = level.ratios(), level.best_baseline()
        best_cell = _fmt(ratios["jit_vs_best_baseline"]) + (f" ({best})" if best else "")
        rows.append([f"{level.target:.0%}", _fmt(level.rate, ".3g"), _fmt(level.attainment("fcfs"), ".1%"),
                     _fmt(ratios["jit_vs_fcfs"]), best_cell, _fmt(ratios["jit_vs_oracle"])])
    waits = [[f"{level.target:.0%}", *(" / ".join(_fmt(level.p99(p).get(kind), ".1f") for kind, _ in _KINDS)
                                       for p in policies)] for level in cell.levels if level.rate is not None]
    return "\n".join([f"== {cell.name} ==", _render(header, rows), "",
                      "p99 seconds to final token or refusal (streams / deadline requests):",
                      _render(["target", *policies], waits)])


def format_matrix(result: MatrixResult) -> str:
    """Every cell's ratios and waits, then the minima over the matrix and the worst cell."""
    parts = [_cell_tables(cell, result.config.policies) for cell in result.cells]
    lines, minima = ["== minima over the matrix =="], result.minima()
    for key, found in minima.items():
        name = key.replace("_vs_", " / ").replace("_", " ")
        lines.append(f"{name}: " + ("not measured" if found is None else
                                    f"{found['value']:.2f} in {found['cell']} at fcfs ~{found['target']:.0%} "
                                    f"({found['rate']:.3g}/s)"))
    for kind, found in result.worst_wait_ratio().items():
        lines.append(f"worst p99 wait jit / fcfs, {kind}s, where fcfs attains >= 50%: " +
                     ("not measured" if found is None else
                      f"{found['value']:.2f} in {found['cell']} at fcfs ~{found['target']:.0%}"))
    worst = minima["jit_vs_best_baseline"]
    if worst is not None:
        lines.append(f"worst cell: {worst['cell']} at fcfs ~{worst['target']:.0%}, jit / best baseline "
                     f"{worst['value']:.2f}")
    lines.append(f"wall time {result.wall_s:.0f} s")
    return "\n\n".join([*parts, "\n".join(lines)])


def plot_heatmap(result: MatrixResult, path: Path) -> Path:
    """A PNG: one row per cell, one column per load level, coloured and annotated with jit / best baseline."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    targets = sorted(result.config.targets, reverse=True)
    grid = np.full((len(result.cells), len(targets)), np.nan)
    notes = np.full(grid.shape, "-", dtype=object)
    for i, cell in enumerate(result.cells):
        for level in cell.levels:
            ratio = level.ratios()["jit_vs_best_baseline"]
            if ratio is not None:
                j = targets.index(level.target)
                grid[i, j] = ratio
                notes[i, j] = f"{ratio:.2f}\n{level.rate:.3g}/s"
    finite = grid[np.isfinite(grid)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (1.0, 1.0)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=min(0.8, low), vmax=max(1.25, high))
    fig, ax = plt.subplots(figsize=(4.0 + 1.1 * len(targets), 1.6 + 0.5 * len(result.cells)))
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    for (i, j), note in np.ndenumerate(notes):
        ax.text(j, i, note, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(targets)), [f"fcfs ~{t:.0%}" for t in targets], fontsize=8)
    ax.set_yticks(range(len(result.cells)), [cell.name for cell in result.cells], fontsize=8)
    fig.colorbar(image, ax=ax, label="jit / best baseline")
    ax.set_title("service goodput, jit / best of fcfs, edf, ltr, las", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the cells' names are as wide as they come
    plt.close(fig)
    return path


def write_outputs(result: MatrixResult, out: Path) -> list[Path]:
    """``robustness.json`` and ``robustness.png`` in ``out``; the paths written."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    data = out / "robustness.json"
    data.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    return [data, plot_heatmap(result, out / "robustness.png")]
