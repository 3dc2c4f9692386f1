"""The decision-cost benchmark sets up the load it names and reports its figures (never asserted as speeds)."""

import json

import pytest

from jitagent.cli import main
from jitagent.bench.cost import measure_decision_cost


def test_the_measured_state_is_the_one_asked_for():
    cost = measure_decision_cost("jit", running=16, waiting=40, steps=12)
    assert (cost.policy, cost.running, cost.waiting, cost.steps) == ("jit", 16, 40, 12)
    assert 0 < cost.median_ms <= cost.p99_ms and cost.mean_step_ms > 0
    assert cost.to_dict()["amortised_share"] == cost.mean_ms / cost.mean_step_ms


def test_cost_command_writes_json(tmp_path, capsys):
    assert main(["cost", "--policies", "fcfs,jit", "--running", "8", "--waiting", "20", "--steps", "5",
                 "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "cost.json").read_text())["results"]
    assert [r["policy"] for r in rows] == ["fcfs", "jit"]
    assert "mean/step" in capsys.readouterr().out


def test_growth_grid_times_every_policy_at_every_load_and_writes_json_and_png(tmp_path):
    from jitagent.bench.cost import measure_growth, write_growth

    results = measure_growth(["fcfs", "jit"], running=[4, 8], waiting=[10, 30], steps=6, repeats=2)
    assert [(r.policy, r.running, r.waiting) for r in results] == [
        (p, r, w) for r in (4, 8) for w in (10, 30) for p in ("fcfs", "jit")]
    assert all(r.steps == 12 and 0 < r.cpu_median_ms <= r.cpu_p99_ms for r in results)  # pooled repeats
    data, plot = write_growth(results, tmp_path)
    assert [row["waiting"] for row in json.loads(data.read_text())["results"]] == [10, 10, 30, 30, 10, 10, 30, 30]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["cost", "--policies", "fcfs", "--running", "4,6", "--waiting", "5", "--steps", "3",
                 "--out", str(tmp_path / "cli")]) == 0
    assert [r["running"] for r in json.loads((tmp_path / "cli" / "cost.json").read_text())["results"]] == [4, 6]
    assert (tmp_path / "cli" / "cost.png").exists()
    assert main(["cost", "--policies", "nope", "--running", "4", "--waiting", "5"]) == 2
    with pytest.raises(SystemExit) as exc:   # a count that would exhaust memory: argparse's exit
        main(["cost", "--running", "4,99999999"])
    assert exc.value.code == 2
