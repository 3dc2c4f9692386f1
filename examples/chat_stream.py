"""Stream a chat answer from the in-process simulated engine, with a streaming SLO.

The same code runs against OpenAI by swapping ``JITClient(...)`` for ``openai.AsyncOpenAI()``
(and dropping ``extra_body``). Run: ``python examples/chat_stream.py [--time-scale 1.0] [--engine vllm]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import openai

from jitagent.client import JITClient, slo_scope


async def main(time_scale: float, engine: str) -> None:
    client = JITClient(engine=engine, time_scale=time_scale, slo={"kind": "stream", "ttft_s": 1.0, "tpot_s": 0.05})
    try:
        start = time.perf_counter()
        stream = await client.chat.completions.create(
            model=client.served_model,
            messages=[{"role": "user", "content": "Explain just-in-time scheduling in one paragraph."}],
            max_tokens=60, stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
            elif chunk.usage is not None:
                print(f"\n[{chunk.usage.completion_tokens} tokens in {time.perf_counter() - start:.2f} s]")

        # A tool call that must answer within 2 s, given for everything inside the block.
        with slo_scope({"kind": "deadline", "deadline_s": 2.0}):
            reply = await client.chat.completions.create(
                model=client.served_model, messages=[{"role": "user", "content": "Name one scheduler."}], max_tokens=8)
        print("tool answer:", reply.choices[0].message.content)

        # A request that cannot meet its SLO and asked to be refused rather than served late.
        try:
            await client.chat.completions.create(
                model=client.served_model, messages=[{"role": "user", "content": "Now!"}], max_tokens=100,
                extra_body={"slo": {"kind": "deadline", "deadline_s": 0.001, "on_infeasible": "reject"}})
        except openai.RateLimitError as err:
            print("refused:", err.message)
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-scale", type=float, default=1.0, help="wall seconds per modelled second (sim)")
    parser.add_argument("--engine", choices=["sim", "vllm"], default="sim",
                        help="the simulated engine, or a real vLLM engine with tiny-random-llama (needs jitagent-vllm)")
    args = parser.parse_args()
    asyncio.run(main(args.time_scale, args.engine))
