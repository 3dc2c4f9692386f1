"""The baselines jitagent is measured against, each faithful to what it names.

All four run vLLM V1's scheduling loop (:class:`QueuePolicy`) and differ only in their order.
"""

from __future__ import annotations

from collections import OrderedDict

from jitagent.scheduling.estimator import OutputLengthEstimator
from jitagent.scheduling.policies.base import QueuePolicy
from jitagent.scheduling.request import RequestState, RequestStatus

__all__ = ["FCFS", "EDF", "LTR", "LAS"]


class FCFS(QueuePolicy):
    """vLLM V1's default: first come, first served; decode before new prefill; preempt the newest."""

    name = "fcfs"


class EDF(QueuePolicy):
    """Earliest deadline first: a stream's next token due time, a deadline request's deadline,
    a pipeline call's stage deadline."""

    name = "edf"
    ordered = True

    def priority(self, req: RequestState, now: float) -> float:
        return req.next_due()


class LTR(QueuePolicy):
    """Shortest predicted remaining output first (learning-to-rank style SJF), predicting with the
    online length estimator at its median."""

    name = "ltr"
    ordered = True

    def __init__(self, estimator: OutputLengthEstimator | None = None) -> None:
        super().__init__()
        self.estimator = estimator or OutputLengthEstimator()

    def priority(self, req: RequestState, now: float) -> float:
        return self.estimator.remaining(req.request_class, 0.5, req.num_generated, req.max_tokens)

    def finish_request(self, req: RequestState) -> None:
        if req.status is RequestStatus.FINISHED:
            self.estimator.observe(req.request_class, req.num_generated)


class LAS(QueuePolicy):
    """Autellix's program-level least attained service (PLAS): the program (pipeline run, or the
    request alone) that has received the least service runs first, in buckets of ``bucket_tokens``
    computed tokens, arrival order within a bucket.

    A request alone is forgotten when it ends. A pipeline run is kept while it has calls in the
    engine, and after that among the ``max_idle_runs`` runs most recently active, since its next
    round's calls still need its total; a run idle for longer than that (its caller chose its id,
    and may never send another call) is forgotten, and a later call of it starts from no service.
    """

    name = "las"
    ordered = True

    def __init__(self, bucket_tokens: int = 400, max_idle_runs: int = 10_000) -> None:
        super().__init__()
        if bucket_tokens < 1:
            raise ValueError(f"bucket_tokens must be at least 1, got {bucket_tokens}")
        if max_idle_runs < 0:
            raise ValueError(f"max_idle_runs must be at least 0, got {max_idle_runs}")
        self.bucket_tokens = bucket_tokens
        self.max_idle_runs = max_idle_runs
        self._service: dict[str, int] = {}
        self._calls: dict[str, int] = {}                  # program -> its requests in the engine
        self._idle: OrderedDict[str, None] = OrderedDict()  # runs without a call in the engine, oldest first

    def fresh(self) -> LAS:
        return type(self)(self.bucket_tokens, self.max_idle_runs)

    @staticmethod
    def _program(req: RequestState) -> str:
        return req.pipeline.run_id if req.pipeline is not None else req.id

    def priority(self, req: RequestState, now: float) -> int:
        return self._service.get(self._program(req), 0) // self.bucket_tokens

    def on_scheduled(self, req: RequestState, num_new_tokens: int) -> None:
        program = self._program(req)
        self._service[program] = self._service.get(program, 0) + num_new_tokens

    def add_request(self, req: RequestState) -> None:
        program = self._program(req)
        self._calls[program] = self._calls.get(program, 0) + 1
        self._idle.pop(program, None)
        super().add_request(req)

    def finish_request(self, req: RequestState) -> None:
        program = self._program(req)
        calls = self._calls.get(program, 0) - 1
        if calls > 0:
            self._calls[program] = calls
            return
        self._calls.pop(program, None)
        if req.pipeline is None:
            self._service.pop(program, None)
            return
        self._idle[program] = None  # its next round's calls still need its total, for a while
        if len(self._idle) > self.max_idle_runs:
            self._service.pop(self._idle.popitem(last=False)[0], None)
