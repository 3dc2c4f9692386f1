"""The Ray Serve app (two simulated replicas in real time behind the SLO router): calls over HTTP from
the plain OpenAI client and from ``JITClient(base_url=...)``, and through the deployment handle, are
routed and served, and what they carry (SLO, request class, pipeline run and deadlines) reaches the
scheduler on the replica that serves them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import pytest

pytest.importorskip("ray")

from jitagent.client import JITClient, slo_scope
from jitagent.scheduling.request import PipelineContext
from jitagent.scheduling.request_args import encode_request_args
from jitagent.slo import PipelineSLO

from ray_fixtures import APP, RayApp


def _http(app: RayApp) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=app.base_url, api_key="unused", max_retries=0, timeout=60)


async def _model(client: openai.AsyncOpenAI) -> str:
    return (await client.models.list()).data[0].id


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def _answer(client: openai.AsyncOpenAI, model: str, stream: bool, **kwargs: Any) -> tuple[str, str | None]:
    """(the response id, the replica that answered) of one call, its stream read to the end."""
    if stream:
        raw = await client.chat.completions.with_raw_response.create(model=model, stream=True, max_tokens=20, **kwargs)
        ids = {chunk.id async for chunk in raw.parse()}
        assert len(ids) == 1
        return ids.pop(), raw.headers.get("x-jitagent-replica")
    raw = await client.chat.completions.with_raw_response.create(model=model, max_tokens=20, **kwargs)
    return raw.parse().id, raw.headers.get("x-jitagent-replica")


def test_slos_reach_the_scheduler_of_each_replica(ray_app: RayApp) -> None:
    from jitagent_ray import connect

    async def main() -> None:
        http, handle = _http(ray_app), connect(APP, max_retries=0)
        jit = JITClient(base_url=ray_app.base_url, api_key="unused", max_retries=0, timeout=60)
        model = await _model(http)
        sent: dict[str, tuple[dict[str, Any], str, PipelineContext | None]] = {}   # id -> slo, class, pipeline

        async def over_http(i: int) -> None:   # the SLO in the body, as extra_body sends it
            slo = {"kind": "deadline", "deadline_s": 30.0 + i, "on_infeasible": "best_effort"}
            rid, _ = await _answer(http, model, i % 2 == 0, messages=_messages(f"http {i}"),
                                   extra_body={"slo": slo, "request_class": f"http-{i}"})
            sent[rid] = (slo, f"http-{i}", None)

        async def completion_over_http() -> None:   # the legacy Completions API takes the same fields
            slo = {"kind": "stream", "ttft_s": 5.0, "tpot_s": 0.5, "on_infeasible": "best_effort"}
            reply = await http.completions.create(model=model, prompt="once upon a time", max_tokens=10,
                                                  extra_body={"slo": slo, "request_class": "story"})
            sent[reply.id] = (slo, "story", None)

        async def pipeline_over_http(i: int) -> None:   # the wire format a remote JITClient sends
            slo = PipelineSLO(deadline_s=40.0)
            now = time.monotonic()
            pipeline = PipelineContext(f"run-{i}", now - 2.0, now + 38.0, "plan", now + 9.0)
            xargs = encode_request_args(slo, request_class="plan", pipeline=pipeline, now=now)
            rid, _ = await _answer(http, model, i % 2 == 0, messages=_messages(f"xargs {i}"),
                                   extra_body={"vllm_xargs": xargs})
            sent[rid] = (slo.model_dump(), "plan", pipeline)

        async def through_handle(i: int) -> None:   # no HTTP: the ambient slo_scope travels
            slo = PipelineSLO(deadline_s=50.0, on_infeasible="best_effort")
            now = time.monotonic()
            pipeline = PipelineContext(f"scope-{i}", now, now + 50.0, "write", now + 20.0)
            with slo_scope(slo, pipeline=pipeline, request_class="write"):
                rid, _ = await _answer(handle, model, i % 2 == 1, messages=_messages(f"handle {i}"))
            sent[rid] = (slo.model_dump(), "write", pipeline)

        async def from_jitclient(i: int) -> None:   # JITClient(base_url=...): the scope's pipeline as vllm_xargs
            slo = PipelineSLO(deadline_s=45.0)
            now = time.monotonic()
            pipeline = PipelineContext(f"jit-{i}", now - 1.0, now + 44.0, "search", now + 12.0)
            with slo_scope(slo, pipeline=pipeline, request_class="search"):
                rid, _ = await _answer(jit, model, i % 2 == 0, messages=_messages(f"jitclient {i}"))
            sent[rid] = (slo.model_dump(), "search", pipeline)

        await asyncio.gather(*[over_http(i) for i in range(4)], completion_over_http(),
                             *[pipeline_over_http(i) for i in range(2)],
                             *[through_handle(i) for i in range(3)], *[from_jitclient(i) for i in range(3)])
        for client in (http, handle, jit):
            await client.close()

        admitted = ray_app.admitted()
        for rid, (slo, request_class, pipeline) in sent.items():
            seen = admitted[rid]   # the replica's scheduler was told of this very request...
            assert seen["slo"] == slo and seen["request_class"] == request_class   # ...with its SLO and class
            if pipeline is None:
                assert seen["pipeline"] is None
            else:   # the same deadlines: sent relative to arrival, they are put back on the engine's clock
                assert (seen["pipeline"]["run_id"], seen["pipeline"]["stage"]) == (pipeline.run_id, pipeline.stage)
                for name in ("run_start", "run_deadline", "stage_deadline"):   # up to the HTTP request's travel
                    assert seen["pipeline"][name] == pytest.approx(getattr(pipeline, name), abs=0.5), name
        assert len({admitted[rid]["pid"] for rid in sent}) == 2   # both replicas served

    asyncio.run(main())


def test_a_pipeline_runs_calls_stay_on_one_replica_while_feasible(ray_app: RayApp) -> None:
    """A run's fan-out of concurrent calls stays on the replica of its first call while the deadlines
    allow it, though the other replica is idle (where a router without runs would send half of them)."""
    async def main() -> None:
        http = _http(ray_app)
        model = await _model(http)
        slo = PipelineSLO(deadline_s=120.0)
        start = time.monotonic()

        async def stage(name: str, index: int) -> str | None:
            now = time.monotonic()
            pipeline = PipelineContext("together", start, start + 120.0, name, now + 60.0)
            raw = await http.chat.completions.with_raw_response.create(
                model=model, messages=_messages(f"{name} {index}"), max_tokens=100, seed=index, extra_body={
                    "vllm_xargs": encode_request_args(slo, request_class=name, pipeline=pipeline, now=now)})
            return raw.headers.get("x-jitagent-replica")

        first = await stage("plan", 0)
        fan_out = await asyncio.gather(*[stage("map", i) for i in range(6)])
        last = await stage("reduce", 0)
        await http.close()
        assert first is not None and set(fan_out) == {first} and last == first

    asyncio.run(main())


def test_no_replica_can_meet_the_slo_the_router_refuses(ray_app: RayApp) -> None:
    async def main() -> None:
        http = _http(ray_app)
        model = await _model(http)
        before = len(ray_app.admitted())
        with pytest.raises(openai.RateLimitError) as refused:
            await http.chat.completions.create(model=model, messages=_messages("now"), max_tokens=2000, extra_body={
                "slo": {"kind": "deadline", "deadline_s": 0.01, "on_infeasible": "reject"}})
        await http.close()
        assert refused.value.code == "slo_infeasible" and "no replica can meet" in refused.value.message
        assert refused.value.response.headers["x-should-retry"] == "false"
        assert len(ray_app.admitted()) == before   # refused by the router: no scheduler was told of it

    asyncio.run(main())


@pytest.mark.parametrize(("extra", "param", "says"), [
    ({"pipeline": {"run_id": "r", "run_start": 0, "run_deadline": 9, "stage": "s", "stage_deadline": 9}}, "pipeline",
     "caller's clock"),
    ({"vllm_xargs": {"slo": '{"kind": "deadline", "deadline_s": -1}'}}, "vllm_xargs", "deadline_s"),
    ({"slo": {"kind": "deadline", "deadline_s": 5}, "vllm_xargs": {"slo": '{"kind": "deadline", "deadline_s": 5}'}},
     "slo", "given twice"),
    ({"vllm_xargs": {"run_id": "r", "stage": "s", "run_deadline_s": 5}}, "vllm_xargs", "pipeline SLO"),
    ({"slo": {"kind": "deadline", "deadline_s": -1}}, "slo", "deadline_s"),
    ({"request_class": ""}, "request_class", "request_class"),
])
def test_bad_scheduling_fields_are_a_400_naming_them(ray_app: RayApp, extra: dict[str, Any], param: str,
                                                     says: str) -> None:
    async def main() -> None:
        http = _http(ray_app)
        with pytest.raises(openai.BadRequestError) as bad:
            await http.chat.completions.create(model=await _model(http), messages=_messages("x"), max_tokens=5,
                                               extra_body=extra)
        await http.close()
        assert bad.value.param == param and says in bad.value.message

    asyncio.run(main())
