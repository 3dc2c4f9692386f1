"""A map-reduce summariser: split a document, summarise the chunks in parallel, combine.

split ─▶ summarise ×N (``Send`` fan-out, one per chunk) ─▶ reduce
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

__all__ = ["Summary", "build_map_reduce", "document", "summary_input"]


class Summary(TypedDict, total=False):
    document: str
    chunks: list[str]
    summaries: Annotated[list[str], operator.add]
    summary: str


def build_map_reduce(llm: BaseChatModel, num_chunks: int = 6) -> StateGraph:
    """The summariser graph; ``llm`` makes every model call."""

    def split(state: Summary) -> dict[str, Any]:
        words = state["document"].split()
        size = max(1, -(-len(words) // num_chunks))
        return {"chunks": [" ".join(words[i:i + size]) for i in range(0, len(words), size)]}

    def fan_out(state: Summary) -> list[Send]:
        return [Send("summarise", {"document": chunk}) for chunk in state["chunks"]]

    async def summarise(state: Summary) -> dict[str, Any]:
        reply = await llm.ainvoke(f"Summarise this passage: {state['document']}", max_tokens=80)
        return {"summaries": [reply.content]}

    async def reduce(state: Summary) -> dict[str, Any]:
        reply = await llm.ainvoke("Combine these summaries into one: " + " | ".join(state["summaries"]),
                                  max_tokens=200)
        return {"summary": reply.content}

    builder = StateGraph(Summary)
    builder.add_node("split", split)
    builder.add_node("summarise", summarise)
    builder.add_node("reduce", reduce)
    builder.add_edge(START, "split")
    builder.add_conditional_edges("split", fan_out, ["summarise"])
    builder.add_edge("summarise", "reduce")
    builder.add_edge("reduce", END)
    return builder


def document(seed: int, words: int = 600) -> str:
    """A reproducible fake document."""
    vocabulary = ["scheduler", "deadline", "token", "batch", "prefill", "decode", "slack", "goodput", "stage"]
    return " ".join(f"{vocabulary[(seed * 7 + i * i) % len(vocabulary)]}{(seed + i) % 97}" for i in range(words))


def summary_input(index: int) -> Summary:
    """Run ``index``'s input: a document of its own."""
    return {"document": document(index)}
