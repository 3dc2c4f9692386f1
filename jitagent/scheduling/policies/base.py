"""The policy interface, and vLLM V1's scheduling loop that the baselines share.

An engine tells its policy about every request that arrives (:meth:`Policy.add_request`) and every
one that ends (:meth:`Policy.finish_request`), and asks it for a :class:`StepPlan` once per step.
A policy imports nothing from any engine.
"""

from __future__ import annotations

import heapq
import itertools
from abc import ABC, abstractmethod
from collections import deque
from typing import Any

from jitagent.scheduling.plan import PlanBuilder, SchedulerView, StepPlan
from jitagent.scheduling.request import RequestState

__all__ = ["Policy", "QueuePolicy"]


class Policy(ABC):
    """Decides, step by step, which requests run, with how many tokens, and who is preempted."""

    name: str = ""

    @abstractmethod
    def add_request(self, req: RequestState) -> None:
        """A request arrived and waits to be admitted."""

    @abstractmethod
    def finish_request(self, req: RequestState) -> None:
        """A request finished or was aborted (its status says which); forget it."""

    def requeue(self, req: RequestState) -> None:
        """An admission the plan made but the engine could not carry out: ``req`` waits again."""
        self.add_request(req)

    def fresh(self) -> Policy:
        """A new instance configured as this one and knowing no request: what an engine restarts
        a policy that raised with. A policy configured through its constructor's arguments
        overrides this (the default calls the class with none)."""
        return type(self)()

    def output_estimate(self, req: RequestState) -> float | None:
        """The output length this policy plans ``req`` with as it arrives (what telemetry shows);
        ``None`` for a policy that estimates none."""
        return None

    @abstractmethod
    def schedule(self, view: SchedulerView) -> StepPlan:
        """The plan for one step. Requests the plan admits or preempts change status in the engine
        when it applies the plan; the policy must already count them as running or waiting."""


class QueuePolicy(Policy):
    """vLLM V1's ``Scheduler.schedule`` with a pluggable order.

    One step: first the running requests, in order, each computing what it has left (one token in
    decode, the rest of its prefill otherwise) up to the token budget; a request that cannot get KV
    blocks preempts the lowest-priority running request until it can, or is itself preempted. Then,
    only if nobody was preempted, waiting requests are admitted in queue order while tokens, seats
    and KV blocks last; the first that does not fit blocks the rest (head-of-line blocking).

    Without :attr:`ordered` the order is vLLM's default FCFS: running in admission order, the last
    admitted preempted first, preempted requests back at the head of the queue. With it, it is
    vLLM's priority mode with the key of :meth:`priority`, recomputed each step for the running
    requests (so the token budget goes to the most urgent first) and at queueing time for waiting
    ones: lower keys first, ties by arrival.
    """

    ordered: bool = False

    #: Queue entries tolerated before ended requests are swept out of the queue (then twice what is left).
    COMPACT_AT = 1024

    def __init__(self) -> None:
        self._fifo: deque[RequestState] = deque()
        self._heap: list[tuple[Any, float, int, RequestState]] = []
        self._tiebreak = itertools.count()
        self._compact_at = self.COMPACT_AT

    def priority(self, req: RequestState, now: float) -> Any:
        """The request's priority key, lower first; used when :attr:`ordered` is set."""
        raise NotImplementedError

    def on_scheduled(self, req: RequestState, num_new_tokens: int) -> None:
        """Hook for policies that account for service given (LAS)."""

    # -- queue ---------------------------------------------------------------------------------

    def add_request(self, req: RequestState) -> None:
        self._enqueue(req, now=req.arrival, front=False)

    def finish_request(self, req: RequestState) -> None:
        pass  # done requests are dropped lazily: at the head of the queue, or when it is compacted

    def requeue(self, req: RequestState) -> None:
        self._enqueue(req, now=req.arrival, front=True)  # it was at the head when it was admitted

    def _enqueue(self, req: RequestState, now: float, front: bool) -> None:
        if len(self._fifo) + len(self._heap) >= self._compact_at:
            self._compact()
        if self.ordered:
            heapq.heappush(self._heap, (self.priority(req, now), req.arrival, next(self._tiebreak), req))
        elif front:
            self._fifo.appendleft(req)
        else:
            self._fifo.append(req)

    def _compact(self) -> None:
        """Drop ended requests from the whole queue, not just its head: behind a head that cannot be
        admitted, calls that were cancelled would otherwise pile up for as long as it waits."""
        self._fifo = deque(r for r in self._fifo if not r.status.is_done)
        self._heap = [entry for entry in self._heap if not entry[3].status.is_done]
        heapq.heapify(self._heap)  # the same pop order: keys are unique (the tiebreak)
        self._compact_at = max(self.COMPACT_AT, 2 * (len(self._fifo) + len(self._heap)))

    def _peek(self) -> RequestState | None:
        queue_head = self._fifo[0] if self._fifo else (self._heap[0][3] if self._heap else None)
        while queue_head is not None and queue_head.status.is_done:
            self._pop()
            queue_head = self._fifo[0] if self._fifo else (self._heap[0][3] if self._heap else None)
        return queue_head

    def _pop(self) -> None:
        if self._fifo:
            self._fifo.popleft()
        else:
            heapq.heappop(self._heap)

    # -- one step ------------------------------------------------------------------------------

    def schedule(self, view: SchedulerView) -> StepPlan:
        plan = PlanBuilder(view)
        running = list(view.running)
        keys: dict[RequestState, Any] | None = None
        if self.ordered:
            keys = {r: (self.priority(r, view.now), r.arrival) for r in running}
            running.sort(key=keys.__getitem__)

        index = 0
        while index < len(running) and plan.token_budget > 0:
            req = running[index]
            num_new = min(req.num_uncomputed, plan.token_budget)
            while not plan.schedule(req, num_new):
                if keys is None:
                    victim = running.pop()
                else:
                    victim = max(running, key=keys.__getitem__)
                    if running.index(victim) < index:
                        index -= 1
                    running.remove(victim)
                plan.preempt(victim)
                self._enqueue(victim, view.now, front=True)
                if victim is req:
                    break
            else:
                self.on_scheduled(req, num_new)
                index += 1
                continue
            break  # `req` itself was preempted: nothing lower in the order can run either

        if plan.num_preempted == 0:
            while plan.token_budget > 0 and plan.seats > 0:
                req = self._peek()
                if req is None:
                    break
                num_new = min(req.num_uncomputed, plan.token_budget)
                if not plan.schedule(req, num_new):
                    break
                self._pop()
                self.on_scheduled(req, num_new)
        return plan.build()
