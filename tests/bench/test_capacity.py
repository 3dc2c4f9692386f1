"""Capacity search against synthetic attainment curves with a known threshold."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest

from jitagent.bench.capacity import find_capacity


def step(threshold: float, calls: list[float]) -> Callable[[float], float]:
    """Attainment 1 up to ``threshold``, 0.5 above; records every rate it is asked for."""
    def attainment_at(rate: float) -> float:
        calls.append(rate)
        return 1.0 if rate <= threshold else 0.5
    return attainment_at


@pytest.mark.parametrize("start", [1.0, 3.7, 10.0, 0.05])
def test_finds_threshold_within_tolerance(start: float) -> None:
    calls: list[float] = []
    result = find_capacity(step(3.7, calls), start=start, rel_tol=0.05, max_probes=32)
    assert result.converged
    assert 3.7 / 1.05 <= result.capacity <= 3.7
    met = [p.rate for p in result.probes if p.attainment >= 0.9]
    failed = [p.rate for p in result.probes if p.attainment < 0.9]
    assert result.capacity == max(met)
    assert min(failed) / result.capacity - 1 <= 0.05


def test_each_rate_is_evaluated_once() -> None:
    calls: list[float] = []
    result = find_capacity(step(3.7, calls), start=1.0)
    assert len(calls) == len(set(calls)) == len(result.probes)
    assert [p.rate for p in result.probes] == calls
    assert calls[:3] == [1.0, 2.0, 4.0]  # bracketed by doubling, then bisected


def test_tolerance_below_float_precision_terminates_without_repeats() -> None:
    calls: list[float] = []
    result = find_capacity(step(3.7, calls), start=1.0, rel_tol=1e-300, max_probes=500)
    assert result.converged
    assert len(calls) == len(set(calls)) < 500
    assert 3.7 - 1e-14 < result.capacity <= 3.7


def test_never_meeting_target_returns_zero() -> None:
    calls: list[float] = []
    result = find_capacity(lambda rate: calls.append(rate) or 0.2, start=8.0)
    assert result.capacity == 0.0
    assert calls == [8.0 / 2**k for k in range(9)]  # down to start / 256, no lower


def test_max_probes_stops_an_unbounded_search() -> None:
    calls: list[float] = []
    result = find_capacity(step(math.inf, calls), start=1.0, max_probes=5)
    assert not result.converged
    assert calls == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert result.capacity == 16.0


def test_target_is_inclusive() -> None:
    result = find_capacity(lambda rate: 0.9 if rate <= 2.0 else 0.89, start=2.0, rel_tol=0.01)
    assert 2.0 / 1.01 <= result.capacity <= 2.0


def test_to_dict_is_json() -> None:
    result = find_capacity(step(3.7, []), start=1.0)
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["capacity"] == result.capacity and d["target"] == 0.9 and d["converged"] is True
    assert d["probes"][0] == {"rate": 1.0, "attainment": 1.0}


@pytest.mark.parametrize("kwargs, match", [
    ({"target": 0.0}, "target"),
    ({"target": 1.1}, "target"),
    ({"target": math.nan}, "target"),
    ({"start": 0.0}, "start"),
    ({"start": -1.0}, "start"),
    ({"start": math.inf}, "start"),
    ({"rel_tol": 0.0}, "rel_tol"),
    ({"rel_tol": -0.1}, "rel_tol"),
    ({"max_probes": 0}, "max_probes"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        find_capacity(lambda rate: 1.0, **{"start": 1.0, **kwargs})


@pytest.mark.parametrize("value", [1.5, -0.1, math.nan])
def test_bad_attainment_raises(value: float) -> None:
    with pytest.raises(ValueError, match="attainment_at"):
        find_capacity(lambda rate: value, start=1.0)
