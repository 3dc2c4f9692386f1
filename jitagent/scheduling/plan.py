"""The contract between a policy and an engine: what a policy sees, and the step plan it returns.

A policy is handed a :class:`SchedulerView` each step and returns a :class:`StepPlan`:

* ``scheduled``: ``(request, num_new_tokens)`` pairs that run this step, in priority order. A running
  request computes one token in decode or a chunk of its prefill; a waiting or preempted request in
  the list is admitted (it takes a seat among ``max_num_seqs`` and its KV blocks).
* ``preempted``: running requests evicted this step; their KV cache is freed and recomputed later.
* Running requests in neither list sit the step out, keeping their seat and their KV cache.
* ``rejected``: waiting requests refused because they cannot meet their SLO: at once when they
  asked for that (``on_infeasible="reject"``), or after waiting too long as best effort.

:class:`PlanBuilder` keeps the step's budgets (tokens, seats, KV blocks) while a policy composes its
plan, so that no policy can hand an engine a plan that breaks a limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from jitagent.scheduling.request import RequestState, RequestStatus

__all__ = ["EngineLimits", "SchedulerView", "StepPlan", "PlanBuilder", "PlanError", "check_plan"]


class PlanError(ValueError):
    """A policy returned a plan that breaks the engine's limits or names a request it cannot run."""


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Per-step limits of an engine, named as vLLM names them."""

    token_budget: int          # max_num_batched_tokens
    max_num_seqs: int          # seats: running requests, whether or not they run this step
    block_size: int            # tokens per KV block
    num_blocks: int            # KV blocks in the whole cache
    max_model_len: int         # prompt plus output tokens of one request

    def __post_init__(self) -> None:
        for name in ("token_budget", "max_num_seqs", "block_size", "num_blocks", "max_model_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def check_request(self, prompt_tokens: int, max_tokens: int) -> None:
        """Raise ValueError naming the problem unless a request of this size can ever run within
        these limits: every engine's one check of a request's size."""
        if prompt_tokens < 1:
            raise ValueError(f"the prompt must have at least 1 token, got {prompt_tokens}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        total = prompt_tokens + max_tokens
        if total > self.max_model_len:
            raise ValueError(f"prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) is {total} tokens, "
                             f"over the model's maximum context length of {self.max_model_len}")
        if self.blocks_for(total) > self.num_blocks:
            raise ValueError(f"a request of {total} tokens cannot fit the KV cache "
                             f"({self.num_blocks * self.block_size} tokens)")


@dataclass(slots=True)
class SchedulerView:
    """What a policy sees at the start of a step.

    ``running`` is in the engine's running order (admission order, as vLLM's ``self.running``).
    ``step_time`` estimates one step's duration from (prefill tokens, decode sequences, context
    tokens); policies use it to tell how many steps remain before a deadline.
    """

    now: float
    running: Sequence[RequestState]
    limits: EngineLimits
    free_blocks: int
    step_time: Callable[[int, int, int], float]


@dataclass(slots=True)
class StepPlan:
    scheduled: list[tuple[RequestState, int]] = field(default_factory=list)
    preempted: list[RequestState] = field(default_factory=list)
    rejected: list[RequestState] = field(default_factory=list)


class PlanBuilder:
    """Composes a :class:`StepPlan` within the step's token budget, free seats and free KV blocks."""

    __slots__ = ("limits", "running", "token_budget", "free_blocks", "seats", "_scheduled", "_new_blocks",
                 "_preempted", "_rejected")

    def __init__(self, view: SchedulerView) -> None:
        self.limits = view.limits
        self.running = view.running
        self.token_budget = view.limits.token_budget
        self.free_blocks = view.free_blocks
        self.seats = view.limits.max_num_seqs - len(view.running)
        self._scheduled: dict[RequestState, int] = {}   # insertion order is the plan's order
        self._new_blocks: dict[RequestState, int] = {}
        self._preempted: dict[RequestState, None] = {}   # an ordered set
        self._rejected: list[RequestState] = []

    def schedule(self, req: RequestState, num_new_tokens: int) -> bool:
        """Run ``req`` for ``num_new_tokens`` this step, admitting it if it is not running.

        Returns False, changing nothing, when the tokens, a seat or the KV blocks are not there, or
        when ``req`` is already in the plan (scheduled or preempted).
        """
        if (num_new_tokens < 1 or num_new_tokens > self.token_budget or req in self._scheduled
                or req in self._preempted):
            return False
        admitting = req.status is not RequestStatus.RUNNING
        if admitting and (self.seats < 1 or self.limits.blocks_for(req.num_tokens) > self.free_blocks):
            return False  # as vLLM V1 admits: a seat, and room for the whole prompt, not just its first chunk
        block_size = self.limits.block_size
        blocks = -(-(req.num_computed + num_new_tokens) // block_size) - (0 if admitting else req.num_blocks)
        if blocks < 0:
            blocks = 0
        if blocks > self.free_blocks:
            return False
        self.token_budget -= num_new_tokens
        self.free_blocks -= blocks
        self.seats -= admitting
        self._scheduled[req] = num_new_tokens
        self._new_blocks[req] = blocks
        return True

    def schedule_decode(self, req: RequestState) -> bool:
        """:meth:`schedule` for one decode token of a running request: the hot path of every step."""
        if self.token_budget < 1 or req in self._scheduled or req in self._preempted:
            return False
        blocks = -(-(req.num_computed + 1) // self.limits.block_size) - req.num_blocks
        if blocks > 0:
            if blocks > self.free_blocks:
                return False
            self.free_blocks -= blocks
        else:
            blocks = 0
        self.token_budget -= 1
        self._scheduled[req] = 1
        self._new_blocks[req] = blocks
        return True

    def unschedule(self, req: RequestState) -> None:
        """Take back a :meth:`schedule` of this step."""
        self.token_budget += self._scheduled.pop(req)
        self.free_blocks += self._new_blocks.pop(req)
        self.seats += req.status is not RequestStatus.RUNNING

    def preempt(self, req: RequestState) -> None:
        """Evict running ``req``: its seat and all its KV blocks go back to this step's pool."""
        if req.status is not RequestStatus.RUNNING or req in self._preempted:
            raise PlanError(f"cannot preempt {req.id}: it is not running")
        if req in self._scheduled:
            self.unschedule(req)
        self.free_blocks += req.num_blocks
        self.seats += 1
        self._preempted[req] = None

    def reject(self, req: RequestState) -> None:
        """Refuse waiting ``req``: the engine ends it with :class:`~jitagent.slo.InfeasibleSLOError`."""
        if req.status is RequestStatus.RUNNING or req in self._scheduled:
            raise PlanError(f"cannot reject {req.id}: only a waiting request can be rejected")
        self._rejected.append(req)

    def is_scheduled(self, req: RequestState) -> bool:
        return req in self._scheduled

    def is_preempted(self, req: RequestState) -> bool:
        return req in self._preempted

    @property
    def num_scheduled(self) -> int:
        return len(self._scheduled)

    @property
    def num_preempted(self) -> int:
        return len(self._preempted)

    def build(self) -> StepPlan:
        return StepPlan(list(self._scheduled.items()), list(self._preempted), self._rejected)


def check_plan(plan: StepPlan, running: Sequence[RequestState], limits: EngineLimits, free_blocks: int) -> None:
    """Raise :class:`PlanError` unless ``plan`` is within ``limits``; engines call this on every plan."""
    preempted = set(plan.preempted)
    if len(preempted) != len(plan.preempted):
        raise PlanError("a request is preempted twice")
    freed = 0
    for req in plan.preempted:
        if req.status is not RequestStatus.RUNNING:
            raise PlanError(f"preempted request {req.id} is not running")
        freed += req.num_blocks
    tokens = admitted = blocks = 0
    seen: set[RequestState] = set()
    for req, n in plan.scheduled:
        if req in seen or req in preempted:
            raise PlanError(f"request {req.id} is scheduled twice or both scheduled and preempted")
        seen.add(req)
        if req.status.is_done:
            raise PlanError(f"request {req.id} is already {req.status.name.lower()}")
        if not 1 <= n <= req.num_uncomputed:
            raise PlanError(f"request {req.id} scheduled for {n} tokens, has {req.num_uncomputed} to compute")
        is_running = req.status is RequestStatus.RUNNING
        admitted += not is_running
        tokens += n
        blocks += max(0, limits.blocks_for(req.num_computed + n) - (req.num_blocks if is_running else 0))
    if tokens > limits.token_budget:
        raise PlanError(f"plan uses {tokens} tokens, budget is {limits.token_budget}")
    for req in plan.rejected:
        if req.status is RequestStatus.RUNNING or req.status.is_done or req in seen:
            raise PlanError(f"rejected request {req.id} is not waiting")
    if len(running) - len(preempted) + admitted > limits.max_num_seqs:
        raise PlanError(f"plan seats more than max_num_seqs={limits.max_num_seqs}")
    if blocks > free_blocks + freed:
        raise PlanError(f"plan needs {blocks} KV blocks, {free_blocks + freed} are free")
