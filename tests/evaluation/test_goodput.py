"""Service goodput accounting: hand-computed cases for each SLO kind, the window, and the summaries."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jitagent.evaluation.goodput import RequestRecord, Window, summarize
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO

STREAM = StreamSLO(ttft_s=1.0, tpot_s=0.5)  # token i due at arrival + 1 + (i - 1) * 0.5
WINDOW = Window(0.0, 10.0)


def stream(times: list[float], *, id: str = "s", arrival: float = 0.0, prompt: int = 10, output: int = 4,
           slo: StreamSLO = STREAM, cls: str = "chat", **kw) -> RequestRecord:
    return RequestRecord(id, cls, arrival, slo, prompt, output, times, **kw)


def deadline(times: list[float], *, id: str = "d", arrival: float = 1.0, prompt: int = 100, output: int = 3,
             cls: str = "tool", **kw) -> RequestRecord:
    return RequestRecord(id, cls, arrival, DeadlineSLO(deadline_s=5.0), prompt, output, times, **kw)


def call(id: str, times: list[float], *, prompt: int, output: int, run: str = "r1", run_start: float = 0.0,
         final: bool = False, arrival: float | None = None) -> RequestRecord:
    return RequestRecord(id, "pipeline:app", run_start if arrival is None else arrival, PipelineSLO(deadline_s=10.0),
                         prompt, output, times, pipeline_run=run, run_start=run_start, final_round=final)


# --- stream ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("weight, expected", [(1.0, 10 + 3), (8.0, 10 + 8 * 3)])
def test_stream_counts_only_timely_tokens(weight: float, expected: float) -> None:
    # Due 1.0, 1.5, 2.0, 2.5: token 2 is late, token 4 lands exactly on time.
    s = summarize([stream([0.8, 1.6, 1.9, 2.5])], WINDOW, weight)
    assert s.tokens_counted == expected
    assert s.service_goodput == pytest.approx(expected / 10)
    assert (s.num_scored, s.num_met, s.slo_attainment) == (1, 0, 0.0)


def test_stream_all_on_time_meets_slo() -> None:
    s = summarize([stream([0.5, 1.0, 2.0, 2.5])], WINDOW)
    assert s.tokens_counted == 14
    assert (s.num_met, s.slo_attainment, s.request_goodput) == (1, 1.0, 0.1)


def test_stream_missed_ttft_still_earns_later_timely_tokens() -> None:
    # Token 1 after 1.0 misses TTFT, so the prompt earns nothing; tokens 2 and 3 catch up; token 4 is late.
    s = summarize([stream([1.2, 1.4, 2.0, 2.6])], WINDOW, 8.0)
    assert s.tokens_counted == 8 * 2
    assert s.num_met == 0


def test_stream_boundary_uses_token_due_exactly() -> None:
    slo = StreamSLO(ttft_s=0.7, tpot_s=0.1)
    arrival = 0.3
    times = [slo.token_due(arrival, i) for i in range(1, 6)]
    s = summarize([stream(times, arrival=arrival, output=5, slo=slo)], WINDOW)
    assert (s.tokens_counted, s.num_met) == (10 + 5, 1)
    late = times[:-1] + [math.nextafter(times[-1], math.inf)]
    s = summarize([stream(late, arrival=arrival, output=5, slo=slo)], WINDOW)
    assert (s.tokens_counted, s.num_met) == (10 + 4, 0)


def test_unfinished_stream_keeps_timely_tokens_but_misses() -> None:
    s = summarize([stream([0.5, 1.0])], WINDOW, 8.0)
    assert s.tokens_counted == 10 + 16
    assert (s.num_met, s.num_finished, s.tokens_delivered) == (0, 0, 2)


def test_stream_with_no_token_earns_nothing() -> None:
    s = summarize([stream([])], WINDOW)
    assert (s.tokens_counted, s.num_scored, s.num_met) == (0, 1, 0)


# --- deadline ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("times, weight, counted, met", [
    ([2.0, 3.0, 6.0], 1.0, 103, 1),  # last token exactly at arrival + deadline
    ([2.0, 3.0, 6.0], 8.0, 124, 1),
    ([2.0, 3.0, 6.1], 8.0, 0, 0),  # late: nothing counts
    ([2.0, 3.0], 8.0, 0, 0),  # unfinished: nothing counts, even on time so far
])
def test_deadline_all_or_nothing(times: list[float], weight: float, counted: float, met: int) -> None:
    s = summarize([deadline(times)], WINDOW, weight)
    assert (s.tokens_counted, s.num_met, s.num_scored) == (counted, met, 1)


# --- pipeline ---------------------------------------------------------------------------------------

def test_pipeline_run_met_counts_every_call_as_one_request() -> None:
    calls = [call("a", [1.0, 2.0], prompt=50, output=2),
             call("b", [4.0, 5.0, 9.0], prompt=30, output=3, final=True, arrival=3.0)]
    s = summarize(calls, WINDOW, 8.0)
    assert s.tokens_counted == 50 + 30 + 8 * (2 + 3)
    assert (s.num_scored, s.num_met, s.num_pipeline_runs, s.num_calls) == (1, 1, 1, 2)
    assert s.pipeline_e2e_s.mean == 9.0


@pytest.mark.parametrize("b_times", [
    [4.0, 5.0, 10.5],  # the final call lands after run_start + 10
    [4.0, 5.0],  # the final call never finished
])
def test_pipeline_run_late_or_unfinished_counts_nothing(b_times: list[float]) -> None:
    calls = [call("a", [1.0, 2.0], prompt=50, output=2),
             call("b", b_times, prompt=30, output=3, final=True)]
    s = summarize(calls, Window(0.0, 20.0))
    assert (s.tokens_counted, s.num_scored, s.num_met) == (0, 1, 0)


def test_pipeline_run_late_non_final_call_counts_nothing() -> None:
    calls = [call("a", [1.0, 11.0], prompt=50, output=2),
             call("b", [4.0, 5.0, 9.0], prompt=30, output=3, final=True)]
    s = summarize(calls, Window(0.0, 20.0))
    assert (s.tokens_counted, s.num_met) == (0, 0)
    assert s.pipeline_e2e_s.mean == 11.0


def test_pipeline_run_without_final_round_is_incomplete() -> None:
    calls = [call("a", [1.0, 2.0], prompt=50, output=2), call("b", [4.0, 5.0, 9.0], prompt=30, output=3)]
    s = summarize(calls, WINDOW)
    assert (s.tokens_counted, s.num_scored, s.num_met) == (0, 1, 0)
    assert s.pipeline_e2e_s.mean is None


def test_pipeline_runs_are_separate_requests() -> None:
    calls = [call("a", [1.0], prompt=5, output=1, run="r1", final=True),
             call("b", [2.0], prompt=5, output=1, run="r2", run_start=1.0, final=True),
             call("c", [20.0], prompt=5, output=1, run="r3", run_start=2.0, final=True)]
    s = summarize(calls, WINDOW)
    assert (s.num_scored, s.num_met, s.num_pipeline_runs, s.tokens_counted) == (3, 2, 3, 12)
    assert s.slo_attainment == pytest.approx(2 / 3)


def test_pipeline_calls_disagreeing_on_run_start_raise() -> None:
    calls = [call("a", [1.0], prompt=5, output=1), call("b", [2.0], prompt=5, output=1, run_start=0.5, final=True)]
    with pytest.raises(ValueError, match="pipeline run 'r1'"):
        summarize(calls, WINDOW)


def test_pipeline_slo_needs_a_run() -> None:
    with pytest.raises(ValueError, match="pipeline_run and run_start"):
        RequestRecord("p", "pipeline:app", 0.0, PipelineSLO(deadline_s=10.0), 5, 1, [1.0])


# --- window ---------------------------------------------------------------------------------------

def test_warmup_and_end_exclude_requests() -> None:
    window = Window(5.0, 20.0)
    records = [
        deadline([6.0], id="early", arrival=4.9, output=1),
        deadline([6.0], id="first", arrival=5.0, output=1),
        deadline([21.0], id="last", arrival=19.9, output=1),
        deadline([21.0], id="late", arrival=20.0, output=1),
        # A run that started in warm-up is out, even with calls arriving after it.
        call("w", [7.0], prompt=5, output=1, run="warm", run_start=4.0, arrival=6.0, final=True),
        call("m", [7.0], prompt=5, output=1, run="measured", run_start=5.0, arrival=6.0, final=True),
    ]
    s = summarize(records, window)
    assert (s.num_calls, s.num_scored, s.num_met) == (3, 3, 3)
    assert s.tokens_counted == 101 + 101 + 6
    assert s.service_goodput == pytest.approx(208 / 15)
    assert s.request_goodput == pytest.approx(3 / 15)


def test_request_without_slo_enters_latency_but_not_scoring() -> None:
    free = RequestRecord("f", "batch", 0.0, None, 10, 2, [0.5, 1.5], first_scheduled=0.25)
    s = summarize([free, deadline([2.0, 3.0, 7.0])], WINDOW)
    assert (s.num_calls, s.num_finished, s.num_scored, s.num_met) == (2, 2, 1, 0)
    assert s.slo_attainment == 0.0
    assert s.ttft_s.p50 == pytest.approx((0.5 + 1.0) / 2)
    assert s.queue_s.mean == 0.25
    assert s.by_class["batch"].slo_attainment is None


# --- summaries ------------------------------------------------------------------------------------

def test_attainment_request_goodput_and_by_class() -> None:
    records = [
        stream([0.5, 1.0, 2.0, 2.5], id="s1"),  # met: 14
        stream([0.5, 1.0, 2.0, 3.0], id="s2", num_preemptions=2),  # missed: 13
        deadline([2.0, 3.0, 6.0], id="d1"),  # met: 103
        deadline([2.0, 3.0, 6.5], id="d2", num_preemptions=1),  # missed: 0
        deadline([2.0, 3.0, 4.0], id="d3", arrival=2.0),  # met: 103
    ]
    s = summarize(records, WINDOW)
    assert (s.num_scored, s.num_met, s.preemptions) == (5, 3, 3)
    assert s.slo_attainment == pytest.approx(3 / 5)
    assert s.request_goodput == pytest.approx(3 / 10)
    assert s.tokens_counted == 14 + 13 + 103 + 103
    chat, tool = s.by_class["chat"], s.by_class["tool"]
    assert set(s.by_class) == {"chat", "tool"}
    assert (chat.num_scored, chat.num_met, chat.tokens_counted, chat.preemptions) == (2, 1, 27, 2)
    assert (tool.num_scored, tool.num_met, tool.tokens_counted, tool.preemptions) == (3, 2, 206, 1)
    assert chat.service_goodput == pytest.approx(27 / 10)  # same window as the total
    assert tool.request_goodput == pytest.approx(2 / 10)
    assert chat.slo_attainment == 0.5


def test_latency_percentiles() -> None:
    records = [deadline([0.1 * k + 1.0, 0.1 * k + 1.0 + 0.05 * k], id=f"d{k}", output=2,
                        first_scheduled=1.0 + 0.01 * k) for k in range(1, 6)]
    records.append(deadline([1.2], id="one", output=1))  # no TPOT from a single token
    records.append(deadline([1.2], id="unfinished"))  # no latency from an unfinished request
    s = summarize(records, WINDOW)
    ttft = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.2])
    assert s.ttft_s.mean == pytest.approx(ttft.mean())
    assert s.ttft_s.p50 == pytest.approx(np.percentile(ttft, 50))
    assert s.ttft_s.p99 == pytest.approx(np.percentile(ttft, 99))
    assert s.tpot_s.p50 == pytest.approx(0.15)
    assert s.tpot_s.p90 == pytest.approx(0.23)
    assert s.e2e_s.mean == pytest.approx(np.mean([0.15, 0.3, 0.45, 0.6, 0.75, 0.2]))
    assert s.queue_s.p50 == pytest.approx(0.03)
    assert s.num_finished == 6


def test_empty_summary_is_json_without_nan() -> None:
    s = summarize([], WINDOW)
    d = s.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["slo_attainment"] is None and d["ttft_s"] == {"mean": None, "p50": None, "p90": None, "p99": None}
    assert (d["service_goodput"], d["num_scored"], d["by_class"]) == (0.0, 0, {})


def test_to_dict_keys() -> None:
    s = summarize([stream([0.5, 1.0, 2.0, 2.5]), deadline([2.0, 3.0, 6.0])], WINDOW)
    d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    expected = {"service_goodput", "slo_attainment", "request_goodput", "ttft_s", "tpot_s", "e2e_s", "queue_s",
                "pipeline_e2e_s", "preemptions", "num_scored", "num_met", "num_finished", "num_calls",
                "num_pipeline_runs", "tokens_counted", "tokens_delivered"}
    assert set(d) == expected | {"by_class"}
    assert set(d["by_class"]) == {"chat", "tool"}
    assert set(d["by_class"]["chat"]) == expected
    assert d["tokens_delivered"] == 7


def test_vectorised_streams_match_token_due() -> None:
    # Enough streams to span several vectorised chunks.
    rng = np.random.default_rng(7)
    records, expected, met = [], 0.0, 0
    for i in range(2500):
        slo = StreamSLO(ttft_s=float(rng.uniform(0.2, 2)), tpot_s=float(rng.uniform(0.01, 0.2)))
        arrival, n = float(rng.uniform(0, 5)), int(rng.integers(1, 12))
        times = (arrival + np.cumsum(rng.exponential(slo.tpot_s, int(rng.integers(0, n + 1))))).tolist()
        records.append(stream(times, id=str(i), arrival=arrival, prompt=i, output=n, slo=slo))
        timely = sum(t <= slo.token_due(arrival, k) for k, t in enumerate(times, 1))
        expected += (i if times and times[0] <= slo.token_due(arrival, 1) else 0) + 8 * timely
        met += timely == n
    s = summarize(records, WINDOW, 8.0)
    assert s.tokens_counted == pytest.approx(expected)
    assert s.num_met == met > 0


# --- records and validation -----------------------------------------------------------------------

def test_record_json_round_trip() -> None:
    records = [
        stream([0.5, 1.25], output=2, first_scheduled=0.125, policy="jit", seed=3, rate=2.5),
        deadline([2.0, 3.0, 6.0], num_preemptions=2),
        call("a", [1.0, 2.0], prompt=50, output=2, final=True),
        RequestRecord("f", "batch", 0.1, None, 10, 2, [0.5]),
    ]
    for rec in records:
        line = json.dumps(rec.to_json())
        back = RequestRecord.from_json(json.loads(line))
        assert back == rec
        assert type(back.slo) is type(rec.slo)
    assert json.loads(json.dumps(records[0].to_json()))["slo"] == {
        "kind": "stream", "ttft_s": 1.0, "tpot_s": 0.5, "on_infeasible": "best_effort"}


def test_record_from_json_rejects_bad_input() -> None:
    good = deadline([2.0]).to_json()
    with pytest.raises(ValueError, match="invalid request record"):
        RequestRecord.from_json({**good, "colour": "red"})
    with pytest.raises(ValueError, match="invalid SLO"):
        RequestRecord.from_json({**good, "slo": {"kind": "deadline", "deadline_s": -1.0}})
    with pytest.raises(ValueError, match="output_tokens"):
        RequestRecord.from_json({**good, "output_tokens": 0})


def test_too_many_token_times_raise() -> None:
    with pytest.raises(ValueError, match="3 token times for 2 output tokens"):
        summarize([deadline([1.0, 2.0, 3.0], output=2)], WINDOW)


@pytest.mark.parametrize("weight", [0.0, -1.0, math.nan, math.inf])
def test_bad_decode_weight(weight: float) -> None:
    with pytest.raises(ValueError, match="decode_weight"):
        summarize([], WINDOW, weight)


@pytest.mark.parametrize("warmup, end", [(5.0, 5.0), (5.0, 4.0), (0.0, math.inf), (math.nan, 1.0)])
def test_bad_window(warmup: float, end: float) -> None:
    with pytest.raises(ValueError, match="window"):
        Window(warmup, end)
