"""Building workloads: the built-in workloads, arrival processes and :func:`build_workload`.

Built-in workloads (DESIGN.md, "Workloads"):

* ``chat``: (prompt, output) pairs drawn with replacement from the rows of the Azure 2023
  conversation trace, each row's pair kept together; ``StreamSLO(ttft_s=1.0, tpot_s=0.1)``.
* ``tool``: the same from the Azure 2023 code trace; ``DeadlineSLO(deadline_s=10.0)``.
* ``pipeline``: runs of the applications in ``data/pipelines.json``, the app drawn uniformly per
  run; ``PipelineSLO(deadline_s=10.0 * rounds)`` where ``rounds`` is the run's number of rounds.
* ``mixed``: chat, tool and pipeline arrivals in equal numbers (up to one), total rate ``rate``.

Every request's or run's SLO is multiplied by a tightness factor drawn uniformly from {1, 2, 3, 4}.
Built-in calls carry ``max_tokens=4096``; the true output length is at most that.

Arrivals: ``"poisson"`` draws exponential gaps of mean ``1 / rate``; ``"trace"`` replays the trace's
own timestamps (the code trace for ``tool``, the conversation trace otherwise): its first
``round(rate * duration)`` requests, the trace repeated end to end where it has too few, time-scaled
to fill ``duration``, so the mean rate is ``rate``. Trace mode uses the timestamps only; lengths
are drawn as in Poisson mode, and the arrival times do not depend on the seed. Arrivals are then
shared among a workload's classes in proportion to their weights, exactly up to rounding (largest
remainder), in a random order: ``mixed`` is three classes of equal weight, so its kinds are equal in
number, not just in expectation.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jitagent.bench.workloads.apps import _App, _builtin_app, _quantile_draw, _Uniforms
from jitagent.bench.workloads.data import _builtin_app_specs, _load_trace
from jitagent.bench.workloads.model import (
    Arrival,
    CallSpec,
    PipelineArrival,
    Round,
    SingleArrival,
    Workload,
)
from jitagent.bench.workloads.schema import (
    DEFAULT_DEADLINE_PER_ROUND_S,
    DEFAULT_MAX_TOKENS,
    DEFAULT_TIGHTNESS,
    WORKLOAD_FILE_SUFFIXES,
    PipelineClassSpec,
    SingleClassSpec,
    TokenQuantiles,
    load_workload_file,
)
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO

BUILTIN_WORKLOADS: tuple[str, ...] = ("chat", "tool", "pipeline", "mixed")
ARRIVAL_PROCESSES: tuple[str, ...] = ("poisson", "trace")

CHAT_SLO = StreamSLO(ttft_s=1.0, tpot_s=0.1)
TOOL_SLO = DeadlineSLO(deadline_s=10.0)
# Far above any benchmark run; keep a typo in rate or duration from exhausting memory.
MAX_ARRIVALS = 10_000_000
MAX_CALLS = 10_000_000       # LLM calls, every call of every pipeline run counted
MAX_DURATION_S = 1e7         # about 116 days; below it float seconds resolve 2 ns, so step times add up


@dataclass(frozen=True)
class _SingleSource:
    score_class: str
    request_class: str
    lengths: str | tuple[TokenQuantiles | int, TokenQuantiles | int]  # a trace name or distributions
    slo: StreamSLO | DeadlineSLO
    tightness: tuple[float, ...]
    max_tokens: int

    def sample(self, times: list[float], rng: np.random.Generator) -> list[SingleArrival]:
        """One request per arrival time."""
        n = len(times)
        if isinstance(self.lengths, str):
            trace = _load_trace(self.lengths)
            rows = rng.integers(0, len(trace.prompt), n)
            prompt, output = trace.prompt[rows], np.minimum(trace.output[rows], self.max_tokens)
        else:
            prompt = _draw_tokens(self.lengths[0], rng.random(n), None)
            output = _draw_tokens(self.lengths[1], rng.random(n), self.max_tokens)
        slos = [self.slo.scaled(f) for f in self.tightness]
        tight = rng.integers(0, len(slos), n)
        return [
            SingleArrival(
                t, CallSpec(p, o, self.max_tokens, self.request_class), slos[i], self.score_class
            )
            for t, p, o, i in zip(times, prompt.tolist(), output.tolist(), tight.tolist())
        ]


def _draw_tokens(dist: TokenQuantiles | int, u: np.ndarray, cap: int | None) -> np.ndarray:
    if isinstance(dist, int):
        return np.full(len(u), dist if cap is None else min(dist, cap), dtype=np.int64)
    return _quantile_draw(dist.quantiles, dist.resolved_levels(), u, cap)


@dataclass(frozen=True)
class _PipelineSource:
    apps: tuple[tuple[_App, str], ...]  # (app, score class), drawn uniformly per run
    deadline_per_round_s: float | None  # None: the fixed ``slo``
    slo: PipelineSLO | None
    tightness: tuple[float, ...]
    max_tokens: int

    def sample(
        self, times: list[float], runs: list[int], rng: np.random.Generator
    ) -> list[PipelineArrival]:
        """One run per arrival time; ``runs`` are the runs' numbers for their ids."""
        n = len(times)
        which = rng.integers(0, len(self.apps), n).tolist()
        tight = rng.integers(0, len(self.tightness), n).tolist()
        u = _Uniforms(rng)
        shapes = []
        calls = 0
        for a in which:
            shape = self.apps[a][0].sample_rounds(u)
            calls += sum(width for _, width, _, _ in shape)
            if calls > MAX_CALLS:  # before the calls' token counts are drawn
                raise ValueError(f"the workload's pipeline runs make more than {MAX_CALLS} calls; "
                                 "lower the rate or the duration")
            shapes.append(shape)
        # Token counts: one vectorised draw per (app, stage), handed out in order.
        needed: Counter[tuple[int, int]] = Counter()
        for a, shape in zip(which, shapes):
            for s, width, _, _ in shape:
                needed[a, s] += width
        tokens = {}
        for (a, s), count in sorted(needed.items()):
            app = self.apps[a][0]
            st = app.stages[s]
            prompt = _quantile_draw(st.prompt_quantiles, app.levels, rng.random(count))
            output = _quantile_draw(
                st.completion_quantiles, app.levels, rng.random(count), self.max_tokens
            )
            tokens[a, s] = zip(prompt.tolist(), output.tolist())
        slos: dict[float, PipelineSLO] = {}
        arrivals: list[PipelineArrival] = []
        for time, run, a, f, shape in zip(times, runs, which, tight, shapes):
            app, score_class = self.apps[a]
            rounds = []
            for s, width, gap, erl in shape:
                rc = f"{app.name}/{app.stages[s].name}"
                calls = tuple(
                    CallSpec(p, o, self.max_tokens, rc) for p, o in itertools.islice(tokens[a, s], width)
                )
                rounds.append(Round(app.stages[s].name, calls, gap, erl))
            if self.slo is not None:
                deadline = self.slo.deadline_s * self.tightness[f]
            else:
                deadline = self.deadline_per_round_s * len(rounds) * self.tightness[f]
            slo = slos.get(deadline)
            if slo is None:
                slo = slos[deadline] = PipelineSLO(deadline_s=deadline)
            arrivals.append(
                PipelineArrival(time, f"run-{run}", app.name, tuple(rounds), slo, score_class)
            )
        return arrivals


_Source = _SingleSource | _PipelineSource


@functools.lru_cache(maxsize=None)
def _builtin_sources(name: str) -> tuple[tuple[_Source, ...], str]:
    """A built-in workload's classes (equal weights) and the trace whose timestamps it replays."""
    chat = _SingleSource("chat", "chat", "conv", CHAT_SLO, DEFAULT_TIGHTNESS, DEFAULT_MAX_TOKENS)
    tool = _SingleSource("tool", "tool", "code", TOOL_SLO, DEFAULT_TIGHTNESS, DEFAULT_MAX_TOKENS)
    pipeline = _PipelineSource(
        apps=tuple((_builtin_app(a), f"pipeline:{a}") for a in _builtin_app_specs()),
        deadline_per_round_s=DEFAULT_DEADLINE_PER_ROUND_S,
        slo=None,
        tightness=DEFAULT_TIGHTNESS,
        max_tokens=DEFAULT_MAX_TOKENS,
    )
    return {
        "chat": ((chat,), "conv"),
        "tool": ((tool,), "code"),
        "pipeline": ((pipeline,), "conv"),
        "mixed": ((chat, tool, pipeline), "conv"),
    }[name]


def _file_source(spec: SingleClassSpec | PipelineClassSpec) -> _Source:
    if isinstance(spec, SingleClassSpec):
        lengths = spec.lengths or (spec.prompt_tokens, spec.output_tokens)
        return _SingleSource(spec.name, spec.name, lengths, spec.slo, spec.tightness, spec.max_tokens)
    app = _builtin_app(spec.app) if isinstance(spec.app, str) else _App(spec.name, spec.app)
    per_round = spec.deadline_per_round_s
    if spec.slo is None and per_round is None:
        per_round = DEFAULT_DEADLINE_PER_ROUND_S
    return _PipelineSource(((app, spec.name),), per_round, spec.slo, spec.tightness, spec.max_tokens)


def _arrival_times(process: str, trace: str, rate: float, duration: float,
                   rng: np.random.Generator) -> np.ndarray:
    if process == "poisson":
        chunk = int(rate * duration + 6 * math.sqrt(rate * duration)) + 16
        times = np.cumsum(rng.exponential(1 / rate, chunk))
        while times[-1] < duration:  # the chunk covers the duration except with tiny probability
            times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1 / rate, chunk))])
        return times[times < duration]
    count = round(rate * duration)
    stamps = _load_trace(trace).times
    n = len(stamps)
    # The trace repeated end to end, each repeat one mean gap after the last request before it.
    period = stamps[-1] * n / (n - 1)
    index = np.arange(count + 1)
    tiled = stamps[index % n] + period * (index // n)
    # Scaled so the request after the last one lands exactly at ``duration``.
    times = tiled[:count] * (duration / tiled[count]) if count else tiled[:0]
    return times[times < duration]


def _share(n: int, weights: list[float], rng: np.random.Generator) -> np.ndarray:
    """Class of each of ``n`` arrivals: counts proportional to ``weights`` (largest remainder),
    order random."""
    exact = n * np.asarray(weights) / sum(weights)
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(weights)), counts))


def _positive_finite(name: str, value: Any, what: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def build_workload(
    name_or_path: str | os.PathLike[str],
    *,
    rate: float,
    duration: float,
    seed: int,
    arrivals: str | None = None,
) -> Workload:
    """Build a workload: a built-in name (:data:`BUILTIN_WORKLOADS`) or a workload file's path.

    Args:
        name_or_path: ``chat``, ``tool``, ``pipeline``, ``mixed``, or a ``.yaml``/``.yml``/``.json``
            workload file (see ``docs/workload-format.md``).
        rate: arrivals (requests or pipeline runs) per second, all classes together.
        duration: seconds; every arrival is in ``[0, duration)``.
        seed: a non-negative integer; the same arguments always give an identical workload.
        arrivals: ``"poisson"`` or ``"trace"``; ``None`` means the file's ``arrivals`` (``"poisson"``
            for built-ins).

    Raises:
        ValueError: with a one-line message for a bad argument, an unknown name or a bad file.
    """
    rate = _positive_finite("rate", rate, "a positive finite number")
    duration = _positive_finite("duration", duration, "a positive finite number of seconds")
    if duration > MAX_DURATION_S:
        raise ValueError(f"duration must be at most {MAX_DURATION_S:g} s, got {duration:g}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if rate * duration > MAX_ARRIVALS:
        raise ValueError(
            f"rate x duration = {rate * duration:.0f} arrivals, more than the {MAX_ARRIVALS} allowed"
        )
    where = os.fspath(name_or_path)
    if where in BUILTIN_WORKLOADS:
        sources, trace = _builtin_sources(where)
        weights = [1.0] * len(sources)
        name, default_process = where, "poisson"
    elif Path(where).suffix.lower() in WORKLOAD_FILE_SUFFIXES:
        spec = load_workload_file(where)
        sources = tuple(_file_source(c) for c in spec.classes)
        weights = [c.weight for c in spec.classes]
        trace, name, default_process = "conv", spec.name or Path(where).stem, spec.arrivals
    else:
        raise ValueError(
            f"unknown workload {where!r}: expected one of {', '.join(BUILTIN_WORKLOADS)} "
            f"or a workload file ending in {', '.join(WORKLOAD_FILE_SUFFIXES)}"
        )
    process = default_process if arrivals is None else arrivals
    if process not in ARRIVAL_PROCESSES:
        raise ValueError(f"arrivals must be one of {', '.join(ARRIVAL_PROCESSES)}, got {process!r}")

    # Sub-streams: arrival times, class of each arrival, then one per class.
    seeds = np.random.SeedSequence(int(seed)).spawn(2 + len(sources))
    streams = [np.random.default_rng(s) for s in seeds]
    times = _arrival_times(process, trace, rate, duration, streams[0])
    labels = _share(len(times), weights, streams[1])
    is_run = np.array([isinstance(s, _PipelineSource) for s in sources], dtype=bool)[labels]
    run_numbers = np.cumsum(is_run) - 1  # runs numbered in time order across all pipeline classes
    placed: dict[int, Arrival] = {}
    for c, source in enumerate(sources):
        members = np.flatnonzero(labels == c)
        rng = streams[2 + c]
        if isinstance(source, _PipelineSource):
            sampled = source.sample(times[members].tolist(), run_numbers[members].tolist(), rng)
        else:
            sampled = source.sample(times[members].tolist(), rng)
        placed.update(zip(members.tolist(), sampled))
    arrivals_in_order = tuple(placed[i] for i in range(len(times)))
    return Workload(name=name, arrivals=arrivals_in_order, duration=duration, seed=int(seed))


def describe_workloads() -> list[tuple[str, str]]:
    """The built-in workloads as (name, one-line description), for ``jitagent bench --list``."""
    apps = ", ".join(_builtin_app_specs())
    return [
        ("chat", "streaming chat: Azure 2023 conversation trace lengths, stream SLO "
                 "(TTFT 1 s, TPOT 0.1 s) x tightness 1-4"),
        ("tool", "tool calls: Azure 2023 code trace lengths, deadline SLO 10 s x tightness 1-4"),
        ("pipeline", f"multi-call agent runs ({apps}), pipeline SLO 10 s per round x tightness 1-4"),
        ("mixed", "chat, tool and pipeline arrivals in equal numbers (1:1:1)"),
    ]
