"""``vllm serve --scheduler-cls jitagent_vllm.JITScheduler``, driven by the plain OpenAI client, by
``JITClient(base_url=...)``, by ``jit_slo`` running a LangGraph graph and by ``jitagent bench --base-url``.

One server for the module (starting one takes tens of seconds). It runs :class:`RecordingScheduler`,
``JITScheduler`` noting what it read from each request, so that the tests see what reached the
scheduler in the server's engine process.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import openai
import pytest

pytest.importorskip("vllm")

from jitagent.cli import main  # noqa: E402
from jitagent.client import JITClient, slo_scope  # noqa: E402
from jitagent.scheduling.request import PipelineContext, RequestState  # noqa: E402
from jitagent_vllm.scheduler import JITScheduler  # noqa: E402
from jitagent_vllm.serve import running_server, serve_command  # noqa: E402

MODEL = "tiny-random-llama"
PROMPT = list(range(100, 200))
LOG_ENV = "JITAGENT_TEST_SCHEDULER_LOG"
REFUSE = {"kind": "deadline", "deadline_s": 0.001, "on_infeasible": "reject"}


class RecordingScheduler(JITScheduler):
    """``JITScheduler`` that also appends what it read from each request to the file named by
    ``$JITAGENT_TEST_SCHEDULER_LOG`` (it runs in the server's engine process)."""

    def add_request(self, request: Any) -> None:
        super().add_request(request)
        state = self.states.get(request.request_id)
        if state is not None:
            with open(os.environ[LOG_ENV], "a") as log:
                log.write(json.dumps(_seen(state)) + "\n")


def _seen(state: RequestState) -> dict[str, Any]:
    """A request's scheduling data as the scheduler holds it; pipeline deadlines relative to its arrival."""
    pipeline = state.pipeline
    return {"slo": state.slo.model_dump(mode="json") if state.slo is not None else None,
            "request_class": state.request_class, "max_tokens": state.max_tokens,
            "run_id": pipeline.run_id if pipeline else None, "stage": pipeline.stage if pipeline else None,
            "stage_deadline_in": pipeline.stage_deadline - state.arrival if pipeline else None,
            "run_deadline_in": pipeline.run_deadline - state.arrival if pipeline else None}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The server's base URL, and the file its scheduler notes requests in."""
    log = tmp_path_factory.mktemp("scheduler") / "requests.jsonl"
    log.touch()
    with ExitStack() as stack:
        with pytest.MonkeyPatch.context() as env:   # the server's processes inherit these
            env.setenv(LOG_ENV, str(log))
            env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                   os.environ.get("PYTHONPATH")])))
            # Token ids only, as a token-in, token-out deployment serves: what TokenIdValidator guards.
            url = stack.enter_context(running_server(MODEL, policy="jit", skip_tokenizer=True,
                                                     scheduler_cls=f"{__name__}.RecordingScheduler"))
        yield url, log


@pytest.fixture(scope="module")
def url(server: tuple[str, Path]) -> str:
    return server[0]


def seen(server: tuple[str, Path], **match: Any) -> list[dict[str, Any]]:
    """What the scheduler noted of the requests whose fields have these values."""
    lines = server[1].read_text().splitlines()
    return [r for r in map(json.loads, lines) if all(r[k] == v for k, v in match.items())]


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def xargs(**fields: object) -> dict:
    return {"vllm_xargs": fields}


def test_the_command_line_names_the_scheduler_and_binds_loopback() -> None:
    command = serve_command(MODEL, policy="edf", port=9000, api_key="secret")
    assert command[command.index("--scheduler-cls") + 1] == "jitagent_vllm.JITScheduler"
    assert serve_command(MODEL, scheduler_cls="my.Sub").count("my.Sub") == 1
    assert json.loads(command[command.index("--additional-config") + 1]) == {"jitagent": {"policy": "edf"}}
    assert [command[i + 1] for i, flag in enumerate(command) if flag == "--middleware"] == [
        "jitagent_vllm.TokenIdValidator", "jitagent_vllm.middleware.SLORefusals"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--api-key") + 1] == "secret"
    with pytest.raises(ValueError, match="unknown policy"):
        serve_command(MODEL, policy="magic")


def test_the_tiny_model_is_served_with_its_tokenizer_and_tool_parser_unless_told_token_ids_only() -> None:
    with_tokenizer = serve_command(MODEL)
    assert "--skip-tokenizer-init" not in with_tokenizer
    assert with_tokenizer[with_tokenizer.index("--tool-call-parser") + 1] == "hermes"
    token_ids = serve_command(MODEL, skip_tokenizer=True)
    assert "--skip-tokenizer-init" in token_ids and "--tool-call-parser" not in token_ids


def test_requests_with_slos_in_vllm_xargs_are_served(client: openai.OpenAI) -> None:
    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, stream=True, extra_body=xargs(
        slo=json.dumps({"kind": "stream", "ttft_s": 2.0, "tpot_s": 0.5}), request_class="chat"))
    assert len(list(stream)) >= 2
    reply = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, extra_body=xargs(
        slo=json.dumps({"kind": "pipeline", "deadline_s": 30}), run_id="r1", stage="plan", run_deadline_s=29.0,
        stage_deadline_s=10.0, request_class="research/plan"))
    assert reply.usage.prompt_tokens == len(PROMPT) and 1 <= reply.usage.completion_tokens <= 8


def test_bad_slo_data_is_a_400_and_the_server_serves_on(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="ttft_s"):
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4,
                                  extra_body=xargs(slo=json.dumps({"kind": "stream", "ttft_s": -1, "tpot_s": 0.1})))
    with pytest.raises(openai.BadRequestError, match="run_deadline_s"):
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, extra_body=xargs(run_id="r", stage="s"))
    assert client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4).usage.completion_tokens >= 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_refusal_is_a_429_slo_infeasible_that_the_openai_client_does_not_retry(url: str, stream: bool) -> None:
    """vLLM's front end reports a request its scheduler ended with an error as a 500 (streamed: an
    error event after a 200), which the OpenAI client retries; the SLORefusals middleware makes a
    refusal a 429 that says not to retry."""
    sent: list[httpx2.Request] = []
    retrying = openai.OpenAI(base_url=url, api_key="unused", max_retries=2,
                             http_client=httpx2.Client(event_hooks={"request": [sent.append]}))
    with pytest.raises(openai.RateLimitError) as refused:
        reply = retrying.completions.create(model=MODEL, prompt=PROMPT * 40, max_tokens=64, stream=stream,
                                            extra_body=xargs(slo=json.dumps(
                                                {"kind": "deadline", "deadline_s": 0.001, "on_infeasible": "reject"})))
        list(reply) if stream else None
    assert refused.value.code == "slo_infeasible" and refused.value.type == "slo_infeasible"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert len(sent) == 1
    assert len(list(retrying.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, stream=True))) >= 2


@pytest.mark.parametrize("prompt, bad", [([[32000]], 32000), ([5, 6, 2**40], 2**40), ([[5, 6], [7, 32001]], 32001)])
@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_id_outside_the_vocabulary_is_a_400_and_the_server_serves_on(client: openai.OpenAI, prompt: list,
                                                                               bad: int, stream: bool) -> None:
    """Without a tokenizer vLLM does not check prompt ids, and one past the vocabulary used to kill
    the engine, and with it the server."""
    with pytest.raises(openai.BadRequestError, match=f"token id {bad} .*vocabulary size 32000"):
        client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, stream=stream)
    assert client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4).usage.completion_tokens >= 1
    assert client.completions.create(model=MODEL, prompt=[PROMPT, PROMPT[:5]], max_tokens=2).usage.prompt_tokens == 105


async def test_jitclient_calls_carry_their_slo_class_and_stage_deadline_to_the_remote_scheduler(
        server: tuple[str, Path]) -> None:
    client = JITClient(base_url=server[0], max_retries=0)
    assert client.served_model == MODEL   # asked of the server
    now = time.monotonic()
    pipeline = PipelineContext("run-a", run_start=now - 1, run_deadline=now + 20, stage="draft", stage_deadline=now + 5)
    with slo_scope({"kind": "pipeline", "deadline_s": 21}, pipeline=pipeline, request_class="remote/draft"):
        sent = time.monotonic()
        reply = await client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4)
        answered = time.monotonic()
    stream = await client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, stream=True, extra_body={
        "slo": {"kind": "stream", "ttft_s": 5, "tpot_s": 1}, "request_class": "remote/chat"})
    chunks = [chunk async for chunk in stream]
    with slo_scope({"kind": "deadline", "deadline_s": 30}, request_class="remote/sync"):
        client.sync.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)   # LangChain's sync path
    await client.close()
    assert reply.usage.completion_tokens >= 1 and len(chunks) >= 2
    [planned] = seen(server, run_id="run-a")
    assert (planned["stage"], planned["request_class"]) == ("draft", "remote/draft")
    assert planned["slo"]["kind"] == "pipeline" and planned["slo"]["deadline_s"] == 21
    # Sent relative to the moment the request left: 5 s to the stage's deadline then, 20 to the run's.
    assert pipeline.stage_deadline - answered <= planned["stage_deadline_in"] <= pipeline.stage_deadline - sent
    assert pipeline.run_deadline - answered <= planned["run_deadline_in"] <= pipeline.run_deadline - sent
    [streamed] = seen(server, request_class="remote/chat")
    assert streamed["slo"] == {"kind": "stream", "ttft_s": 5.0, "tpot_s": 1.0, "on_infeasible": "best_effort"}
    [synced] = seen(server, request_class="remote/sync")
    assert synced["slo"]["deadline_s"] == 30


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refusal_reaches_jitclient_as_a_429_it_does_not_retry(server: tuple[str, Path], stream: bool) -> None:
    client = JITClient(base_url=server[0], model=MODEL, max_retries=2)
    label = f"refused/{stream}"
    with slo_scope(REFUSE, request_class=label), pytest.raises(openai.RateLimitError) as refused:
        await client.completions.create(model=MODEL, prompt=PROMPT * 40, max_tokens=64, stream=stream)
    await client.close()
    assert refused.value.code == "slo_infeasible"
    assert len(seen(server, request_class=label)) == 1   # the scheduler met it once: no retry


def test_jit_slo_stage_deadlines_reach_the_remote_scheduler(server: tuple[str, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("langgraph")
    from jitagent_langgraph import jit_slo

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "langgraph"))
    from graphs import fan_out_builder

    async def run() -> Any:
        client = JITClient(base_url=server[0], model=MODEL, max_retries=0)
        graph = jit_slo(fan_out_builder(_Completions(client), width=2, max_tokens=4), deadline_s=60)
        await graph.ainvoke({"topic": "t"})
        await client.close()
        return graph.last_run

    report = asyncio.run(run())
    assert report.met
    calls = seen(server, run_id=report.run_id)
    assert sorted(call["stage"] for call in calls) == ["final", "plan", "work", "work"]
    for call in calls:   # each call's stage deadline, as jit_slo planned it, from when the call was sent
        assert call["slo"]["kind"] == "pipeline" and call["slo"]["deadline_s"] == 60
        assert 0 < call["stage_deadline_in"] <= call["run_deadline_in"] <= 60
        assert any(s.stage_deadline - s.finish <= call["stage_deadline_in"] <= s.stage_deadline - s.start
                   for s in report.stages if s.node == call["stage"])


class _Completions:
    """The graph's model: ``ainvoke`` as a completion of token ids (the tiny model has no chat template)."""

    def __init__(self, client: JITClient) -> None:
        self.client = client

    async def ainvoke(self, text: str, max_tokens: int) -> Any:
        reply = await self.client.completions.create(model=MODEL, prompt=[100 + len(text)] * 20, max_tokens=max_tokens)
        return type("Reply", (), {"content": reply.choices[0].text})


def test_bench_base_url_benchmarks_the_running_server(server: tuple[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    assert main(["bench", "--base-url", server[0], "--workload", "tool", "--policies", "jit", "--rate", "2",
                 "--duration", "4", "--slo-scale", "20", "--records", "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    [run] = results["runs"]
    assert run["policy"] == "jit" and results["engine"] == {
        "kind": "remote", "base_url": server[0], "model": MODEL, "slo_scale": {"factor": 20.0}}
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert records and any(r["token_times"] for r in records)
    assert (out / "goodput.png").exists() and "jit" in capsys.readouterr().out
    # Each request reached the scheduler with its deadline SLO and its class; told only max_tokens.
    tools = seen(server, request_class="tool")
    assert len(tools) == len(records) and all(t["slo"]["kind"] == "deadline" for t in tools)


class _App:
    """An ASGI app shaped as vLLM's serving layer is (for the middleware alone, without a server):
    it reads its engine client's outputs and answers 500 for an ``error`` finish, or (``stream``,
    after ``keep_alive`` comments) streams an event per output (200), vLLM's error event for an
    ``error`` finish."""

    def __init__(self, outputs: list[Any], stream: bool, keep_alive: int = 0) -> None:
        self.state = SimpleNamespace(engine_client=SimpleNamespace(generate=self.generate))
        self.outputs, self.stream, self.keep_alive = outputs, stream, keep_alive

    async def generate(self) -> Any:
        for output in self.outputs:
            yield output

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        outputs = scope["app"].state.engine_client.generate()
        if not self.stream:
            failed = any([o.outputs[0].finish_reason == "error" async for o in outputs])
            await send({"type": "http.response.start", "status": 500 if failed else 200, "headers": []})
            return await send({"type": "http.response.body", "body": b'{"error": {"code": 500}}' if failed else b"{}"})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(self.keep_alive):
            await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
        async for output in outputs:
            failed = output.outputs[0].finish_reason == "error"
            event = b'data: {"error": {"code": 500}}\n\n' if failed else b'data: {"t": 1}\n\n'
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _output(finish_reason: str | None = None, stop_reason: str | None = None) -> Any:
    return SimpleNamespace(finished=finish_reason is not None,
                           outputs=[SimpleNamespace(finish_reason=finish_reason, stop_reason=stop_reason)])


REFUSED = _output("error", "slo_infeasible")


@pytest.mark.parametrize("outputs, stream, status, body", [
    ([REFUSED], False, 429, '"code": "slo_infeasible"'),                    # answered whole
    ([REFUSED], True, 429, '"code": "slo_infeasible"'),                     # streamed, before its first token
    ([_output(), REFUSED], True, 200, '"code": "slo_infeasible"'),          # after it: the error event says so
    ([_output("error", "engine failed")], False, 500, '"code": 500'),       # other errors pass unchanged
    ([_output(), _output("error", None)], True, 200, '"code": 500'),
    ([_output(), _output("stop")], True, 200, '"t": 1'),
])
def test_the_refusal_middleware_alone(outputs: list[Any], stream: bool, status: int, body: str) -> None:
    from jitagent_vllm.middleware import SLORefusals

    app = _App(outputs, stream, keep_alive=2)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    asyncio.run(SLORefusals(app)({"type": "http", "method": "POST", "path": "/v1/completions", "app": app},
                                 receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == status
    assert (dict(sent[0]["headers"]).get(b"x-should-retry") == b"false") == (status == 429)
    assert body in b"".join(m.get("body", b"") for m in sent[1:]).decode()
