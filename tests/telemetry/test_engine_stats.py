"""GenerationStats: what the simulated engine tells telemetry about each request it served."""

from __future__ import annotations

import asyncio

from jitagent.client.backend import GenerationRequest, SimBackend
from jitagent.engines.sim import SimConfig, SimEngine
from jitagent.slo import DeadlineSLO, StreamSLO
from jitagent.telemetry import GenerationStats


def _request(i: int, prompt: int, max_tokens: int, slo=None) -> GenerationRequest:
    return GenerationRequest(f"r{i}", prompt, str(i).encode(), max_tokens, 0, slo, None, "default")


async def _serve(backend: SimBackend, requests: list[GenerationRequest],
                 observe: bool = True) -> list[GenerationStats | None]:
    async def one(request: GenerationRequest) -> GenerationStats | None:
        generation = backend.generate(request, observe=observe)
        async for _ in generation:
            pass
        return generation.stats()
    return await asyncio.gather(*(one(r) for r in requests))


def test_a_stream_ahead_of_schedule_sits_steps_out_under_jit_skip() -> None:
    async def main() -> list[GenerationStats | None]:
        backend = SimBackend(SimEngine(policy="jit-skip", time_scale=0.05), "m")
        return await _serve(backend, [_request(0, 40, 20, StreamSLO(ttft_s=1.0, tpot_s=0.5)),
                                      _request(1, 40, 200, DeadlineSLO(deadline_s=30))])

    stream, deadline = asyncio.run(main())
    assert stream is not None and deadline is not None
    assert stream.sat_out_s > 0 and deadline.sat_out_s == 0
    assert stream.policy == "jit" and stream.estimated_output_tokens is not None  # an ablation of jit
    for stats in (stream, deadline):
        assert stats.arrival <= stats.first_scheduled <= stats.token_times[0]
        assert list(stats.token_times) == sorted(stats.token_times)
        assert stats.preemptions == 0 and stats.preempted_at == ()


def test_preemptions_and_their_times() -> None:
    async def main() -> tuple[list[GenerationStats | None], int]:
        engine = SimEngine(SimConfig(num_blocks=24, max_model_len=300), policy="fcfs", time_scale=0.001)
        stats = await _serve(SimBackend(engine, "m"), [_request(i, 40, 150) for i in range(6)])
        return stats, engine.core.num_preemptions

    stats, total = asyncio.run(main())
    assert total > 0 and sum(s.preemptions for s in stats) == total
    for s in stats:
        assert len(s.preempted_at) == s.preemptions
        assert all(s.first_scheduled <= at <= s.token_times[-1] for at in s.preempted_at)
        assert s.estimated_output_tokens is None  # FCFS makes no estimate


def test_nothing_is_kept_unless_asked() -> None:
    async def main() -> tuple[list[GenerationStats | None], SimEngine]:
        engine = SimEngine(policy="jit", time_scale=0.01)
        return await _serve(SimBackend(engine, "m"), [_request(0, 20, 5)], observe=False), engine

    stats, engine = asyncio.run(main())
    assert stats == [None] and not engine._logs
