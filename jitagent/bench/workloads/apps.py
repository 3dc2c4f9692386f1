"""Pipeline applications: sampling runs and their expected rounds left.

Pipeline runs, from an application's stage graph (the ``pipelines.json`` schema):

* A run starts at ``stages[0]``. A visit to a stage is ``loops`` rounds, ``loops`` drawn from
  ``loops_samples`` (0 loops: the stage is skipped); each round has ``parallelism`` calls, drawn
  from ``parallelism_samples``. A samples list as long as ``quantile_levels`` holds quantiles and is
  drawn by inverse-CDF interpolation (rounded); any other list is drawn from uniformly.
* Each call's prompt and completion token counts are the inverse-CDF interpolation of
  ``prompt_tokens_quantiles`` / ``completion_tokens_quantiles`` at a uniform level, rounded, at
  least 1 (completions also at most ``max_tokens``).
* After a visit the next stage is drawn from ``next_stages`` without the self-transition (a
  stage's repetition is its ``loops``), the other probabilities renormalised to sum to 1; no
  entries left means the run ends.
* Caps: a stage runs at most ``max_rounds`` rounds per run (default 8; ``deep_research``'s
  ``web_research`` has 3, from the app's note). A visit is cut short at the cap, and a stage that
  has used up its rounds, or been entered ``max_rounds`` times, drops out of the next-stage choice
  (the second rule only matters for skippable stages and guarantees every run ends).
* A round's ``gap_s`` (tool time before it starts) is exponential with its stage's
  ``tool_gap_s_mean``; round 0 has none.
* ``expected_rounds_left`` uses only the app's structure and the run's history, never its sampled
  future: the expected remaining rounds of the current visit given it has lasted this long, plus the
  expected rounds after it from the renormalised transition matrix (expected visits to each stage
  times its mean loops). Caps are respected only approximately: the loop distribution is cut at the
  stage's remaining rounds and each stage's expected future rounds are clipped to its remaining
  cap, but the way a full stage reroutes the transitions is ignored.
"""

from __future__ import annotations

import functools
import itertools
import math
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from jitagent.bench.workloads.data import _builtin_app_specs

if TYPE_CHECKING:
    from jitagent.bench.workloads.schema import AppSpec


@functools.lru_cache(maxsize=None)
def _builtin_app(name: str) -> _App:
    return _App(name, _builtin_app_specs()[name])


class _Uniforms:
    """Scalar uniform draws from one generator, fetched in blocks (scalar generator calls are slow)."""

    __slots__ = ("_rng", "_block", "_pos")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._block: list[float] = []
        self._pos = 0

    def __call__(self) -> float:
        if self._pos == len(self._block):
            self._block = self._rng.random(4096).tolist()
            self._pos = 0
        self._pos += 1
        return self._block[self._pos - 1]


class _IntDraw:
    """An integer drawn from a samples list: by quantile interpolation when the list is as long as
    the quantile levels, uniformly from the list otherwise."""

    __slots__ = ("samples", "levels")

    def __init__(self, samples: tuple[int, ...], levels: tuple[float, ...]) -> None:
        self.samples = samples
        self.levels = levels if len(samples) == len(levels) else None

    def __call__(self, u: float) -> int:
        if self.levels is None:
            return self.samples[int(u * len(self.samples))]
        i = min(bisect_right(self.levels, u) - 1, len(self.levels) - 2)
        l0, l1 = self.levels[i], self.levels[i + 1]
        q0, q1 = self.samples[i], self.samples[i + 1]
        return round(q0 + (u - l0) / (l1 - l0) * (q1 - q0))

    def pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """Values and their probabilities, exactly (the interpolation is piecewise linear)."""
        mass: defaultdict[int, float] = defaultdict(float)
        if self.levels is None:
            for value in self.samples:
                mass[value] += 1 / len(self.samples)
        else:
            for (q0, q1), (l0, l1) in zip(itertools.pairwise(self.samples), itertools.pairwise(self.levels)):
                if q0 == q1:
                    mass[q0] += l1 - l0
                    continue
                for j in range(round(q0), round(q1) + 1):
                    overlap = min(q1, j + 0.5) - max(q0, j - 0.5)
                    if overlap > 0:
                        mass[j] += overlap / (q1 - q0) * (l1 - l0)
        values = np.array(sorted(mass), dtype=np.float64)
        return values, np.array([mass[int(v)] for v in values])


def _quantile_draw(
    quantiles: tuple[int, ...], levels: tuple[float, ...], u: np.ndarray, cap: int | None = None
) -> np.ndarray:
    """Token counts by inverse-CDF interpolation at levels ``u``, rounded, at least 1, at most
    ``cap`` when given."""
    return np.clip(np.rint(np.interp(u, levels, quantiles)), 1, cap).astype(np.int64)


@dataclass(frozen=True)
class _Stage:
    name: str
    parallelism: _IntDraw
    loops: _IntDraw
    loop_values: np.ndarray
    loop_probs: np.ndarray
    next_stages: tuple[tuple[int, float], ...]  # (stage index, probability), self removed
    gap_mean: float
    prompt_quantiles: tuple[int, ...]
    completion_quantiles: tuple[int, ...]
    cap: int


class _App:
    """An application compiled for sampling runs and computing expected rounds left."""

    def __init__(self, name: str, spec: AppSpec) -> None:
        self.name = name
        self.levels = spec.quantile_levels
        index = {s: i for i, s in enumerate(spec.stages)}
        self.stages: list[_Stage] = []
        for s in spec.stages:
            st = spec.stage[s]
            onward = [(index[t], p) for t, p in st.next_stages.items() if t != s and p > 0]
            total = sum(p for _, p in onward)
            loops = _IntDraw(st.loops_samples, self.levels)
            values, probs = loops.pmf()
            self.stages.append(_Stage(
                name=s,
                parallelism=_IntDraw(st.parallelism_samples, self.levels),
                loops=loops,
                loop_values=values,
                loop_probs=probs,
                next_stages=tuple((t, p / total) for t, p in onward),
                gap_mean=st.tool_gap_s_mean,
                prompt_quantiles=st.prompt_tokens_quantiles,
                completion_quantiles=st.completion_tokens_quantiles,
                cap=st.max_rounds,
            ))
        n = len(self.stages)
        self.caps = np.array([st.cap for st in self.stages], dtype=np.float64)
        transition = np.zeros((n, n))
        for s, st in enumerate(self.stages):
            for t, p in st.next_stages:
                transition[s, t] = p
        # Expected visits to each stage from entering each stage: sum of transition powers over
        # the longest possible run (every stage entered at most its cap times), finite even where
        # the chain alone would loop forever.
        visits = term = np.eye(n)
        for _ in range(int(self.caps.sum())):
            term = term @ transition
            visits = visits + term
        mean_loops = np.array([
            float(np.minimum(st.loop_values, st.cap) @ st.loop_probs) for st in self.stages
        ])
        # after[s, r]: expected rounds of stage r once a visit to s is over.
        self.after = transition @ (visits * mean_loops)
        self._erl_memo: dict[tuple[int, int, int, tuple[int, ...]], float] = {}

    def sample_rounds(self, u: _Uniforms) -> list[tuple[int, int, float, float]]:
        """One run's rounds as (stage index, parallelism, gap_s, expected_rounds_left)."""
        n = len(self.stages)
        used = [0] * n
        entered = [0] * n
        rounds: list[tuple[int, int, float, float]] = []
        s: int | None = 0
        while s is not None:
            st = self.stages[s]
            entered[s] += 1
            room = st.cap - used[s]
            for k in range(min(st.loops(u()), room)):
                erl = self._expected_rounds_left(s, k, room, tuple(used))
                gap = -st.gap_mean * math.log1p(-u()) if rounds and st.gap_mean > 0 else 0.0
                rounds.append((s, st.parallelism(u()), gap, erl))
                used[s] += 1
            s = self._next_stage(st, used, entered, u())
        return rounds

    def _next_stage(self, st: _Stage, used: list[int], entered: list[int], u: float) -> int | None:
        open_ = [(t, p) for t, p in st.next_stages
                 if used[t] < self.stages[t].cap and entered[t] < self.stages[t].cap]
        if not open_:
            return None
        x = u * sum(p for _, p in open_)
        for t, p in open_:
            x -= p
            if x < 0:
                return t
        return open_[-1][0]  # float rounding left x at ~0

    def _expected_rounds_left(self, s: int, k: int, room: int, used: tuple[int, ...]) -> float:
        """Expected rounds from round ``k`` of a visit to ``s`` (``room`` rounds allowed when the
        visit began, ``used`` rounds per stage so far) to the end of the run, this one included."""
        key = (s, k, room, used)
        cached = self._erl_memo.get(key)
        if cached is not None:
            return cached
        st = self.stages[s]
        loops = np.minimum(st.loop_values, room)
        lasting = loops > k
        probs = st.loop_probs[lasting]
        in_visit = float((loops[lasting] - k) @ probs / probs.sum())
        left = self.caps - np.array(used)
        left[s] -= in_visit  # the rest of this visit uses the stage's cap too
        value = in_visit + float(np.minimum(self.after[s], np.maximum(left, 0.0)).sum())
        self._erl_memo[key] = value
        return value
