"""Recorded scheduling scenarios: every policy's plans, step by step, reduced to one digest per run.

A change meant to make a policy cheaper must not change what it decides. Each scenario serves a
seeded workload on the simulated engine (small enough to run in seconds, loaded enough to exercise
frames with long queues, best effort, refusals, pipelines and preemption), and every plan's
scheduled requests with their token counts, its preemptions and its refusals feed one SHA-256 per
(scenario, policy). ``plan_digests.json`` holds the digests made before the policies were
optimised; ``python tests/scheduling/plan_digests.py --write`` rewrites it, for a change that alters
decisions on purpose (say which and why in its commit).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from jitagent.bench.runner import _Driver
from jitagent.bench.workloads import PipelineArrival, SingleArrival, Workload, build_workload
from jitagent.engines.sim import SimConfig
from jitagent.scheduling.plan import SchedulerView, StepPlan
from jitagent.scheduling.policies import ABLATIONS, POLICIES, Policy, make_policy
from jitagent.scheduling.policies.jit import JIT, JITConfig

DIGESTS = Path(__file__).with_name("plan_digests.json")


@dataclass(frozen=True)
class Scenario:
    name: str
    workload: str
    rate: float
    duration: float
    seed: int
    engine: SimConfig
    reject_every: int = 0   # every n-th arrival asks to be refused rather than served late (0: none)


SCENARIOS: tuple[Scenario, ...] = (
    # Overload with long queues: frames re-rank hundreds of waiting requests; best effort; refusals.
    Scenario("mixed-overload", "mixed", rate=30.0, duration=20.0, seed=1,
             engine=SimConfig(max_num_seqs=48, token_budget=1024), reject_every=3),
    # Streams near capacity, a small KV cache: preemption and KV reservations.
    Scenario("chat-kv-pressure", "chat", rate=12.0, duration=20.0, seed=2,
             engine=SimConfig(max_num_seqs=64, num_blocks=1200)),
    # Pipeline runs: stage and run deadlines, calls of a run admitted together.
    Scenario("pipeline", "pipeline", rate=2.0, duration=30.0, seed=3, engine=SimConfig(max_num_seqs=32)),
    # Deadlines under overload, every other request asking to be refused.
    Scenario("tool-reject", "tool", rate=25.0, duration=15.0, seed=4,
             engine=SimConfig(max_num_seqs=32, token_budget=2048), reject_every=2),
)


def _stressed_jit() -> Policy:
    """JIT with short frames and a short best-effort wait, to reach those paths within seconds."""
    return JIT(JITConfig(frame_steps=8, max_wait_s=4.0, refresh_tokens=4))


POLICY_FACTORIES: dict[str, Callable[[], Policy]] = {
    **{name: (lambda n=name: make_policy(n)) for name in [*POLICIES, *ABLATIONS]},
    "jit-stressed": _stressed_jit,
}


def _with_refusals(workload: Workload, every: int) -> Workload:
    if not every:
        return workload
    arrivals = []
    for i, arrival in enumerate(workload.arrivals):
        if i % every == 0 and isinstance(arrival, (SingleArrival, PipelineArrival)):
            arrival = replace(arrival, slo=arrival.slo.model_copy(update={"on_infeasible": "reject"}))
        arrivals.append(arrival)
    return replace(workload, arrivals=tuple(arrivals))


def _digest_plan(digest: "hashlib._Hash", plan: StepPlan) -> None:
    scheduled = ",".join(f"{r.id}:{n}" for r, n in plan.scheduled)
    preempted = ",".join(r.id for r in plan.preempted)
    rejected = ",".join(r.id for r in plan.rejected)
    digest.update(f"{scheduled}|{preempted}|{rejected}\n".encode())


def digest(scenario: Scenario, policy_name: str) -> dict[str, object]:
    """Serve ``scenario`` with the named policy; the digest of its plans and the steps taken."""
    workload = _with_refusals(build_workload(scenario.workload, rate=scenario.rate, duration=scenario.duration,
                                             seed=scenario.seed), scenario.reject_every)
    policy = POLICY_FACTORIES[policy_name]()
    core = scenario.engine.build_core(policy, check_plans=True)
    digest = hashlib.sha256()
    schedule = policy.schedule

    def recorded(view: SchedulerView) -> StepPlan:
        plan = schedule(view)
        _digest_plan(digest, plan)
        return plan

    policy.schedule = recorded  # type: ignore[method-assign]
    _Driver(workload, core, policy_name, scenario.rate).run(scenario.duration + 120.0, None)
    if core.num_policy_failures:
        raise AssertionError(f"{policy_name} raised in {scenario.name}: its plans after that are FCFS's")
    return {"digest": digest.hexdigest(), "steps": core.num_steps, "preemptions": core.num_preemptions}


def digest_all() -> dict[str, dict[str, dict[str, object]]]:
    return {s.name: {p: digest(s, p) for p in POLICY_FACTORIES} for s in SCENARIOS}


if __name__ == "__main__":
    recorded_runs = digest_all()
    text = json.dumps(recorded_runs, indent=1, sort_keys=True) + "\n"
    if "--write" in sys.argv:
        DIGESTS.write_text(text)
    print(text)
