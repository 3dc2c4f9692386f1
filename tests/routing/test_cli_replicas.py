"""``jitagent bench --replicas N``: policies behind routers side by side, in virtual time, with the
usual table, plot and results.json; mistakes in the new flags end in one line."""

from __future__ import annotations

import json

import pytest

from jitagent.cli import main


def test_bench_on_four_replicas_runs_each_policy_behind_each_router(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["bench", "--workload", "mixed", "--replicas", "4", "--policies", "fcfs,least-loaded/jit",
                 "--rate", "10", "--duration", "30", "--seed", "3", "--jobs", "1", "--no-progress", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["replicas"] == 4
    assert results["config"]["policies"] == ["pow2/fcfs", "slo/fcfs", "least-loaded/jit"]
    for run in results["runs"]:
        assert run["replicas"] == 4 and run["policy"].startswith(run["router"] + "/")
        assert run["router_decisions"] > 0 and run["router_decision_us"] > 0
        assert 0 <= run["slo_attainment"] <= 1 and run["simulated_s"] >= 30
    assert (out / "goodput.png").stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "x pow2/fcfs" in table and "least-loaded/jit" in table


@pytest.mark.parametrize("flags, fragment", [
    (["--replicas", "2", "--routers", "magic"], "unknown router 'magic'"),
    (["--policies", "slo/magic"], "unknown policy 'magic'"),
    (["--replicas", "2", "--engine", "vllm"], "--replicas and routers run on the simulated engine in virtual time only"),
])
def test_bad_replica_flags_give_one_line(tmp_path, capsys, flags, fragment):
    assert main(["bench", "--out", str(tmp_path), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_replica_count_below_one_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit, match="2"):
        main(["bench", "--out", str(tmp_path), "--replicas", "0"])
    fragment = "'0' must be a whole number >= 1"
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err
