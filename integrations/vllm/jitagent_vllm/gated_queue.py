"""vLLM's waiting queue with a gate: it holds every waiting request but lets vLLM's scheduling loop
see only those the policy admits this step, in the policy's order.

vLLM's ``Scheduler.schedule`` admits from ``self.waiting`` while its budgets last
(``peek_request``/``pop_request`` until the queue is falsy). :class:`GatedQueue` answers those
calls from the step's admitted list, and everything else (``len``, iteration, removal: what
counts, stats and aborts use) from the whole queue, so vLLM's bookkeeping stays right while the
policy decides who goes in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from vllm.v1.core.sched.request_queue import RequestQueue
from vllm.v1.request import Request

__all__ = ["GatedQueue"]


class GatedQueue(RequestQueue):
    """Every waiting request, in arrival order; the admitted ones, in admission order."""

    def __init__(self) -> None:
        self._all: dict[Request, None] = {}   # an insertion-ordered set
        self._open: deque[Request] = deque()

    # -- the gate ------------------------------------------------------------------------------

    def open(self, admitted: Iterable[Request]) -> None:
        """Let vLLM's loop admit these requests this step, in this order."""
        self._open = deque(r for r in admitted if r in self._all)

    def open_all(self) -> None:
        """Let vLLM's loop admit in arrival order, as its own FCFS queue would."""
        self._open = deque(self._all)

    def close(self) -> None:
        """Shut the gate (the admitted requests vLLM did not take wait on, in the whole queue)."""
        self._open.clear()

    # -- RequestQueue: what vLLM's admission loop sees -----------------------------------------

    def __bool__(self) -> bool:
        return bool(self._open)

    def peek_request(self) -> Request:
        if not self._open:
            raise IndexError("peek from an empty queue")
        return self._open[0]

    def pop_request(self) -> Request:
        request = self._open.popleft()
        del self._all[request]
        return request

    # -- RequestQueue: bookkeeping over every waiting request ----------------------------------

    def add_request(self, request: Request) -> None:
        self._all[request] = None

    def prepend_request(self, request: Request) -> None:
        # A preempted or skipped request: back to waiting; the policy decides when it runs.
        self._all[request] = None

    def prepend_requests(self, requests: Iterable[Request]) -> None:
        for request in requests:
            self._all[request] = None

    def remove_request(self, request: Request) -> None:
        self._all.pop(request, None)
        if request in self._open:
            self._open.remove(request)

    def remove_requests(self, requests: Iterable[Request]) -> None:
        gone = set(requests)
        for request in gone:
            self._all.pop(request, None)
        if self._open:
            self._open = deque(r for r in self._open if r not in gone)

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Request]:
        return iter(self._all)

    def __contains__(self, request: object) -> bool:
        return request in self._all
