"""``vllm serve`` with jitagent's scheduler, driven by the plain OpenAI client.

Starts vLLM's own OpenAI-compatible server on loopback with ``--scheduler-cls
jitagent_vllm.JITScheduler`` (tiny-random-llama: random weights, no tokenizer, so prompts are token
ids), then sends requests whose SLOs travel in ``extra_body={"vllm_xargs": {...}}``: a stream, a tool
call with a deadline, a pipeline call, one that asks to be refused when it cannot make it, and one
with a malformed SLO (a 400 from the server). Needs jitagent-vllm. Run:
``python examples/vllm_serve.py [--port 8011] [--policy jit]`` (about a minute on a CPU, mostly start-up),
or ``--base-url http://host:port/v1`` to use a server you started yourself with
``jitagent_vllm.serve.serve_command``'s flags.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext

import openai

from jitagent_vllm.serve import running_server

MODEL = "tiny-random-llama"
PROMPT = list(range(100, 400))   # token ids: the tiny model has no tokenizer


def slo(**fields: object) -> str:
    return json.dumps(fields)


def main(base_url: str | None, port: int, policy: str) -> None:
    server = nullcontext(base_url) if base_url else running_server(MODEL, policy=policy, port=port)
    with server as url:
        client = openai.OpenAI(base_url=url, api_key="unused")
        start = time.perf_counter()
        stream = client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=32, stream=True,
            extra_body={"vllm_xargs": {"slo": slo(kind="stream", ttft_s=1.0, tpot_s=0.1), "request_class": "chat"}})
        times = [time.perf_counter() - start for _ in stream]
        print(f"stream: {len(times)} chunks, first after {times[0] * 1e3:.0f} ms, last after {times[-1] * 1e3:.0f} ms")

        reply = client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=16,
            extra_body={"vllm_xargs": {"slo": slo(kind="deadline", deadline_s=2.0), "request_class": "tool"}})
        print(f"tool call: {reply.usage.completion_tokens} tokens, finish reason {reply.choices[0].finish_reason}")

        reply = client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=16,
            extra_body={"vllm_xargs": {"slo": slo(kind="pipeline", deadline_s=20.0), "run_id": "run-1",
                                       "stage": "search", "run_deadline_s": 19.5, "stage_deadline_s": 5.0,
                                       "run_elapsed_s": 0.5, "request_class": "research/search"}})
        print(f"pipeline call: {reply.usage.completion_tokens} tokens")

        try:  # vLLM's server reports a scheduler's refusal as a server error (JITClient says 429 slo_infeasible)
            client.with_options(max_retries=0).completions.create(
                model=MODEL, prompt=PROMPT * 20, max_tokens=64,
                extra_body={"vllm_xargs": {"slo": slo(kind="deadline", deadline_s=0.001, on_infeasible="reject")}})
        except openai.InternalServerError as err:
            print(f"refused as infeasible: HTTP {err.status_code}")
        else:
            print("served: the scheduler judged it feasible")

        try:
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8,
                                      extra_body={"vllm_xargs": {"slo": slo(kind="stream", ttft_s=-1, tpot_s=0.1)}})
        except openai.BadRequestError as err:
            print(f"bad SLO refused: HTTP {err.status_code}: {err.message[:120]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="a running server's base URL (default: start one)")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--policy", default="jit")
    args = parser.parse_args()
    main(args.base_url, args.port, args.policy)
