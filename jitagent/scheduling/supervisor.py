"""``PolicySupervisor``: a policy that raises never stops the engine it schedules.

Both engines schedule through one: the simulated engine's core
(:class:`~jitagent.engines.core.EngineCore`) and vLLM's (``jitagent_vllm.JITScheduler``, where an
exception would end vLLM's engine process). When the policy raises, planning a step (or, with a
``check``, returns a plan that breaks the engine's limits) or being told of a request, the
supervisor:

1. logs the first failure with its traceback and counts them all (:attr:`num_failures`);
2. has that step planned without it: by the engine's last resort (below), told every live request;
3. restarts the policy: every live request's ``policy_data`` (the failed instance's bookkeeping,
   such as JIT's estimates) is cleared, and a fresh instance (:meth:`Policy.fresh`, configured as
   the failed one) is told every live request that is not running, in arrival order (running
   ones it meets in its view);
4. if that fails too, hands scheduling to the engine's last resort for good: a policy the
   engine names (the simulated engine's :class:`~jitagent.scheduling.policies.baselines.FCFS`),
   or none (:attr:`policy` is ``None``: vLLM's own scheduling).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from jitagent.scheduling.plan import SchedulerView, StepPlan
from jitagent.scheduling.policies.base import Policy
from jitagent.scheduling.request import RequestState, RequestStatus

__all__ = ["PolicySupervisor"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def _add(policy: Policy, req: RequestState) -> None:
    policy.add_request(req)


class PolicySupervisor:
    """Runs ``policy`` on behalf of an engine, restarting it when it raises.

    Args:
        policy: the policy to run.
        live: the engine's live requests (queued or running), in arrival order, each time it is called.
        last_resort: the policy that takes over for good when the policy cannot be restarted;
            ``None``: no policy (the engine schedules by itself).
        introduce: tells a policy of a request (by default its ``add_request``; the simulated
            engine also reveals the true output length to a clairvoyant policy).
    """

    def __init__(self, policy: Policy, live: Callable[[], Iterable[RequestState]], *,
                 last_resort: Callable[[], Policy] | None = None,
                 introduce: Callable[[Policy, RequestState], None] = _add) -> None:
        self.policy: Policy | None = policy
        self.num_failures = 0   # exceptions raised by the policy (and by its restarts)
        self._live = live
        self._last_resort = last_resort
        self._introduce = introduce

    def schedule(self, view: SchedulerView, carry_out: Callable[[StepPlan | None], _T],
                 check: Callable[[StepPlan], None] | None = None) -> _T:
        """``carry_out(plan)`` of the policy's plan for the step ``view`` shows (``check`` raises if
        the plan is unusable). If either raises, ``carry_out`` of the last resort's plan for this
        step (``None`` without one: the engine's own), then a restart; the same without a policy."""
        if self.policy is None:
            return carry_out(None)
        try:
            plan = self.policy.schedule(view)
            if check is not None:
                check(plan)
        except Exception:
            self._note_failure("schedule")
        else:
            return carry_out(plan)
        # Carried out before the restart: the fresh policy must see the requests this step admits running.
        done = carry_out(self.introduced(self._last_resort()).schedule(view) if self._last_resort is not None else None)
        self._restart()
        return done

    def add_request(self, req: RequestState) -> None:
        """Tell the policy of a new request (restarting it if that raises)."""
        if self.policy is None:
            return
        try:
            self._introduce(self.policy, req)
        except Exception:
            self._failed("add_request")

    def finish_request(self, req: RequestState) -> None:
        """Tell the policy a request has ended (restarting it if that raises)."""
        self._call("finish_request", req)

    def requeue(self, req: RequestState) -> None:
        """Tell the policy a request it counted as running waits again (restarting it if that raises)."""
        self._call("requeue", req)

    def introduced(self, policy: Policy) -> Policy:
        """``policy``, told every live request that is not running, in arrival order."""
        for req in self._live():
            if req.status is not RequestStatus.RUNNING:
                self._introduce(policy, req)
        return policy

    def _call(self, method: str, req: RequestState) -> None:
        if self.policy is None:
            return
        try:
            getattr(self.policy, method)(req)
        except Exception:
            self._failed(method)

    def _failed(self, where: str) -> None:
        self._note_failure(where)
        self._restart()

    def _note_failure(self, where: str) -> None:
        """Log the first failure with its traceback (called from an ``except`` block); count them all."""
        if self.num_failures == 0:
            assert self.policy is not None
            logger.exception("the %r policy raised in %s; a fresh instance of it takes over (a step it failed to "
                             "plan is planned first-come-first-served). Logged once: num_failures counts them",
                             self.policy.name, where)
        self.num_failures += 1

    def _restart(self) -> None:
        """Replace the policy by a fresh instance; the last resort if that fails too."""
        assert self.policy is not None
        for req in self._live():
            req.policy_data = None  # the failed instance's bookkeeping
        try:
            self.policy = self.introduced(self.policy.fresh())
        except Exception:
            logger.exception("the %r policy could not be restarted; scheduling first-come-first-served from now on",
                             self.policy.name)
            self.num_failures += 1
            self.policy = self.introduced(self._last_resort()) if self._last_resort is not None else None
