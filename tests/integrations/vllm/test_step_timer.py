"""StepTimer: engine steps timed from scheduling to the next step, logged, and learned from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from jitagent.engines.latency import FittedModel, StepShape  # noqa: E402
from jitagent_vllm.step_timer import CPU_PRIOR, StepTimer, read_step_log  # noqa: E402

PREFILL = StepShape(prefill_tokens=512, context_tokens=512, attention_pairs=512 * 513 // 2, prefill_seqs=1)
DECODE = StepShape(decode_seqs=4, context_tokens=4000, attention_pairs=4000)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("jitagent_vllm.step_timer.time.perf_counter", clock)
    return clock


def run_step(timer: StepTimer, clock: Clock, shape: StepShape, busy_s: float, then_idle_s: float = 0.0) -> None:
    timer.start()
    timer.scheduled(shape)
    clock.now += busy_s
    timer.finished()
    clock.now += then_idle_s


def test_a_step_lasts_until_the_next_one_starts_unless_the_engine_sat_idle(clock: Clock, tmp_path: Path) -> None:
    log = tmp_path / "steps.jsonl"
    timer = StepTimer(log_path=log, learn=False)
    run_step(timer, clock, DECODE, 0.010, then_idle_s=0.002)   # straight on: the 2 ms are the engine's own work
    run_step(timer, clock, PREFILL, 0.050, then_idle_s=1.0)    # then idle: the second counts to its output
    run_step(timer, clock, DECODE, 0.010)
    timer.start()
    timer.close()
    assert timer.num_steps == 3
    assert read_step_log(log) == [(DECODE, pytest.approx(0.012)), (PREFILL, pytest.approx(0.050)),
                                  (DECODE, pytest.approx(0.010))]
    # A step that computes nothing (every request sitting out) is not a step time.
    timer = StepTimer(learn=False)
    run_step(timer, clock, StepShape(), 0.001)
    timer.start()
    assert timer.num_steps == 0


def test_the_log_selects_steps_by_when_they_started(clock: Clock, tmp_path: Path) -> None:
    log = tmp_path / "steps.jsonl"
    timer = StepTimer(log_path=log, learn=False)
    starts = []
    for _ in range(6):
        starts.append(clock.now)
        run_step(timer, clock, DECODE, 0.010)
    timer.start()
    timer.close()
    assert len(read_step_log(log)) == 6
    assert len(read_step_log(log, since=starts[2])) == 4
    assert len(read_step_log(log, until=starts[2])) == 2
    assert len(read_step_log(log, since=starts[1], until=starts[4])) == 3
    log.write_text(log.read_text() + json.dumps({"shape": [1, 0, 1, 1, 1]}) + "\n")
    with pytest.raises(ValueError, match=r"steps.jsonl:7: not a step record"):
        read_step_log(log)


def test_the_model_is_refitted_to_measured_steps(clock: Clock) -> None:
    truth = FittedModel(c0=0.02, c_prefill=1e-4, c_decode=1e-3, c_context=0.0)
    timer = StepTimer(refit_every=32)
    assert timer.model is CPU_PRIOR
    for i in range(64):
        shape = PREFILL if i % 2 else StepShape(decode_seqs=1 + i % 16, context_tokens=100, attention_pairs=100)
        run_step(timer, clock, shape, truth.step_time(shape))
    assert isinstance(timer.model, FittedModel)
    for shape in (PREFILL, StepShape(decode_seqs=12, context_tokens=100, attention_pairs=100)):
        assert timer.model.step_time(shape) == pytest.approx(truth.step_time(shape), rel=0.05)
    frozen = StepTimer(refit_every=32, learn=False)
    for _ in range(64):
        run_step(frozen, clock, PREFILL, 0.1)
    assert frozen.model is CPU_PRIOR
