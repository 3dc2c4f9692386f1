"""How fast a machine actually ran, window by window, against its step-time profile.

A profile says how long a step of a given shape takes; a shared machine does not keep to it. On the
2-core machines here the same vLLM CPU step shapes run 20-40% slower or faster for tens of seconds
at a time (the same probe set run twice on one engine, a minute apart, took 14-44% longer the
first time), while a plain matrix multiply on the same core stays within 7%. No profile fitted before or after a run can know that.
A :class:`SpeedTrace` measures it from the run's own steps, as one factor per window (measured step
time over the profile's, summed over the window's steps), so that a simulation of that run can
replay the machine's speed while everything else, the policy's decisions included, is simulated
(``SimConfig(speed_trace=...)``; ``benchmarks/vllm_fidelity.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jitagent.engines.latency import LatencyModel, StepShape

__all__ = ["SpeedTrace", "load_speed_trace"]


@dataclass(frozen=True)
class SpeedTrace:
    """Step-time factors over consecutive windows of a run: a step that starts at ``t`` seconds into
    the run takes ``factor_at(t)`` times what the profile says.

    Args:
        window_s: the length of each window.
        factors: one factor per window, from ``t = 0``; before the first window the first applies,
            after the last the last (the machine is taken to go on as it last ran).
    """

    window_s: float
    factors: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s must be a positive number of seconds, got {self.window_s}")
        if not self.factors:
            raise ValueError("a speed trace needs at least one factor")
        if not all(math.isfinite(f) and f > 0 for f in self.factors):
            raise ValueError(f"every factor must be a positive finite number, got {self.factors}")

    def factor_at(self, t: float) -> float:
        """The factor of the window holding ``t`` (seconds into the run)."""
        index = int(t // self.window_s)
        return self.factors[min(max(index, 0), len(self.factors) - 1)]

    @classmethod
    def measure(cls, steps: Iterable[tuple[float, StepShape, float]], profile: LatencyModel,
                window_s: float = 15.0) -> SpeedTrace:
        """The trace of a run's ``steps`` (``(start, shape, seconds)``, start in seconds into the run)
        against ``profile``. A window in which the engine ran no step takes the factor of the one
        before it (or, at the start, of the first that ran one)."""
        measured: dict[int, list[float]] = {}
        for start, shape, seconds in steps:
            sums = measured.setdefault(int(max(start, 0.0) // window_s), [0.0, 0.0])
            sums[0] += seconds
            sums[1] += profile.step_time(shape)
        ratios = {i: real / modelled for i, (real, modelled) in measured.items() if modelled > 0}
        if not ratios:
            raise ValueError("no steps to measure the machine's speed from")
        factors: list[float] = []
        last = ratios[min(ratios)]
        for index in range(max(ratios) + 1):
            last = ratios.get(index, last)
            factors.append(last)
        return cls(window_s, tuple(factors))

    def to_json(self) -> str:
        return json.dumps({"window_s": self.window_s, "factors": list(self.factors)})


def load_speed_trace(path: str | Path) -> SpeedTrace:
    """Read a trace written by :meth:`SpeedTrace.to_json`; ValueError naming what is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return SpeedTrace(float(data["window_s"]), tuple(float(f) for f in data["factors"]))
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a speed trace ({exc})") from None
