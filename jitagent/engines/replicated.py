"""``ReplicatedCore``: N simulated engine cores behind a router, one decision per request.

Each replica is an :class:`~jitagent.engines.core.EngineCore` with a policy of its own; a
:class:`~jitagent.routing.Router` places each request as it arrives, from the states the replicas
report (:class:`~jitagent.routing.ReplicaState`): what a replica serving behind Ray Serve would report
through ``record_routing_stats``. A driver steps each replica in two halves, as it steps one core
(:func:`jitagent.bench.driver.step_virtual` in virtual time).

A request placed while its replica runs a step waits in that replica's inbox until the step ends, as
a real engine takes new requests between steps; the router sees it there (its replica's queue and
committed work count it). With one replica nothing is routed: the core sees what it would see alone.

What a replica reports, and where it comes from:

* its queue, seats and KV cache: the core's own;
* its step time: the average of its recent steps (weight 0.1 to the newest, as JIT's clock);
* its prefill rate: a full token budget of prefill as the latency model times it, over the budget
  and JIT's ``prefill_efficiency`` (what JIT plans with);
* its committed work: the prefill its live and inbox requests have left (JIT's ``prefill_left``);
* its output-length estimates: an :class:`~jitagent.scheduling.estimator.OutputLengthEstimator`
  fed the lengths of the requests it finished, read at JIT's admission quantile (what a JIT
  replica's policy learns from the same requests; a replica of any policy reports them).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence

from jitagent.engines.core import EngineCore, Step, StepResult
from jitagent.engines.latency import StepShape
from jitagent.routing import ReplicaState, RouteRequest, Router
from jitagent.scheduling.estimator import OutputLengthEstimator
from jitagent.scheduling.feasibility import prefill_left
from jitagent.scheduling.policies import JITConfig, Policy
from jitagent.scheduling.request import RequestState, RequestStatus

__all__ = ["ReplicatedCore", "MAX_RUNS_REMEMBERED", "core_state", "prefill_token_time"]

#: Pipeline runs whose replica the engine remembers (for the router to keep a run's calls together);
#: the least recently routed is forgotten first, so that callers' run ids bound no memory.
MAX_RUNS_REMEMBERED = 4096
_STEP_TIME_WEIGHT = 0.1   # weight of the newest step in a replica's reported step time


def prefill_token_time(core: EngineCore, prefill_efficiency: float) -> float:
    """Seconds of a step per prefill token when prefill fills the token budget, as the latency
    model times it, at ``prefill_efficiency`` (what JIT plans with)."""
    budget = core.limits.token_budget
    return core.latency.step_time(StepShape.estimate(budget, 0, 0)) / budget / prefill_efficiency


def core_state(core: EngineCore, live: Collection[RequestState], *, step_time: float, token_time: float,
               output_estimate: Callable[[str, int], float],
               placed: Sequence[RequestState] = ()) -> ReplicaState:
    """What a replica serving from ``core`` reports: its seats and KV cache, its queue and committed
    prefill (``live``, its requests waiting or running, and ``placed``, routed to it but not yet
    taken), with the timings and estimates given (each replica host measures those its own way)."""
    running = len(core.running)
    return ReplicaState(
        queue_len=len(live) + len(placed), running=running, free_seats=core.limits.max_num_seqs - running,
        free_kv_tokens=core.free_blocks * core.limits.block_size, step_time=step_time, token_time=token_time,
        committed_tokens=sum(prefill_left(req) for req in live) + sum(req.prompt_len for req in placed),
        output_estimate=output_estimate)


class _Replica:
    """One core, its inbox, and what it reports to the router."""

    __slots__ = ("core", "inbox", "live", "estimator", "quantile", "step_time", "token_time", "version",
                 "_state", "_state_version")

    def __init__(self, core: EngineCore, quantile: float, prefill_efficiency: float) -> None:
        self.core = core
        self.inbox: list[tuple[RequestState, int]] = []
        # In the core, waiting or running, as the router has been told: a request the core refuses
        # leaves at the end of the step that refused it (the core's own set drops it when the step
        # is planned).
        self.live: dict[RequestState, None] = {}
        self.estimator = OutputLengthEstimator()
        self.quantile = quantile
        self.token_time = prefill_token_time(core, prefill_efficiency)
        self.step_time = core.latency.step_time(StepShape.estimate(0, 1, 0))
        self.version = 0   # moves whenever what the replica reports may have changed
        self._state: ReplicaState | None = None
        self._state_version = -1

    def output_estimate(self, request_class: str, max_tokens: int) -> float:
        return self.estimator.quantile(request_class, self.quantile, 0, max_tokens)

    def state(self) -> ReplicaState:
        """What the replica reports now (made again only after it changed)."""
        if self._state is None or self._state_version != self.version:
            self._state = core_state(self.core, self.live, step_time=self.step_time, token_time=self.token_time,
                                     output_estimate=self.output_estimate, placed=[req for req, _ in self.inbox])
            self._state_version = self.version
        return self._state


class ReplicatedCore:
    """Cores behind a router.

    Args:
        cores: the replicas, each with its own policy.
        router: places each request (not asked when there is one replica: ``None`` will do).
        quantile: the output-length quantile replicas report (JIT's admission quantile).
    """

    def __init__(self, cores: Sequence[EngineCore], router: Router | None, *, quantile: float | None = None) -> None:
        if not cores:
            raise ValueError("a replicated engine needs at least one replica")
        if router is None and len(cores) > 1:
            raise ValueError(f"{len(cores)} replicas need a router")
        defaults = JITConfig()
        self.router = router
        self.replicas = [_Replica(core, defaults.quantile if quantile is None else quantile,
                                  defaults.prefill_efficiency) for core in cores]
        self._runs: OrderedDict[str, int] = OrderedDict()   # run id -> replica of its latest call
        self.with_inbox: set[int] = set()   # replicas whose inbox holds requests
        self.num_refused = 0
        self.num_decisions = 0
        self.decision_s = 0.0   # time spent in the router's decisions
        self.state_s = 0.0      # time spent gathering the replicas' states for them

    @classmethod
    def build(cls, make_core: Callable[[Policy | str], EngineCore], policy: Policy | str, replicas: int,
              router: Router | None) -> ReplicatedCore:
        """``replicas`` cores made by ``make_core``: the first with ``policy``, the others with a fresh
        policy configured as it (a name makes a fresh one each)."""
        cores = [make_core(policy)]
        for _ in range(replicas - 1):
            cores.append(make_core(policy if isinstance(policy, str) else policy.fresh()))
        return cls(cores, router)

    # -- what the driver sees ------------------------------------------------------------------

    @property
    def policy_name(self) -> str:
        return self.replicas[0].core.policy.name

    @property
    def num_live(self) -> int:
        return sum(replica.core.num_live + len(replica.inbox) for replica in self.replicas)

    @property
    def num_steps(self) -> int:
        return sum(replica.core.num_steps for replica in self.replicas)

    @property
    def num_preemptions(self) -> int:
        return sum(replica.core.num_preemptions for replica in self.replicas)

    def add_request(self, req: RequestState, output_len: int) -> bool:
        """Place ``req`` (the simulated model ends it after ``output_len`` tokens) in a replica's
        inbox; ``False`` when the router refused it (it is then ended as rejected). Raises
        ValueError, placing nothing, for a request no replica can ever serve."""
        self.replicas[0].core.validate(req.prompt_len, req.max_tokens)   # the replicas are alike
        if output_len < 1:
            raise ValueError(f"output_len must be at least 1, got {output_len}")
        index = 0 if len(self.replicas) == 1 else self._route(req)
        if index is None:
            req.status = RequestStatus.REJECTED
            self.num_refused += 1
            return False
        replica = self.replicas[index]
        replica.inbox.append((req, output_len))
        replica.version += 1
        self.with_inbox.add(index)
        return True

    def _route(self, req: RequestState) -> int | None:
        run_id = req.pipeline.run_id if req.pipeline is not None else None
        began = time.perf_counter()
        states = [replica.state() for replica in self.replicas]
        request = RouteRequest.of(req, self._runs.get(run_id) if run_id is not None else None)
        decided = time.perf_counter()
        index = self.router.choose(states, request)  # type: ignore[union-attr]  # two replicas or more: a router
        self.decision_s += time.perf_counter() - decided
        self.state_s += decided - began
        self.num_decisions += 1
        if index is not None and run_id is not None:
            self._runs[run_id] = index
            self._runs.move_to_end(run_id)
            if len(self._runs) > MAX_RUNS_REMEMBERED:
                self._runs.popitem(last=False)
        return index

    # -- one replica's step, in two halves -----------------------------------------------------

    def begin_step(self, index: int, now: float) -> Step | None:
        """Hand replica ``index`` its inbox, then plan its step at ``now`` (None: nothing live)."""
        replica = self.replicas[index]
        core = replica.core
        if replica.inbox:
            for req, output_len in replica.inbox:
                core.add_request(req, output_len)
                replica.live[req] = None
            replica.inbox.clear()
            self.with_inbox.discard(index)
        replica.version += 1
        return core.begin_step(now)

    def end_step(self, index: int, step: Step, now: float) -> StepResult:
        """Finish replica ``index``'s ``step`` at ``now``."""
        replica = self.replicas[index]
        result = replica.core.end_step(step, now)
        replica.step_time += _STEP_TIME_WEIGHT * (step.duration - replica.step_time)
        for req in result.finished:
            replica.live.pop(req, None)   # (a bare core's driver may add requests to it directly)
            replica.estimator.observe(req.request_class, req.num_generated)
        for req in result.rejected:
            replica.live.pop(req, None)
        replica.version += 1
        return result
