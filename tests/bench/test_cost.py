"""The decision-cost benchmark sets up the load it names and reports its figures (never asserted as speeds)."""

import json

from jitagent.bench.cli import main
from jitagent.bench.cost import measure_decision_cost


def test_the_measured_state_is_the_one_asked_for():
    cost = measure_decision_cost("jit", running=16, waiting=40, steps=12)
    assert (cost.policy, cost.running, cost.waiting, cost.steps) == ("jit", 16, 40, 12)
    assert 0 < cost.median_ms <= cost.p99_ms and cost.mean_step_ms > 0
    assert cost.to_dict()["amortised_share"] == cost.mean_ms / cost.mean_step_ms


def test_cost_command_writes_json(tmp_path, capsys):
    assert main(["cost", "--policies", "fcfs,jit", "--running", "8", "--waiting", "20", "--steps", "5",
                 "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "cost.json").read_text())
    assert [r["policy"] for r in rows] == ["fcfs", "jit"]
    assert "mean/step" in capsys.readouterr().out
