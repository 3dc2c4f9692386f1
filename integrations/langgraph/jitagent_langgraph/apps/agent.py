"""A tool-calling agent with a structured answer, built as LangGraph documents it: a ``StateGraph``
whose model node calls ``llm.bind_tools(...)``, a prebuilt ``ToolNode`` and ``tools_condition``.

agent ─┬─▶ tools (``ToolNode``: ``lookup_city``, ``calculate``) ─▶ agent
       └─▶ respond (``with_structured_output(CityComparison)``) ─▶ END

The model decides when to call a tool and when it has enough (``tool_choice="auto"``; or must call
one, ``"required"``); after ``max_tool_rounds`` rounds of tool calls it is asked to answer without
them (``tool_choice="none"``), so a model that keeps calling tools still ends. The ``respond``
node turns the conversation into a :class:`CityComparison`. The tools are deterministic: a lookup
in a fixed table (taking ``tool_latency_s``, as a database or web call would) and an arithmetic
evaluator that answers bad input with an error message for the model rather than failing the run.
"""

from __future__ import annotations

import ast
import asyncio
import operator
from collections.abc import Callable
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, SystemMessage
from langchain_core.tools import BaseTool, tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import BaseModel, Field

__all__ = ["CITIES", "AgentState", "City", "CityComparison", "agent_input", "build_agent", "make_tools",
           "tool_rounds"]

City = Literal["Paris", "Lyon", "Marseille", "Toulouse"]

#: The lookup tool's table: population and area (km²) of each city.
CITIES: dict[str, dict[str, float]] = {
    "Paris": {"population": 2_102_650, "area_km2": 105.4},
    "Lyon": {"population": 522_250, "area_km2": 47.9},
    "Marseille": {"population": 873_076, "area_km2": 240.6},
    "Toulouse": {"population": 504_078, "area_km2": 118.3},
}

TOOL_LATENCY_S = 0.01   # one lookup, in wall seconds
MAX_EXPRESSION_CHARS = 100   # in the tool's schema: a model under a grammar keeps to it

SYSTEM = ("You compare cities. Look up each city's figures with lookup_city, compute with calculate, "
          "then answer briefly.")
RESPOND = "Give the final comparison of the two cities as structured data."


class CityComparison(BaseModel):
    """The agent's structured answer."""

    larger: City = Field(description="the city with more inhabitants")
    smaller: City = Field(description="the city with fewer inhabitants")
    difference: int = Field(ge=0, le=100_000_000, description="how many more people live in the larger city")
    summary: str = Field(max_length=120, description="one sentence")


class AgentState(MessagesState):
    """The conversation, and the structured answer once the agent has given it."""

    answer: CityComparison


_OPERATORS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST) -> float:
    """An arithmetic expression tree of numbers and + - * / (anything else is a ValueError)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"unsupported element {type(node).__name__}")


def make_tools(latency_s: float = TOOL_LATENCY_S) -> list[BaseTool]:
    """The agent's two tools; a lookup takes ``latency_s`` of wall time."""

    @tool
    async def lookup_city(city: City) -> dict[str, float]:
        """Look up a city's population and area in square kilometres."""
        await asyncio.sleep(latency_s)
        return CITIES[city]

    @tool
    def calculate(expression: Annotated[str, Field(max_length=MAX_EXPRESSION_CHARS)]) -> str:
        """Evaluate an arithmetic expression of numbers, + - * / and parentheses, e.g. "2102650 - 522250"."""
        # Whatever the model wrote gets an answer it can act on: an error is a reply, not a crash.
        try:
            value = _evaluate(ast.parse(expression, mode="eval").body)
            return str(int(value)) if value == int(value) else str(value)   # 1580400, not 1.5804e+06
        except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError) as exc:
            return f"error: cannot evaluate {expression!r} ({type(exc).__name__})"

    return [lookup_city, calculate]


def tool_rounds(messages: list[AnyMessage]) -> int:
    """How many of the model's turns so far called tools."""
    return sum(1 for m in messages if isinstance(m, AIMessage) and m.tool_calls)


def build_agent(llm: BaseChatModel, *, max_tool_rounds: int = 3, tool_choice: Literal["auto", "required"] = "auto",
                tool_latency_s: float = TOOL_LATENCY_S, max_tokens: int = 160, answer_tokens: int = 256) -> StateGraph:
    """The agent graph; ``llm`` makes every model call (it must support ``bind_tools`` and
    ``with_structured_output``, as ``ChatOpenAI`` does). ``tool_choice`` applies to the model's turns
    before the last (``"required"``: exactly ``max_tool_rounds`` rounds of tool calls)."""
    if max_tool_rounds < 0:
        raise ValueError(f"max_tool_rounds must be >= 0, got {max_tool_rounds}")
    tools = make_tools(tool_latency_s)
    with_tools = llm.bind_tools(tools, tool_choice=tool_choice)
    # The last word: the same tools in view (the history holds their calls), none may be called.
    without_tools = llm.bind_tools(tools, tool_choice="none")
    structured = llm.with_structured_output(CityComparison)

    async def agent(state: AgentState) -> dict[str, Any]:
        model = with_tools if tool_rounds(state["messages"]) < max_tool_rounds else without_tools
        reply = await model.ainvoke([SystemMessage(SYSTEM), *state["messages"]], max_tokens=max_tokens)
        return {"messages": [reply]}

    async def respond(state: AgentState) -> dict[str, Any]:
        answer = await structured.ainvoke([SystemMessage(SYSTEM), *state["messages"], ("user", RESPOND)],
                                          max_tokens=answer_tokens)
        return {"answer": answer}

    builder = StateGraph(AgentState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_node("respond", respond)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: "respond"})
    builder.add_edge("tools", "agent")
    builder.add_edge("respond", END)
    return builder


def agent_input(index: int) -> dict[str, Any]:
    """Run ``index``'s input: a question about a pair of cities of its own."""
    names = list(CITIES)
    first = names[index % len(names)]
    second = names[(index // len(names) + index + 1) % len(names)]
    if second == first:
        second = names[(names.index(first) + 1) % len(names)]
    return {"messages": [("user", f"Which has more inhabitants, {first} or {second}, and by how many? (#{index})")]}
