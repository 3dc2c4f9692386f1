"""A replica's state as it travels to the routers: Ray Serve's ``record_routing_stats`` carries a
plain mapping, polled every ``request_routing_stats_period_s`` by Ray's controller and handed to
every router of the deployment.

:class:`ReplicaReport` is a :class:`jitagent.routing.ReplicaState` in a form that travels: its
output-length estimates as a table (:class:`Estimates`: request class to the replica's conservative
estimate of an uncapped request of that class; the estimate for a capped one is the smaller of that
and its cap, as :class:`~jitagent.scheduling.estimator.OutputLengthEstimator` bounds it). A router
adds what it sent the replica since the report (:meth:`ReplicaReport.state_with`).

A simulated replica reports what its engine core holds, with the figures the simulated replicated
engine (:mod:`jitagent.engines.replicated`) reports: its queue, seats and KV cache, the prefill its
live requests have left, its prefill rate and step time as JIT plans with them, and its policy's
output-length estimates for the request classes it has served.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields, replace
from typing import Any

from jitagent.engines.latency import StepShape
from jitagent.engines.replicated import core_state, prefill_token_time
from jitagent.engines.sim import SimEngine
from jitagent.routing import ReplicaState
from jitagent.scheduling.estimator import OutputLengthEstimator
from jitagent.scheduling.policies import JITConfig
from jitagent.scheduling.request import RequestState

__all__ = ["ReplicaReport", "Estimates", "RequestClasses", "sim_report"]

#: Request classes a replica reports estimates for (the least recently seen is forgotten first, as
#: the estimator forgets them): callers choose class names, so this bounds what they cost.
MAX_CLASSES_REPORTED = 256
_UNCAPPED = 2**31   # max_tokens of the probe request an uncapped estimate is read with


@dataclass(frozen=True, slots=True)
class Estimates:
    """A replica's output-length estimates as a table: request class -> conservative total output
    length of an uncapped request of that class (``other``: of a class not in the table). Called
    as :attr:`ReplicaState.output_estimate <jitagent.routing.ReplicaState.output_estimate>` is."""

    table: dict[str, float] = field(default_factory=dict)
    other: float = 200.0

    def __call__(self, request_class: str, max_tokens: int) -> float:
        return max(1.0, min(self.table.get(request_class, self.other), max_tokens))


@dataclass(frozen=True, slots=True)
class ReplicaReport:
    """One replica's state as it reported it, and when (``time.time()``)."""

    state: ReplicaState
    reported_at: float = field(default_factory=time.time)

    def to_stats(self) -> dict[str, Any]:
        """The mapping ``record_routing_stats`` returns."""
        state = self.state
        estimates = state.output_estimate
        if not isinstance(estimates, Estimates):
            raise TypeError(f"a report travels with an Estimates table, not {type(estimates).__name__}")
        figures = {f.name: getattr(state, f.name) for f in fields(ReplicaState) if f.name != "output_estimate"}
        return {"figures": figures, "estimates": estimates.table, "other_estimate": estimates.other,
                "reported_at": self.reported_at}

    @classmethod
    def from_stats(cls, stats: dict[str, Any]) -> ReplicaReport | None:
        """The report in a replica's routing stats; ``None`` before its first one (or a foreign one)."""
        try:
            estimates = Estimates(dict(stats["estimates"]), float(stats["other_estimate"]))
            return cls(ReplicaState(**stats["figures"], output_estimate=estimates), float(stats["reported_at"]))
        except (KeyError, TypeError, ValueError):
            return None

    def state_with(self, sent: int = 0, sent_prompt_tokens: int = 0) -> ReplicaState:
        """The replica's state, with ``sent`` calls (of ``sent_prompt_tokens`` prompt tokens in all)
        that a router has sent it since the report: they wait there, behind its committed work."""
        state = self.state
        return replace(state, queue_len=state.queue_len + sent,
                       committed_tokens=state.committed_tokens + sent_prompt_tokens)

    def idle(self) -> ReplicaReport:
        """This report as an idle replica of the same kind would make it (for one yet to report)."""
        state = self.state
        return ReplicaReport(replace(state, queue_len=0, running=0, free_seats=state.free_seats + state.running,
                                     committed_tokens=0))


class RequestClasses:
    """The request classes a replica has served, the most recent :data:`MAX_CLASSES_REPORTED`."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()

    def add(self, request_class: str) -> None:
        self._seen[request_class] = None
        self._seen.move_to_end(request_class)
        if len(self._seen) > MAX_CLASSES_REPORTED:
            self._seen.popitem(last=False)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(tuple(self._seen))


def sim_report(engine: SimEngine, classes: RequestClasses) -> ReplicaReport:
    """What a simulated replica reports now."""
    core = engine.core
    config = JITConfig()
    context = sum(req.num_tokens for req in core.running)
    step_time = core.latency.step_time(StepShape.estimate(0, max(len(core.running), 1), context))
    estimate = _estimator_of(engine, config.quantile)
    estimates = Estimates({name: estimate(name) for name in classes}, estimate(None))
    token_time = prefill_token_time(core, config.prefill_efficiency)
    return ReplicaReport(core_state(core, core.live, step_time=step_time, token_time=token_time,
                                    output_estimate=estimates))


def _estimator_of(engine: SimEngine, quantile: float) -> Any:
    """The uncapped estimate of a class (``None``: one the replica has not served) as the engine's
    policy plans with it; a policy that estimates nothing is given the estimator's prior."""
    policy = engine.core.policy
    prior = OutputLengthEstimator()

    def estimate(request_class: str | None) -> float:
        probe = RequestState("probe", 0.0, 1, _UNCAPPED, request_class=request_class or "\0unseen")
        planned = policy.output_estimate(probe)
        return float(planned) if planned is not None else prior.quantile(probe.request_class, quantile)
    return estimate
