"""``vllm serve --scheduler-cls jitagent_vllm.JITScheduler``, driven by the plain OpenAI client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2
import openai
import pytest

pytest.importorskip("vllm")

from jitagent_vllm.serve import running_server, serve_command  # noqa: E402

MODEL = "tiny-random-llama"
PROMPT = list(range(100, 200))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_server(MODEL, policy="jit") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def xargs(**fields: object) -> dict:
    return {"vllm_xargs": fields}


def test_the_command_line_names_the_scheduler_and_binds_loopback() -> None:
    command = serve_command(MODEL, policy="edf", port=9000, api_key="secret")
    assert command[command.index("--scheduler-cls") + 1] == "jitagent_vllm.JITScheduler"
    assert json.loads(command[command.index("--additional-config") + 1]) == {"jitagent": {"policy": "edf"}}
    assert [command[i + 1] for i, flag in enumerate(command) if flag == "--middleware"] == [
        "jitagent_vllm.TokenIdValidator", "jitagent_vllm.middleware.SLORefusals"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--api-key") + 1] == "secret"
    with pytest.raises(ValueError, match="unknown policy"):
        serve_command(MODEL, policy="magic")


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
