"""The latency JITClient adds, against ``vllm serve`` plus ``openai.AsyncOpenAI`` over loopback.

Three ways to stream the same requests from the same tiny model on this CPU, each with the JIT
scheduler inside vLLM:

* **engine**: ``VLLMEngine.generate_ids``, no client at all (the baseline);
* **jitclient**: ``JITClient(engine=...)``: the OpenAI client and jitagent's in-process transport to
  vLLM's own OpenAI server (its ASGI app, called in-process), on the same event loop as the engine
  (made in the application's loop, it binds to it);
* **serve**: vLLM's OpenAI server (``vllm serve --scheduler-cls jitagent_vllm.JITScheduler``) in its own
  process, the plain ``openai.AsyncOpenAI`` over loopback HTTP.

Both servers are the same code with the same settings (the model's tokenizer, detokenizing every
token); the difference is the process boundary, the HTTP connection and the event loop shared with
the application.

Requests run one at a time (unloaded, so that only the path differs), the three paths interleaved
round by round so that drift on a busy machine spreads evenly. For each request: the time to the
first token and the mean time at which its tokens arrive, from the moment the call is made. A path's
*added* latency is its median minus the engine's: for the first token, and per token (the mean
arrival offset: a constant delay on every token). Prints the table and writes ``client_vs_serve.json``.

    python benchmarks/client_vs_serve.py --requests 30 --prompt 256 --tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import openai

from jitagent import JITClient
from jitagent_vllm import VLLMEngine, VLLMEngineConfig
from jitagent_vllm.serve import running_server

MODEL = "tiny-random-llama"


async def engine_direct(engine: VLLMEngine, prompt: list[int], tokens: int) -> list[float]:
    start = time.perf_counter()
    times: list[float] = []
    async for delta in engine.generate_ids(prompt, tokens, ignore_eos=True):
        times += [time.perf_counter() - start] * len(delta.token_ids)
    return times


async def openai_stream(client: openai.AsyncOpenAI, prompt: list[int], tokens: int, **extra: object) -> list[float]:
    start = time.perf_counter()
    times = []
    stream = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=tokens, stream=True,
                                             extra_body=extra or None)
    async for chunk in stream:
        if chunk.choices:  # one per engine output
            times.append(time.perf_counter() - start)
    return times


def summary(runs: list[list[float]]) -> dict[str, float]:
    return {"ttft_s": statistics.median(r[0] for r in runs),
            "mean_token_s": statistics.median(statistics.fmean(r) for r in runs),
            "tokens": statistics.median(len(r) for r in runs)}


async def measure(server_url: str, args: argparse.Namespace) -> dict[str, list[list[float]]]:
    prompt = list(range(100, 100 + args.prompt))
    engine = VLLMEngine(VLLMEngineConfig(model=MODEL))   # made on this loop: bound to it, as in an async app
    jit = JITClient(engine=engine)
    http = openai.AsyncOpenAI(base_url=server_url, api_key="unused")
    paths = {
        "engine": lambda: engine_direct(engine, prompt, args.tokens),
        "jitclient": lambda: openai_stream(jit, prompt, args.tokens, ignore_eos=True),
        "serve": lambda: openai_stream(http, prompt, args.tokens, ignore_eos=True),
    }
    runs: dict[str, list[list[float]]] = {name: [] for name in paths}
    try:
        for i in range(args.requests + args.warmup):
            for name, call in paths.items():
                times = await call()
                if i >= args.warmup:
                    runs[name].append(times)
    finally:
        await jit.close()
        await http.close()
        await engine.aclose()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens")
    parser.add_argument("--tokens", type=int, default=64, help="output tokens")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()

    with running_server(MODEL) as url:   # with the model's tokenizer, as JITClient's in-process server
        runs = asyncio.run(measure(url, args))
    figures = {name: summary(r) for name, r in runs.items()}
    base = figures["engine"]
    for name in ("jitclient", "serve"):
        figures[name]["added_ttft_s"] = figures[name]["ttft_s"] - base["ttft_s"]
        figures[name]["added_per_token_s"] = figures[name]["mean_token_s"] - base["mean_token_s"]
    ratio = {key: figures["jitclient"][key] / figures["serve"][key] for key in ("added_ttft_s", "added_per_token_s")}

    print(f"{args.requests} requests per path, {args.prompt} prompt tokens, {args.tokens} output tokens; medians\n")
    print(f"{'path':10} {'TTFT ms':>9} {'added ms':>9} {'token ms':>9} {'added ms':>9}")
    for name, f in figures.items():
        print(f"{name:10} {f['ttft_s'] * 1e3:>9.2f} {f.get('added_ttft_s', 0) * 1e3:>9.2f} "
              f"{f['mean_token_s'] * 1e3:>9.2f} {f.get('added_per_token_s', 0) * 1e3:>9.2f}")
    print(f"\nJITClient adds {ratio['added_ttft_s']:.2f}x the TTFT latency and {ratio['added_per_token_s']:.2f}x the "
          f"per-token latency that the HTTP server path adds (target: at most 0.5x)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "client_vs_serve.json").write_text(json.dumps(
        {"config": {k: v for k, v in vars(args).items() if k != "out"}, "figures": figures,
         "jitclient_over_serve": ratio}, indent=1) + "\n")


if __name__ == "__main__":
    main()
