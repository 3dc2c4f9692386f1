"""The spans and metrics of JITClient calls, recorded with the real OpenTelemetry SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from jitagent.client import JITClient
from jitagent.client.backend import SimBackend
from jitagent.engines.sim import SimConfig, SimEngine
from jitagent.telemetry import CONTENT_ENV
from otel_recorder import Recorder

MESSAGES = [{"role": "user", "content": "Plan the next stage."}]
DEADLINE = {"kind": "deadline", "deadline_s": 5.0}
STREAM = {"kind": "stream", "ttft_s": 1.0, "tpot_s": 0.1}


def run(test: Callable[[JITClient], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        kw.setdefault("time_scale", 0.01)
        client = JITClient(max_retries=0, **kw)
        try:
            await test(client)
        finally:
            await client.close()
    asyncio.run(main())


def _event_times(span: Any) -> dict[str, list[int]]:
    times: dict[str, list[int]] = {}
    for event in span.events:
        times.setdefault(event.name, []).append(event.timestamp)
    return times


def test_chat_call_span_follows_the_genai_conventions_and_carries_its_slack() -> None:
    rec = Recorder()

    async def test(client: JITClient) -> None:
        reply = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=20,
                                                     seed=3, extra_body={"slo": DEADLINE, "request_class": "plan"})
        [span] = rec.spans()
        a = span.attributes
        assert span.name == f"chat {client.served_model}" and span.kind is SpanKind.INTERNAL
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "jitagent"
        assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == client.served_model
        assert a["gen_ai.request.max_tokens"] == 20 and a["gen_ai.request.seed"] == 3
        assert a["gen_ai.response.id"] == reply.id
        assert reply.usage is not None
        assert a["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
        assert a["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
        assert a["gen_ai.response.finish_reasons"] == (reply.choices[0].finish_reason,)
        assert "gen_ai.response.time_to_first_chunk" not in a  # not streamed
        assert a["jitagent.slo.kind"] == "deadline" and a["jitagent.slo.deadline_s"] == 5.0
        assert a["jitagent.policy"] == "jit" and a["jitagent.request_class"] == "plan"
        assert a["jitagent.slo.met"] is True
        duration = (span.end_time - span.start_time) / 1e9
        assert 0 < a["jitagent.slack.end_s"] < a["jitagent.slack.start_s"]
        assert a["jitagent.slack.start_s"] == pytest.approx(5.0, abs=0.05)  # due 5 s after the engine took it
        assert a["jitagent.slack.start_s"] - a["jitagent.slack.end_s"] == pytest.approx(duration, abs=2e-3)
        assert a["jitagent.deadline"] == pytest.approx(span.start_time / 1e9 + a["jitagent.slack.start_s"], abs=2e-3)
        assert a["jitagent.queue_s"] >= 0 and a["jitagent.sat_out_s"] >= 0 and a["jitagent.preemptions"] == 0
        assert 1 <= a["jitagent.output_tokens.estimated"] <= 20
        events = _event_times(span)
        assert span.start_time <= events["jitagent.admitted"][0] <= events["jitagent.first_token"][0] <= span.end_time
        assert span.status.status_code is StatusCode.UNSET
    run(test, policy="jit", **rec.providers)


def test_streamed_call_has_its_time_to_first_chunk_and_a_stream_slo() -> None:
    rec = Recorder()

    async def test(client: JITClient) -> None:
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=15,
                                                      stream=True, extra_body={"slo": STREAM})
        chunks = [c async for c in stream]
        [span] = rec.spans("chat")
        a = span.attributes
        assert a["jitagent.slo.kind"] == "stream" and (a["jitagent.slo.ttft_s"], a["jitagent.slo.tpot_s"]) == (1.0, 0.1)
        assert 0 < a["gen_ai.response.time_to_first_chunk"] < (span.end_time - span.start_time) / 1e9
        assert a["gen_ai.usage.output_tokens"] == sum(bool(c.choices and c.choices[0].delta.content) for c in chunks)
        assert a["jitagent.slo.met"] is True and a["jitagent.slack.end_s"] > 0
    run(test, **rec.providers)


def test_completions_are_text_completion_spans() -> None:
    rec = Recorder()

    async def test(client: JITClient) -> None:
        await client.completions.create(model=client.served_model, prompt="Once", max_tokens=4)
        [span] = rec.spans()
        assert span.name == f"text_completion {client.served_model}"
        assert span.attributes["gen_ai.operation.name"] == "text_completion"
        assert "jitagent.slo.kind" not in span.attributes and "jitagent.deadline" not in span.attributes
    run(test, **rec.providers)


def test_prompt_and_completion_text_are_off_by_default() -> None:
    rec = Recorder()

    async def test(client: JITClient) -> None:
        await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=5)
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=5,
                                                      stream=True)
        [_ async for _ in stream]
        for span in rec.spans():
            assert not {"gen_ai.input.messages", "gen_ai.output.messages"} & set(span.attributes)
            assert "Plan the next stage" not in json.dumps(dict(span.attributes))
    run(test, **rec.providers)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_prompt_and_completion_text_when_turned_on(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    options: dict[str, Any] = {}
    if how == "argument":
        options["trace_content"] = True
    else:
        monkeypatch.setenv(CONTENT_ENV, "1")

    async def test(client: JITClient) -> None:
        whole = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=8)
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=8,
                                                      stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        for span, text in zip(rec.spans(), (whole.choices[0].message.content, streamed)):
            [message] = json.loads(span.attributes["gen_ai.input.messages"])
            assert message == {"role": "user", "parts": [{"type": "text", "content": "Plan the next stage."}]}
            [answer] = json.loads(span.attributes["gen_ai.output.messages"])
            assert answer["role"] == "assistant" and answer["parts"][0]["content"] == text
    run(test, **options, **rec.providers)


def test_concurrent_calls_are_children_of_the_callers_span() -> None:
    rec = Recorder()
    tracer = rec.tracer_provider.get_tracer("test")

    async def test(client: JITClient) -> None:
        async def call(i: int) -> None:
            await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=5 + i)

        with tracer.start_as_current_span("outer") as outer:
            await asyncio.gather(*(call(i) for i in range(4)))
        await call(0)  # outside: a root span of its own
        calls = rec.spans("chat")
        assert len(calls) == 5 and len({s.context.span_id for s in calls}) == 5
        inside = [s for s in calls if s.parent is not None]
        assert len(inside) == 4
        assert all(s.parent.span_id == outer.get_span_context().span_id for s in inside)
        assert all(s.context.trace_id == outer.get_span_context().trace_id for s in inside)
    run(test, **rec.providers)


def test_sync_client_call_from_a_thread_keeps_its_parent() -> None:
    rec = Recorder()
    tracer = rec.tracer_provider.get_tracer("test")

    async def test(client: JITClient) -> None:
        def sync_call() -> int:
            with tracer.start_as_current_span("worker") as worker:
                client.sync.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=3)
                return worker.get_span_context().span_id

        worker_id = await asyncio.to_thread(sync_call)
        [span] = rec.spans("chat")
        assert span.parent is not None and span.parent.span_id == worker_id
    run(test, **rec.providers)


def test_a_refused_call_is_an_error_span() -> None:
    rec = Recorder()

    async def test(client: JITClient) -> None:
        impossible = {"kind": "deadline", "deadline_s": 1e-6, "on_infeasible": "reject"}
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=stream,
                                                     extra_body={"slo": impossible})
        spans = rec.spans("chat")
        assert len(spans) == 2
        for span in spans:
            assert span.status.status_code is StatusCode.ERROR
            assert span.attributes["error.type"] == "slo_infeasible"
            assert span.attributes["jitagent.slo.met"] is False
            assert "gen_ai.response.finish_reasons" not in span.attributes
        durations = rec.points("gen_ai.server.request.duration")
        assert [p.attributes["error.type"] for p in durations] == ["slo_infeasible"]
        assert not rec.points("gen_ai.server.time_to_first_token")
    run(test, policy="jit", **rec.providers)


def test_a_stream_closed_early_ends_its_span_without_a_finish_reason() -> None:
    rec = Recorder()

    async def test(client: JITClient) -> None:
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=400,
                                                      stream=True, extra_body={"slo": STREAM})
        await stream.__anext__()
        await stream.close()
        [span] = rec.spans("chat")
        assert "gen_ai.response.finish_reasons" not in span.attributes
        assert span.attributes["jitagent.slo.met"] is False
        assert span.attributes["gen_ai.usage.output_tokens"] < 400
    run(test, **rec.providers)


def test_preemptions_are_counted_and_are_events() -> None:
    rec = Recorder()
    engine = SimEngine(SimConfig(num_blocks=24, max_model_len=300), policy="fcfs", time_scale=0.001)

    async def test(client: JITClient) -> None:
        await asyncio.gather(*(client.completions.create(model=client.served_model, prompt=[1] * 40, max_tokens=150,
                                                         seed=0) for _ in range(6)))
        spans = rec.spans()
        counts = [s.attributes["jitagent.preemptions"] for s in spans]
        assert sum(counts) > 0
        for span, count in zip(spans, counts):
            assert len(_event_times(span).get("jitagent.preempted", [])) == count
        assert sum(counts) == engine.core.num_preemptions
    run(test, engine=engine, **rec.providers)


def test_metrics_by_policy_and_request_class() -> None:
    rec = Recorder()

    async def test(client: JITClient) -> None:
        replies = [await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=6,
                                                        extra_body={"slo": DEADLINE, "request_class": cls})
                   for cls in ("a", "a", "b")]
        for name in ("gen_ai.server.time_to_first_token", "gen_ai.server.time_per_output_token",
                     "gen_ai.server.request.duration"):
            points = {p.attributes["jitagent.request_class"]: p for p in rec.points(name)}
            assert {cls: p.count for cls, p in points.items()} == {"a": 2, "b": 1}, name
            for point in points.values():
                assert point.attributes["jitagent.policy"] == "fcfs"
                assert point.attributes["gen_ai.operation.name"] == "chat"
                assert point.attributes["gen_ai.request.model"] == client.served_model
        slack = {p.attributes["jitagent.request_class"]: p for p in rec.points("jitagent.slack")}
        assert slack["a"].count == 2 and 0 < slack["a"].min <= slack["a"].max <= 5.0
        assert all(p.attributes["jitagent.level"] == "call" for p in slack.values())
        goodput = {p.attributes["jitagent.request_class"]: p.value for p in rec.points("jitagent.goodput")}
        expected = {"a": 0, "b": 0}
        for reply, cls in zip(replies, ("a", "a", "b")):
            assert reply.usage is not None
            expected[cls] += reply.usage.total_tokens
        assert goodput == expected
    run(test, policy="fcfs", **rec.providers)


def test_nothing_is_recorded_or_computed_without_a_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    observed: list[bool] = []
    generate = SimBackend.generate

    def spy(self: SimBackend, request: Any, observe: bool = False) -> Any:
        observed.append(observe)
        return generate(self, request, observe)

    monkeypatch.setattr(SimBackend, "generate", spy)

    async def test(client: JITClient) -> None:
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # none configured
        telemetry = client._served.server.telemetry
        assert not telemetry.measuring
        assert not telemetry.tracer.start_span("probe").is_recording()
        await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=4,
                                             extra_body={"slo": DEADLINE})
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=4,
                                                      stream=True)
        [_ async for _ in stream]
        assert observed == [False, False]  # the engine was not even asked to keep its view
        assert not client.engine._logs
    run(test)
