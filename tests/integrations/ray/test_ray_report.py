"""What a simulated replica reports to the router (no cluster): the report survives the trip as Ray
carries it (a plain mapping), and its output-length estimates are the replica's policy's own."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from jitagent.engines.sim import SimEngine  # noqa: E402
from jitagent.scheduling.policies import JIT  # noqa: E402
from jitagent_ray.stats import ReplicaReport, RequestClasses, sim_report  # noqa: E402


def test_a_report_travels_and_estimates_as_the_replicas_policy_does() -> None:
    policy = JIT()
    for length in range(100, 400, 10):   # 30 finished "plan" calls: the class has samples of its own
        policy.estimator.observe("plan", length)
    engine = SimEngine(policy=policy)
    classes = RequestClasses()
    classes.add("plan")
    report = ReplicaReport.from_stats(sim_report(engine, classes).to_stats())
    assert report is not None
    quantile = policy.config.quantile
    for request_class, cap in (("plan", 10_000), ("plan", 150), ("unseen", 10_000), ("unseen", 50)):
        assert report.state.output_estimate(request_class, cap) == pytest.approx(
            policy.estimator.quantile(request_class, quantile, 0, cap))
    state = report.state_with(sent=2, sent_prompt_tokens=300)   # what a router sent since the report
    assert state.queue_len == report.state.queue_len + 2
    assert state.committed_tokens == report.state.committed_tokens + 300
    assert ReplicaReport.from_stats({}) is None   # a replica yet to report (Ray's default stats)
