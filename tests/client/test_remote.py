"""What a remote client's requests carry (jitagent.client.remote), read where they leave: the
transport's rewriting of bodies and headers, with no server (tests/integrations/vllm/test_vllm_serve.py
runs them against a real ``vllm serve``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry import trace

from jitagent.client import JITClient, slo_scope
from jitagent.client.context import current_scope
from jitagent.client.remote import RemoteTransport, SyncRemoteTransport, carry_scheduling
from jitagent.scheduling.request import PipelineContext
from jitagent.scheduling.request_args import parse_request_args
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO
from otel_recorder import Recorder

URL = "http://server.test/v1"
STREAM = {"kind": "stream", "ttft_s": 0.5, "tpot_s": 0.0401}
COMPLETION = {"id": "c", "object": "text_completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "text": "ok", "finish_reason": "stop", "logprobs": None}]}


class Server:
    """Keeps what arrives (it is where the network would begin) and answers a completion."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return httpx2.Response(200, json=COMPLETION)

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)

    def xargs(self, index: int = -1) -> dict[str, Any]:
        return self.body(index)["vllm_xargs"]


def sync_client(server: Server, **defaults: Any) -> openai.OpenAI:
    transport = SyncRemoteTransport(httpx2.MockTransport(server), **defaults)
    return openai.OpenAI(base_url=URL, api_key="k", max_retries=2, http_client=httpx2.Client(transport=transport))


def request(body: dict[str, Any], path: str = "/v1/completions") -> httpx2.Request:
    return httpx2.Request("POST", f"http://server.test{path}", json=body)


def test_the_body_slo_and_class_travel_as_vllm_xargs_and_leave_the_body() -> None:
    server = Server()
    sync_client(server).completions.create(model="m", prompt="a", extra_body={
        "slo": {"kind": "deadline", "deadline_s": 2}, "request_class": "tool", "vllm_xargs": {"mine": 1}})
    body = server.body()
    assert not {"slo", "request_class", "pipeline"} & body.keys()
    args = parse_request_args(body["vllm_xargs"])   # what the scheduler reads
    assert args.slo == DeadlineSLO(deadline_s=2) and args.request_class == "tool"
    assert body["vllm_xargs"]["mine"] == 1
    assert "x-llm-d-slo-ttft-ms" not in server.requests[0].headers   # a deadline has no TTFT or TPOT


def test_the_scope_carries_slo_class_and_pipeline_deadlines_relative_to_sending() -> None:
    pipeline = PipelineContext("run-1", run_start=90.0, run_deadline=130.0, stage="plan", stage_deadline=110.0)
    call = request({"model": "m", "messages": []}, "/v1/chat/completions")
    with slo_scope({"kind": "pipeline", "deadline_s": 40}, pipeline=pipeline, request_class="research/plan"):
        sent = carry_scheduling(call, call.content, current_scope(), now=100.0)
    assert isinstance(sent, httpx2.Request)
    args = parse_request_args(json.loads(sent.content)["vllm_xargs"])
    assert (args.run_id, args.stage, args.request_class) == ("run-1", "plan", "research/plan")
    assert (args.stage_deadline_s, args.run_deadline_s, args.run_elapsed_s) == (10.0, 30.0, 10.0)
    assert args.slo == PipelineSLO(deadline_s=40)
    assert sent.headers["content-length"] == str(len(sent.content))


def test_a_stream_slo_sets_llm_d_headers_in_milliseconds_and_the_callers_own_win() -> None:
    server = Server()
    client = sync_client(server)
    with slo_scope(STREAM):
        client.completions.create(model="m", prompt="a")
        client.completions.create(model="m", prompt="a", extra_headers={"x-llm-d-slo-ttft-ms": "100"})
    assert server.requests[0].headers["x-llm-d-slo-ttft-ms"] == "500"
    assert server.requests[0].headers["x-llm-d-slo-tpot-ms"] == "41"   # rounded up, never down to 0
    assert server.requests[1].headers["x-llm-d-slo-ttft-ms"] == "100"
    assert parse_request_args(server.xargs(1)).slo == StreamSLO(**STREAM)


def test_body_over_scope_over_client_default() -> None:
    server = Server()
    client = sync_client(server, slo={"kind": "deadline", "deadline_s": 9})
    client.completions.create(model="m", prompt="a")
    with slo_scope(STREAM):
        client.completions.create(model="m", prompt="a")
        client.completions.create(model="m", prompt="a", extra_body={"slo": {"kind": "deadline", "deadline_s": 1}})
    assert [parse_request_args(server.xargs(i)).slo for i in range(3)] == [
        DeadlineSLO(deadline_s=9), StreamSLO(**STREAM), DeadlineSLO(deadline_s=1)]


def test_a_bad_slo_is_a_400_here_sent_nowhere_and_not_retried() -> None:
    server = Server()
    with pytest.raises(openai.BadRequestError, match="ttft_s") as bad:
        sync_client(server).completions.create(model="m", prompt="a", extra_body={"slo": {"kind": "stream"}})
    assert bad.value.code == "invalid_slo" and server.requests == []
    with pytest.raises(openai.BadRequestError, match="pipeline"):
        sync_client(server).completions.create(model="m", prompt="a", extra_body={"pipeline": {"run_id": "r"}})
    with pytest.raises(ValueError, match="ttft_s"):   # a client default is checked when the client is made
        RemoteTransport(slo={"kind": "stream", "ttft_s": -1, "tpot_s": 0.1})


def test_what_carries_nothing_passes_unchanged() -> None:
    server = Server()
    client = sync_client(server)
    client.models.with_raw_response.list()
    client.completions.create(model="m", prompt="a", extra_body={"vllm_xargs": {"mine": 1}})
    assert server.requests[0].method == "GET"
    assert server.body() == {"model": "m", "prompt": "a", "vllm_xargs": {"mine": 1}}
    unreadable = request({})
    assert carry_scheduling(unreadable, b"[1, 2", None, slo=DeadlineSLO(deadline_s=1)) is unreadable


def test_the_callers_span_travels_as_traceparent() -> None:
    server = Server()
    tracer = Recorder().tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("stage") as span, slo_scope(STREAM):
        sync_client(server).completions.create(model="m", prompt="a")
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert trace_id in server.requests[0].headers["traceparent"]
    assert trace.get_current_span() is not span


def test_the_async_transport_reads_the_scope_of_the_calling_task() -> None:
    server = Server()

    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=URL, api_key="k", http_client=httpx2.AsyncClient(
            transport=RemoteTransport(httpx2.MockTransport(server))))
        with slo_scope(STREAM, request_class="chat"):
            await client.completions.create(model="m", prompt="a")
        await client.completions.create(model="m", prompt="a")
        await client.close()

    asyncio.run(main())
    assert parse_request_args(server.xargs(0)).request_class == "chat"
    assert "vllm_xargs" not in server.body(1)


def test_jitclient_with_base_url_sends_over_http_and_refuses_an_engine_too() -> None:
    client = JITClient(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0)
    assert client.engine is None and client.served_model == "m"
    with pytest.raises(openai.APIConnectionError):   # nothing listens on port 9 (discard): it went to the network
        asyncio.run(client.completions.create(model="m", prompt="a"))
    with pytest.raises(openai.APIConnectionError):   # so did its sync face (LangChain's invoke), and a copy's
        client.with_options(timeout=5).sync.completions.create(model="m", prompt="a")
    assert client.chat_model().model_name == "m"
    with pytest.raises(ValueError, match="not both"):
        JITClient(base_url="http://127.0.0.1:9/v1", engine="sim")
