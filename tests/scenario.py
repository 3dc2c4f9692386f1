"""Helpers for building hand-made scheduling scenarios."""

from __future__ import annotations

from jitagent.engines.latency import StepShape, load_profile
from jitagent.scheduling.plan import EngineLimits, SchedulerView
from jitagent.scheduling.policies import FCFS
from jitagent.scheduling.request import RequestState, RequestStatus

A100 = load_profile("llama-3.1-8b-a100").latency


def a100_step_time(prefill: int, decodes: int, context: int) -> float:
    """Llama-3.1-8B on an A100, as the simulated engine's estimate gives it to policies."""
    return A100.step_time(StepShape(prefill, decodes, context, context + prefill * prefill // 2))


def make_request(id: str, prompt: int = 8, *, arrival: float = 0.0, generated: int = 0, computed: int | None = None,
                 running: bool = False, block_size: int = 4, max_tokens: int = 256, **kw) -> RequestState:
    """A request in a chosen state; a running one holds exactly the blocks its computed tokens need."""
    req = RequestState(id, arrival, prompt, max_tokens, **kw)
    req.num_generated = generated
    if running:
        req.status = RequestStatus.RUNNING
        req.num_computed = prompt + generated - 1 if computed is None else computed
        req.num_blocks = -(-req.num_computed // block_size)
    return req


def make_view(running: list[RequestState], *, now: float = 0.0, token_budget: int = 64, max_num_seqs: int = 8,
              block_size: int = 4, num_blocks: int = 64, free_blocks: int | None = None) -> SchedulerView:
    limits = EngineLimits(token_budget, max_num_seqs, block_size, num_blocks, max_model_len=4096)
    used = sum(r.num_blocks for r in running)
    return SchedulerView(now, running, limits, num_blocks - used if free_blocks is None else free_blocks,
                         a100_step_time)


class RecordingFCFS(FCFS):
    """FCFS that keeps every request it was given, to see what reached the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[RequestState] = []

    def add_request(self, req: RequestState) -> None:
        self.seen.append(req)
        super().add_request(req)
