"""Step times measured inside the engine: the policy's step-time model, learned as the engine runs.

A policy asks how long a step of a given shape will take (``SchedulerView.step_time``). On a GPU a
calibrated profile answers well; on an unknown machine nothing does until steps are measured. So
the scheduler times every step it runs (from the start of scheduling to the start of the next step
when the engine goes straight on, else to the end of processing the model's output) and feeds
them to a :class:`~jitagent.engines.latency.LearnedModel`, which refits itself to the recent ones
now and then (the simulator's engine can learn the same way). Steps can also be appended to a log,
from which ``jitagent calibrate`` fits a profile for the simulator.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from jitagent.engines.latency import FittedModel, LatencyModel, LearnedModel, StepShape

__all__ = ["StepTimer", "CPU_PRIOR", "read_step_log", "read_timed_steps"]

#: Where the model starts before any step is measured: a small model on a CPU (5 ms a step, 50 us a
#: prefill token). Only the first steps are planned with it.
CPU_PRIOR = FittedModel(c0=0.005, c_prefill=5e-5, c_decode=2e-4, c_context=1e-7)

# A gap this long between one step's end and the next one's start means the engine sat idle.
_IDLE_GAP_S = 0.005


class StepTimer:
    """Times engine steps and keeps a step-time model fitted to the recent ones.

    Args:
        prior: the model used until enough steps are measured (a profile's latency model).
        learn: refit to measured steps; False keeps ``prior``.
        refit_every: steps between refits.
        window: measured steps kept for fitting.
        log_path: append each step as a JSON line
            ``{"shape": [prefill, decodes, context, pairs, prefill_seqs], "seconds": s, "start": t}``
            (``t`` on :func:`time.perf_counter`'s clock: gaps between steps show when the engine sat idle).
    """

    def __init__(self, prior: LatencyModel = CPU_PRIOR, *, learn: bool = True, refit_every: int = 128,
                 window: int = 2048, log_path: str | Path | None = None) -> None:
        self._learned = LearnedModel(prior, refit_every=refit_every, window=window)
        self.learn = learn
        self._started: float | None = None
        self._ended: float | None = None
        self._shape: StepShape | None = None
        self._log = open(log_path, "a", buffering=1, encoding="utf-8") if log_path is not None else None  # noqa: SIM115
        self.num_steps = 0

    @property
    def model(self) -> LatencyModel:
        """The step-time model as it stands: the prior, or the latest refit."""
        return self._learned.model

    def estimate(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        """Seconds a step of this shape should take (``SchedulerView.step_time``)."""
        return self._learned.estimate(prefill_tokens, decode_seqs, context_tokens)

    def start(self) -> None:
        """A step begins (scheduling starts). The previous step is recorded now: when the engine
        went straight on to this one, its time is the whole cycle (what the next token waits
        for, the engine's own per-step work included)."""
        now = time.perf_counter()
        if self._ended is not None and now - self._ended > _IDLE_GAP_S:
            self._record(self._ended)   # the engine had nothing to do in between: that is not step time
        elif self._ended is not None:
            self._record(now)
        self._started, self._shape, self._ended = now, None, None

    def scheduled(self, shape: StepShape) -> None:
        """The step's shape, once scheduled."""
        self._shape = shape

    def finished(self) -> None:
        """The step's output was processed."""
        self._ended = time.perf_counter()

    def _record(self, end: float) -> None:
        shape, started = self._shape, self._started
        if shape is None or started is None or not (shape.prefill_tokens or shape.decode_seqs):
            return
        seconds = end - started
        self.num_steps += 1
        if self.learn:
            self._learned.observe(shape, seconds)
        if self._log is not None:
            self._log.write(json.dumps({"shape": [shape.prefill_tokens, shape.decode_seqs, shape.context_tokens,
                                                  shape.attention_pairs, shape.prefill_seqs], "seconds": seconds,
                                        "start": started}) + "\n")

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def read_step_log(path: str | Path, *, since: float | None = None,
                  until: float | None = None) -> list[tuple[StepShape, float]]:
    """The steps a :class:`StepTimer` logged to ``path``, as ``(shape, seconds)``; ValueError on a
    malformed line.

    ``since``/``until`` keep the steps that started in that window, on :func:`time.perf_counter`'s clock
    (the system-wide monotonic clock on Linux, so a caller's readings compare with the engine
    process's): e.g. a benchmark's own steps apart from calibration probes run on the same engine.
    """
    timed = since is not None or until is not None  # logs written before start times had none
    return [(shape, seconds) for _, shape, seconds in _read(path, timed, since, until)]


def read_timed_steps(path: str | Path, *, since: float | None = None,
                     until: float | None = None) -> list[tuple[float, StepShape, float]]:
    """As :func:`read_step_log`, each step as ``(start, shape, seconds)``: when the machine ran how fast."""
    return _read(path, True, since, until)


def _read(path: str | Path, timed: bool, since: float | None,
          until: float | None) -> list[tuple[float, StepShape, float]]:
    steps = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                shape = StepShape(*map(int, record["shape"]))  # logs before prefill_seqs have four fields
                seconds = float(record["seconds"])
                started = float(record["start"]) if timed else 0.0
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a step record ({exc})") from None
            if (since is None or started >= since) and (until is None or started < until):
                steps.append((started, shape, seconds))
    return steps
