"""The simulated model's turn in a conversation with tools or a JSON answer format: whether it calls
tools (and which, with what arguments) or answers, and in what form.

With tools and ``tool_choice`` ``"auto"``, a turn calls tools with probability
``call_probability * decay ** rounds``, where ``rounds`` counts the assistant turns of the
conversation that already called tools, and never after ``max_rounds`` of them: an agent loop that
feeds tool results back (ReAct, a LangGraph ``ToolNode``) ends in a text answer. ``"required"`` or
a named tool always calls; ``"none"`` never does. Which tool: drawn by ``tool_weights`` (by name;
1 for a tool not named there); with ``parallel_tool_calls`` not false, each further call in the
same turn is added with probability ``parallel_probability``, up to 4. Arguments are an instance of
the tool's ``parameters`` schema (:mod:`jitagent.client.schema_instance`) whose free-form strings
fill about ``arguments_tokens`` tokens (a median: log-normal, as text lengths).

A JSON answer (``response_format``) is an instance of its schema (any JSON object when it has
none) whose length in tokens is about the length the simulated text answer to the same request
would have had.

The output length the engine schedules is the answer's own token count: the JSON's tokens
(:func:`jitagent.client.text.token_pieces`), and ``max_tokens`` cuts it short as it cuts text
(finish reason ``"length"``, the JSON left unfinished, as a real server leaves it).

Everything is drawn from generators seeded by the request's ``seed`` (else its prompt) and, for the
choice of tools, the settings' ``seed``: the same request gets the same turn. Tool call ids are
random (unique, as the OpenAI API's are).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jitagent.client.answer_format import AnswerFormat, FormatError, Tool
from jitagent.client.schema_instance import SchemaError, instance_json, make_instance
from jitagent.client.text import SimulatedAnswer, answer_seed, output_length, simulated_answer, token_pieces

__all__ = ["SimToolSettings", "ToolCallPlan", "simulated_turn"]

_MAX_PARALLEL_CALLS = 4
_ANY_OBJECT: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


@dataclass(frozen=True, slots=True)
class SimToolSettings:
    """How the simulated model uses tools (see the module docstring).

    Args:
        call_probability: chance that a turn with tools (``tool_choice`` ``"auto"``) calls one, when
            no earlier turn did.
        decay: factor on that chance per earlier turn that called tools.
        max_rounds: after this many turns that called tools, ``"auto"`` always answers in text.
        tool_weights: relative chance of each tool, by name (1 for others; 0: never by choice).
        parallel_probability: chance of each further call in a turn that allows parallel calls.
        arguments_tokens: median length of a call's arguments, in tokens.
        seed: varies the choices (whether, which, how many tools) for the same requests.
    """

    call_probability: float = 0.9
    decay: float = 0.5
    max_rounds: int = 10
    tool_weights: Mapping[str, float] = field(default_factory=dict)
    parallel_probability: float = 0.2
    arguments_tokens: int = 24
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("call_probability", "decay", "parallel_probability"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")
        for name, low in (("max_rounds", 0), ("arguments_tokens", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
        for tool, weight in self.tool_weights.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 <= weight < math.inf:
                raise ValueError(f"tool_weights[{tool!r}] must be a finite number of at least 0, got {weight!r}")


@dataclass(frozen=True, slots=True)
class ToolCallPlan:
    """One call of a turn: its id, the tool's name, and how many of the turn's pieces (tokens) are
    its arguments (the calls' pieces follow one another)."""

    id: str
    name: str
    tokens: int


def simulated_turn(prompt_key: bytes, seed: int | None, max_tokens: int, answer_format: AnswerFormat | None,
                   tool_rounds: int, settings: SimToolSettings) -> tuple[SimulatedAnswer, tuple[ToolCallPlan, ...]]:
    """The answer to one request (its pieces cut at ``max_tokens``), and the tool calls those pieces
    make up (none: the pieces are the message's content). :class:`FormatError` (``tools`` or
    ``response_format``) if no instance of a schema turned up (see :func:`make_instance`)."""
    if answer_format is None:
        return simulated_answer(prompt_key, seed, max_tokens), ()
    base = answer_seed(prompt_key, seed)
    choices = np.random.default_rng([base, settings.seed])
    tools = _calls(answer_format, tool_rounds, settings, choices)
    if tools:
        arguments = [token_pieces(_instance(tool.parameters, choices, output_length(choices, settings.arguments_tokens),
                                            "tools", f"the arguments of {tool.name!r}")) for tool in tools]
        plans = tuple(ToolCallPlan(f"call_{uuid.uuid4().hex[:24]}", tool.name, len(args))
                      for tool, args in zip(tools, arguments))
        pieces = tuple(piece for args in arguments for piece in args)
        return SimulatedAnswer(len(pieces), pieces[:max_tokens]), plans
    if answer_format.json is None:
        return simulated_answer(prompt_key, seed, max_tokens), ()
    rng = np.random.default_rng(base)   # the text answer's generator: its first draw is the text's length
    target = output_length(rng)
    pieces = token_pieces(_instance(answer_format.json.schema or _ANY_OBJECT, rng, target, "response_format",
                                    "the answer"))
    return SimulatedAnswer(len(pieces), pieces[:max_tokens]), ()


def _instance(schema: dict[str, Any], rng: np.random.Generator, target: int, param: str, what: str) -> str:
    """The JSON text of an instance of ``schema``, else a :class:`FormatError` naming ``param``."""
    try:
        return instance_json(make_instance(schema, rng, target))
    except SchemaError as exc:
        raise FormatError(f"the simulated engine cannot make {what}: {exc}", param) from None


def _calls(answer_format: AnswerFormat, rounds: int, settings: SimToolSettings,
           rng: np.random.Generator) -> list[Tool]:
    """The tools this turn calls, in order (empty: it answers)."""
    tools = answer_format.tools
    if not tools or answer_format.tool_choice == "none":
        return []
    if answer_format.named is not None:
        return [next(tool for tool in tools if tool.name == answer_format.named)]
    if answer_format.tool_choice == "auto":
        chance = settings.call_probability * settings.decay ** rounds if rounds < settings.max_rounds else 0.0
        if rng.random() >= chance:
            return []
    weights = np.array([settings.tool_weights.get(tool.name, 1.0) for tool in tools], dtype=float)
    if weights.sum() == 0:   # no tool is ever chosen: "auto" answers, "required" takes any
        if answer_format.tool_choice == "auto":
            return []
        weights[:] = 1.0
    count = 1
    while answer_format.parallel and count < _MAX_PARALLEL_CALLS and rng.random() < settings.parallel_probability:
        count += 1
    return [tools[i] for i in rng.choice(len(tools), size=count, p=weights / weights.sum())]
