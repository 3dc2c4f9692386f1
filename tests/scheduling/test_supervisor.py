"""PolicySupervisor, the one fallback and restart of a failing policy under both engines: a failed
step is carried out by the last resort (or left to the engine), a fresh instance told the waiting
requests in arrival order takes over, the failed instance's bookkeeping is cleared, and a policy
that cannot be restarted leaves the last resort (or no policy) for good."""

from __future__ import annotations

from jitagent.scheduling.plan import SchedulerView, StepPlan
from jitagent.scheduling.policies import FCFS
from jitagent.scheduling.request import RequestState
from jitagent.scheduling.supervisor import PolicySupervisor
from scenario import RecordingFCFS, make_request, make_view


class Failing(RecordingFCFS):
    """FCFS whose ``schedule`` raises; its fresh instances raise in ``fresh`` too when told so."""

    def __init__(self, restartable: bool = True) -> None:
        super().__init__()
        self.restartable = restartable

    def fresh(self) -> RecordingFCFS:
        if not self.restartable:
            raise RuntimeError("cannot restart")
        return RecordingFCFS()

    def schedule(self, view: SchedulerView) -> StepPlan:
        raise RuntimeError("policy bug")


def _live() -> list[RequestState]:
    running = make_request("r0", running=True, generated=2)
    waiting = [make_request(f"w{i}", arrival=float(i)) for i in range(1, 4)]
    return [running, *waiting]


def test_a_failed_step_is_carried_out_by_the_last_resort_then_a_fresh_policy_takes_over() -> None:
    live = _live()
    for req in live:
        req.policy_data = "stale"
    failing = Failing()
    supervisor = PolicySupervisor(failing, lambda: live, last_resort=FCFS)
    for req in live[1:]:
        supervisor.add_request(req)
    plan = supervisor.schedule(make_view(live[:1]), lambda plan: plan)
    assert plan is not None and [req.id for req, _ in plan.scheduled][:2] == ["r0", "w1"]   # FCFS's plan
    fresh = supervisor.policy
    assert isinstance(fresh, RecordingFCFS) and fresh is not failing and supervisor.num_failures == 1
    assert [req.id for req in fresh.seen] == ["w1", "w2", "w3"]   # the waiting ones, in arrival order
    assert all(req.policy_data is None for req in live)


def test_without_a_last_resort_the_engine_plans_the_step_and_an_unrestartable_policy_leaves_it_for_good() -> None:
    live = _live()
    supervisor = PolicySupervisor(Failing(restartable=False), lambda: live)
    assert supervisor.schedule(make_view(live[:1]), lambda plan: plan) is None   # the engine's own plan
    assert supervisor.policy is None and supervisor.num_failures == 2   # the failure, and its restart's
    assert supervisor.schedule(make_view(live[:1]), lambda plan: plan) is None
    supervisor.finish_request(live[0])   # told nothing, raising nothing
