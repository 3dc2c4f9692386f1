"""The simulated engine's core: continuous batching as vLLM V1 does it, one step at a time.

``EngineCore`` owns the running set and the KV cache (in blocks) and applies its policy's plan
each step: preempted requests lose their blocks and start over by recompute, admitted requests take
a seat, scheduled requests compute their tokens, and every request whose KV cache has caught up
with its tokens samples one output token, delivered at the end of the step. How long a step takes
comes from a latency model. The core keeps no clock of its own: a driver runs each step in two
halves, :meth:`EngineCore.begin_step` (plan, and how long the step will take) and
:meth:`EngineCore.end_step` (at the time the step ended: virtual in benchmarks, real for clients).

The policy plans on the latency model itself, or, with ``learn_step_times``, on a
:class:`~jitagent.engines.latency.LearnedModel` fed the steps the core runs, as vLLM's JIT scheduler
learns from the steps it times; a :class:`~jitagent.engines.speed_trace.SpeedTrace` makes the
steps run as fast as a real machine did, window by window.

A failing policy never stops the engine: a :class:`~jitagent.scheduling.supervisor.PolicySupervisor`
runs it (the same one as vLLM's scheduler), planning a step the policy failed to plan (or, with
``check_plans``, planned beyond the limits) first-come-first-served, and restarting the policy.
"""

from __future__ import annotations

import logging
from collections.abc import KeysView
from dataclasses import dataclass

from jitagent.engines.latency import LatencyModel, LearnedModel, StepShape
from jitagent.engines.speed_trace import SpeedTrace
from jitagent.scheduling.plan import EngineLimits, SchedulerView, StepPlan, check_plan
from jitagent.scheduling.policies.base import Policy
from jitagent.scheduling.policies.baselines import FCFS
from jitagent.scheduling.request import RequestState, RequestStatus
from jitagent.scheduling.supervisor import PolicySupervisor

__all__ = ["EngineCore", "Step", "StepResult"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Step:
    """A planned step: what runs, and how long it takes."""

    plan: StepPlan
    duration: float
    shape: StepShape

    @property
    def idle(self) -> bool:
        """Nothing ran and nothing changed: only time (an arrival) can unblock the engine."""
        return not (self.plan.scheduled or self.plan.preempted or self.plan.rejected)


@dataclass(slots=True)
class StepResult:
    """What a step delivered: requests that got a token, those that finished, those refused."""

    emitted: list[RequestState]
    finished: list[RequestState]
    rejected: list[RequestState]


class EngineCore:
    """Continuous batching over a KV cache of ``limits.num_blocks`` blocks, scheduled by ``policy``.

    Args:
        policy: decides each step's batch.
        latency: how long a step of a given shape takes.
        limits: token budget, seats, KV blocks, max model length.
        check_plans: validate every plan against the limits (on by default; a benchmark that has
            already tested its policy may turn it off for speed).
        speed: step times are the latency model's times this trace's factor at the step's start
            (the engine clock is taken to be the run's: 0 at its start).
        learn_step_times: the policy plans on a step-time model learned from the steps run
            (``latency`` its prior), not on ``latency`` itself.
    """

    def __init__(self, policy: Policy, latency: LatencyModel, limits: EngineLimits,
                 check_plans: bool = True, *, speed: SpeedTrace | None = None,
                 learn_step_times: bool = False) -> None:
        self.supervisor = PolicySupervisor(policy, lambda: self._output_len, last_resort=FCFS, introduce=self._tell)
        self.latency = latency
        self.speed = speed
        self._learned = LearnedModel(latency) if learn_step_times else None
        self._planned_on: LatencyModel = latency if self._learned is None else self._learned
        self.limits = limits
        self.check_plans = check_plans
        self.free_blocks = limits.num_blocks
        self.running: list[RequestState] = []
        self._output_len: dict[RequestState, int] = {}   # when each live request stops (its EOS)
        self.num_steps = 0
        self.num_preemptions = 0

    @property
    def policy(self) -> Policy:
        """The policy scheduling now (a fresh instance after a failure)."""
        assert self.supervisor.policy is not None   # the last resort is a policy
        return self.supervisor.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        """Hand scheduling to ``policy`` as it is: it meets the running requests in its view and hears
        of the requests added from now on (``jitagent cost`` measures a policy this way)."""
        self.supervisor.policy = policy

    @property
    def num_policy_failures(self) -> int:
        """Exceptions raised by the policy, each met by a restart."""
        return self.supervisor.num_failures

    # -- requests ------------------------------------------------------------------------------

    def validate(self, prompt_len: int, max_tokens: int) -> None:
        """Raise ValueError unless a request of this size can ever run on this engine."""
        self.limits.check_request(prompt_len, max_tokens)

    def add_request(self, req: RequestState, output_len: int) -> None:
        """Queue ``req``; the simulated model ends it after ``output_len`` tokens (or ``max_tokens``)."""
        self.validate(req.prompt_len, req.max_tokens)
        if output_len < 1:
            raise ValueError(f"output_len must be at least 1, got {output_len}")
        self._output_len[req] = min(output_len, req.max_tokens)
        self.supervisor.add_request(req)

    def abort(self, req: RequestState) -> None:
        """End ``req`` now, wherever it is, freeing its seat and KV blocks."""
        if req.status.is_done:
            return
        if req.status is RequestStatus.RUNNING:
            self.running.remove(req)
        self._end(req, RequestStatus.ABORTED)

    @property
    def num_live(self) -> int:
        """Requests queued or running."""
        return len(self._output_len)

    @property
    def live(self) -> KeysView[RequestState]:
        """The requests queued or running (a live view: it changes as they do)."""
        return self._output_len.keys()

    # -- one step ------------------------------------------------------------------------------

    def begin_step(self, now: float) -> Step | None:
        """Plan a step at ``now`` and apply its admissions and preemptions; None when idle."""
        if not self._output_len:
            return None
        view = SchedulerView(now, self.running, self.limits, self.free_blocks, self._estimate_step)
        return self.supervisor.schedule(view, lambda plan: self._apply(plan, now),  # type: ignore[arg-type]
                                        self._check if self.check_plans else None)

    def _check(self, plan: StepPlan) -> None:
        check_plan(plan, self.running, self.limits, self.free_blocks)

    def _apply(self, plan: StepPlan, now: float) -> Step:
        """Carry out ``plan``'s preemptions, admissions and refusals; the step it makes."""
        if plan.preempted:
            self._preempt(plan.preempted)
        block_size = self.limits.block_size
        prefill_tokens = decode_seqs = context = pairs = prefill_seqs = 0
        for req, n in plan.scheduled:
            if req.status is not RequestStatus.RUNNING:
                req.status = RequestStatus.RUNNING
                self.running.append(req)
                if req.first_scheduled is None:
                    req.first_scheduled = now
            cached = req.num_computed
            blocks = -(-(cached + n) // block_size)
            if blocks > req.num_blocks:
                self.free_blocks -= blocks - req.num_blocks
                req.num_blocks = blocks
            if n == 1 and req.num_generated:
                decode_seqs += 1
            else:
                prefill_tokens += n
                prefill_seqs += 1
            context += cached + n
            pairs += n * cached + (n * (n + 1)) // 2
        for req in plan.rejected:  # after the admissions: a policy restarted here must see them running
            self._end(req, RequestStatus.REJECTED)
        shape = StepShape(prefill_tokens, decode_seqs, context, pairs, prefill_seqs)
        duration = self.latency.step_time(shape) if plan.scheduled else 0.0
        if self.speed is not None:
            duration *= self.speed.factor_at(now)
        return Step(plan, duration, shape)

    def end_step(self, step: Step, now: float) -> StepResult:
        """Finish ``step`` at ``now``: computed tokens land, new tokens are delivered at ``now``."""
        self.num_steps += 1
        if self._learned is not None and step.duration > 0:
            self._learned.observe(step.shape, step.duration)
        emitted: list[RequestState] = []
        finished: list[RequestState] = []
        for req, n in step.plan.scheduled:
            if req.status is not RequestStatus.RUNNING:
                continue  # aborted while the step ran
            req.num_computed += n
            if req.num_computed == req.prompt_len + req.num_generated:
                req.num_generated += 1
                req.token_times.append(now)
                emitted.append(req)
                if req.num_generated >= self._output_len[req]:
                    finished.append(req)
        if finished:
            done = set(finished)
            self.running = [r for r in self.running if r not in done]
            for req in finished:
                self._end(req, RequestStatus.FINISHED)
        return StepResult(emitted, finished, step.plan.rejected)

    # -- internals -----------------------------------------------------------------------------

    def _tell(self, policy: Policy, req: RequestState) -> None:
        policy.add_request(req)
        reveal = getattr(policy, "reveal_output_len", None)
        if reveal is not None:  # a clairvoyant policy (the oracle) is told what the model will do
            reveal(req, self._output_len[req])

    def _preempt(self, victims: list[RequestState]) -> None:
        gone = set(victims)
        self.running = [r for r in self.running if r not in gone]
        for req in victims:
            self.free_blocks += req.num_blocks
            req.num_blocks = 0
            req.num_computed = 0
            req.status = RequestStatus.PREEMPTED
            req.num_preemptions += 1
        self.num_preemptions += len(victims)
        logger.debug("preempted %d requests", len(victims))

    def _end(self, req: RequestState, status: RequestStatus) -> None:
        self.free_blocks += req.num_blocks
        req.num_blocks = 0
        req.status = status
        del self._output_len[req]
        self.supervisor.finish_request(req)

    def _estimate_step(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        return self._planned_on.step_time(StepShape.estimate(prefill_tokens, decode_seqs, context_tokens))
