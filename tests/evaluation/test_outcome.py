"""score_call: deadline, slack, SLO met and goodput of one call, agreeing with the benchmark's scoring."""

from __future__ import annotations

import pytest

from jitagent.evaluation.goodput import RequestRecord, Window, summarize
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO
from jitagent.evaluation.outcome import score_call

STREAM = StreamSLO(ttft_s=1.0, tpot_s=0.5)


def test_stream_on_time_slack_is_the_worst_tokens_margin() -> None:
    # Tokens due at 11.0, 11.5, 12.0; delivered with margins 0.5, 0.2, 0.9.
    outcome = score_call(STREAM, 10.0, [10.5, 11.3, 11.1], True, 11.1, prompt_tokens=7)
    assert outcome.deadline == 12.0
    assert outcome.slack_end_s == pytest.approx(0.2)
    assert outcome.met is True
    assert outcome.goodput_tokens == 7 + 3


def test_stream_with_a_late_token_misses_but_keeps_its_timely_tokens() -> None:
    outcome = score_call(STREAM, 10.0, [10.5, 11.8, 11.9], True, 11.9, prompt_tokens=7)
    assert outcome.slack_end_s == pytest.approx(-0.3)
    assert outcome.met is False
    assert outcome.goodput_tokens == 7 + 2


def test_unfinished_stream_is_judged_on_the_token_it_never_delivered() -> None:
    outcome = score_call(STREAM, 10.0, [10.5], False, 12.0, prompt_tokens=7)
    assert outcome.deadline == 11.5 and outcome.slack_end_s == pytest.approx(-0.5) and outcome.met is False


def test_late_first_token_loses_the_prompt() -> None:
    assert score_call(STREAM, 10.0, [11.5, 11.5], True, 11.5, prompt_tokens=7).goodput_tokens == 1


def test_deadline_call() -> None:
    slo = DeadlineSLO(deadline_s=2.0)
    met = score_call(slo, 5.0, [5.5, 6.0], True, 6.1, prompt_tokens=10)
    assert (met.deadline, met.slack_end_s, met.met, met.goodput_tokens) == (7.0, 1.0, True, 12)
    late = score_call(slo, 5.0, [5.5, 7.5], True, 7.5, prompt_tokens=10)
    assert (late.slack_end_s, late.met, late.goodput_tokens) == (-0.5, False, 0)
    aborted = score_call(slo, 5.0, [5.5], False, 6.0, prompt_tokens=10)
    assert (aborted.slack_end_s, aborted.met, aborted.goodput_tokens) == (1.0, False, 0)


def test_pipeline_call_is_due_by_its_stage_deadline_and_counts_with_its_run() -> None:
    slo = PipelineSLO(deadline_s=30.0)
    outcome = score_call(slo, 5.0, [5.5, 6.0], True, 6.0, prompt_tokens=10, stage_deadline=8.0)
    assert (outcome.deadline, outcome.slack_end_s, outcome.met, outcome.goodput_tokens) == (8.0, 2.0, True, 0)
    assert score_call(slo, 5.0, [6.0], True, 6.0, prompt_tokens=10).deadline == 35.0


def test_no_slo_no_verdict() -> None:
    outcome = score_call(None, 0.0, [1.0], True, 1.0, prompt_tokens=3)
    assert (outcome.deadline, outcome.slack_end_s, outcome.met, outcome.goodput_tokens) == (None, None, None, 0)


@pytest.mark.parametrize("slo, times", [
    (STREAM, [10.5, 11.3, 11.1]), (STREAM, [10.5, 11.8, 11.9]), (STREAM, [11.5, 11.6, 12.0]),
    (DeadlineSLO(deadline_s=2.0), [10.5, 11.0, 11.9]), (DeadlineSLO(deadline_s=2.0), [10.5, 11.0, 12.1]),
])
def test_goodput_and_met_agree_with_the_benchmark(slo, times) -> None:
    record = RequestRecord("r", "c", 10.0, slo, prompt_tokens=7, output_tokens=3, token_times=times)
    summary = summarize([record], Window(warmup=0.0, end=100.0))
    outcome = score_call(slo, 10.0, times, True, times[-1], prompt_tokens=7)
    assert outcome.goodput_tokens == summary.tokens_counted
    assert outcome.met == bool(summary.num_met)
