"""A ReAct agent (LangGraph's prebuilt ``create_react_agent``) with an end-to-end SLO.

The agent alternates ``agent`` (the model thinks, through ``ChatOpenAI`` wired to a ``JITClient``)
and ``tools`` (a fake search tool) until it answers; ``jit_slo`` gives the whole run one deadline
and each model call its stage's share of it.

The simulated engine generates text, not tool calls, so :class:`ScriptedToolCalls` wraps the
``ChatOpenAI`` model: every turn is a real call to the engine (scheduled with the run's pipeline
context, the conversation sent as plain text), and a script turns the first ``searches`` replies into calls of the search tool. Against
a real tool-calling model, pass ``client.chat_model()`` straight to ``create_react_agent``.
Run: ``python examples/react_agent.py [--deadline 3] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from jitagent_langgraph import jit_slo
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool

from jitagent.client import JITClient

with warnings.catch_warnings():  # moved to langchain.agents in LangGraph 1.x; same graph
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent


@tool
async def search(query: str) -> str:
    """Search the web for ``query``."""
    await asyncio.sleep(0.02)
    return f"3 results about {query}"


class ScriptedToolCalls(BaseChatModel):
    """A chat model whose turns are real ``ChatOpenAI`` calls and whose tool calls are scripted."""

    llm: BaseChatModel
    searches: int = 2

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-calls"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedToolCalls:
        return self  # the script calls the search tool by name

    def _turn(self, messages: list[BaseMessage], reply: BaseMessage) -> ChatResult:
        done = sum(isinstance(m, ToolMessage) for m in messages)
        if done < self.searches:
            message = AIMessage(content=reply.content, usage_metadata=reply.usage_metadata, tool_calls=[{
                "name": "search", "args": {"query": f"{messages[0].content} part {done + 1}"},
                "id": f"call_{uuid.uuid4().hex[:8]}"}])
        else:
            message = AIMessage(content=reply.content, usage_metadata=reply.usage_metadata)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return self._turn(messages, self.llm.invoke(_transcript(messages), _UNTRACED,
                                                   max_tokens=self._max_tokens(messages)))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return self._turn(messages, await self.llm.ainvoke(_transcript(messages), _UNTRACED,
                                                         max_tokens=self._max_tokens(messages)))

    def _max_tokens(self, messages: list[BaseMessage]) -> int:
        # short thoughts before each tool call, a longer final answer
        return 40 if sum(isinstance(m, ToolMessage) for m in messages) < self.searches else 160


# The inner call is this model's implementation, not a model call of its own: keep it off the
# callbacks (LangChain has no child callback manager for model runs).
_UNTRACED: RunnableConfig = {"callbacks": []}


def _transcript(messages: list[BaseMessage]) -> str:
    """The conversation as plain text: the simulated engine accepts no tool messages."""
    return "\n".join(f"{m.type}: {m.content}" for m in messages)


async def main(deadline_s: float, runs: int, time_scale: float, engine: str) -> None:
    client = JITClient(engine=engine, policy="jit", time_scale=time_scale)
    try:
        agent = create_react_agent(ScriptedToolCalls(llm=client.chat_model()), [search])
        graph = jit_slo(agent, deadline_s=deadline_s)
        for i in range(runs):
            start = time.perf_counter()
            result = await graph.ainvoke({"messages": [("user", f"What limits LLM serving latency? ({i})")]})
            kinds = " -> ".join(type(m).__name__.removesuffix("Message") for m in result["messages"])
            print(f"\nrun {i + 1} in {time.perf_counter() - start:.2f} s: {kinds}")
            report = graph.last_run
            assert report is not None
            for s in report.stages:
                print(f"  {s.node:<6} step {s.step}: deadline {s.stage_deadline - report.start:6.3f} s, "
                      f"finished {s.finish - report.start:6.3f} s, {s.llm_calls} LLM call(s)")
            print(f"  run deadline {deadline_s:.3f} s: {'met' if report.met else 'MISSED'}")
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline", type=float, default=3.0, help="end-to-end deadline per run (s)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=0.05, help="wall seconds per modelled second (sim)")
    parser.add_argument("--engine", choices=["sim", "vllm"], default="sim",
                        help="the simulated engine, or a real vLLM engine with tiny-random-llama (needs jitagent-vllm)")
    args = parser.parse_args()
    asyncio.run(main(args.deadline, args.runs, args.time_scale, args.engine))
