import math

import pytest

from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO, is_finite_number, parse_slo


def test_parse_each_kind():
    assert parse_slo({"kind": "stream", "ttft_s": 1, "tpot_s": 0.1}) == StreamSLO(ttft_s=1.0, tpot_s=0.1)
    assert parse_slo('{"kind": "deadline", "deadline_s": 10}') == DeadlineSLO(deadline_s=10.0)
    assert parse_slo(PipelineSLO(deadline_s=30.0)).deadline_s == 30.0


def test_token_due_follows_the_stream_schedule():
    slo = StreamSLO(ttft_s=1.0, tpot_s=0.1)
    assert slo.token_due(5.0, 1) == 6.0
    assert slo.token_due(5.0, 11) == pytest.approx(7.0)


def test_scaled_multiplies_every_budget():
    scaled = StreamSLO(ttft_s=1.0, tpot_s=0.1).scaled(3)
    assert (scaled.ttft_s, scaled.tpot_s) == (3.0, pytest.approx(0.3))
    with pytest.raises(ValueError, match="scale factor"):
        DeadlineSLO(deadline_s=1.0).scaled(0)


@pytest.mark.parametrize("factor, message", [
    (10**400, "scale factor must be positive and finite"),        # an int beyond a float's range: no OverflowError
    (1e300, r"scaled by 1e\+300 is beyond the range of a float"),  # finite, but the product is not
])
def test_scaled_beyond_a_floats_range_is_a_value_error(factor, message):
    with pytest.raises(ValueError, match=message):
        StreamSLO(ttft_s=1e10, tpot_s=0.1).scaled(factor)


@pytest.mark.parametrize("value, expected", [
    (1, True), (0.5, True), (-(2**1000), True), (10**400, False), (-(10**400), False), (math.inf, False),
    (math.nan, False), (True, False), ("1", False), (None, False)])
def test_is_finite_number(value, expected):
    assert is_finite_number(value) is expected


@pytest.mark.parametrize("bad, fragment", [
    ({"kind": "stream", "ttft_s": -1, "tpot_s": 0.1}, "ttft_s: must be a positive finite"),
    ({"kind": "stream", "ttft_s": 1}, "tpot_s: required field missing"),
    ({"kind": "deadline", "deadline_s": 0}, "deadline_s: must be a positive finite"),
    ({"kind": "deadline", "deadline_s": math.nan}, "deadline_s: must be a positive finite"),
    ({"kind": "deadline", "deadline_s": math.inf}, "deadline_s: must be a positive finite"),
    ({"kind": "deadline", "deadline_s": "10"}, "deadline_s: Input should be a valid number"),
    ({"kind": "pipeline", "deadline_s": 5, "per_stage": 1}, "per_stage: unknown field"),
    ({"kind": "latency"}, "kind must be one of"),
    ({"ttft_s": 1.0}, "missing 'kind'"),
    ("not json", "invalid SLO"),
])
def test_bad_slo_is_one_clear_value_error(bad, fragment):
    with pytest.raises(ValueError, match="invalid SLO") as info:
        parse_slo(bad)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
