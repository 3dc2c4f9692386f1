"""What a chat request asks its answer to be: the fields ``tools``, ``tool_choice``,
``parallel_tool_calls``, the legacy ``functions`` and ``function_call``, and ``response_format``,
checked to the OpenAI API's rules and read into an :class:`AnswerFormat`.

Every problem is a :class:`FormatError` naming the field (``tools[1].function.parameters``), which
the handlers answer with a 400. Schemas (a tool's ``parameters``, a ``json_schema``) are checked by
:func:`jitagent.client.schema_instance.check_schema`, with the OpenAI strict-mode rules when the
tool or format sets ``strict``.

JSON mode (``{"type": "json_object"}``) names no schema: the model is told the shape in the prompt.
The simulated model follows the last JSON Schema written in a fenced block (```` ``` ````) of a
system, developer or user message, as LangChain's format instructions
(``PydanticOutputParser.get_format_instructions()``) write it, when it finds one it can make
instances of; else it answers any JSON object.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from jitagent.client.schema_instance import SchemaError, check_schema

__all__ = ["AnswerFormat", "FormatError", "JSONFormat", "Tool", "read_answer_format"]

MAX_TOOLS = 128                   # the OpenAI API's limit on tools (and functions) per request
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL_KEYS = {"type", "function"}
_FUNCTION_KEYS = {"name", "description", "parameters", "strict"}
_JSON_SCHEMA_KEYS = {"name", "description", "schema", "strict"}
_FENCE = "```"
_INSTRUCTING_ROLES = ("system", "developer", "user")
_ANY_OBJECT: dict[str, Any] = {"type": "object"}

ToolChoice = Literal["none", "auto", "required"]


class FormatError(ValueError):
    """A malformed answer-format field; ``param`` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; ``parameters`` is the JSON Schema of its arguments (an object)."""

    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JSONFormat:
    """A JSON answer: an instance of ``schema``, or any JSON object when it is ``None``."""

    schema: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AnswerFormat:
    """What the answer may be.

    ``tools``: what the model may call this turn (after ``allowed_tools`` narrowed them);
    ``tool_choice``: whether it must (``"required"``), may (``"auto"``) or must not (``"none"``)
    call one; ``named``: the one tool it must call, if ``tool_choice`` named it; ``parallel``:
    whether one turn may hold several calls; ``functions``: the legacy API (one call, answered as
    ``function_call``); ``json``: the text answer must be JSON (``response_format``).
    """

    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "none"
    named: str | None = None
    parallel: bool = True
    functions: bool = False
    json: JSONFormat | None = None


def read_answer_format(body: dict[str, Any]) -> AnswerFormat | None:
    """The answer format a Chat Completions body asks for; ``None`` for plain text."""
    tools_given = body.get("tools") is not None
    functions_given = body.get("functions") is not None
    if tools_given and functions_given:
        raise FormatError("'tools' and the deprecated 'functions' cannot be used together", "functions")
    json_format = _response_format(body.get("response_format"), body.get("messages"))
    if tools_given:
        tools = _tools(body["tools"])
        choice, named, allowed = _tool_choice(body.get("tool_choice"), {tool.name for tool in tools})
        if allowed is not None:
            tools = tuple(tool for tool in tools if tool.name in allowed)
        parallel = body.get("parallel_tool_calls") is not False
        return AnswerFormat(tools, choice, named, parallel and named is None, False, json_format)
    if functions_given:
        functions = _functions(body["functions"])
        choice, named = _function_call(body.get("function_call"), {f.name for f in functions})
        return AnswerFormat(functions, choice, named, False, True, json_format)
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "none"):
            raise FormatError(f"'{name}' is only allowed when '{'tools' if name == 'tool_choice' else 'functions'}' "
                              f"are specified", name)
    return AnswerFormat(json=json_format) if json_format is not None else None


def _tools(tools: Any) -> tuple[Tool, ...]:
    if not isinstance(tools, list) or not 1 <= len(tools) <= MAX_TOOLS:
        raise FormatError(f"'tools' must be a list of 1 to {MAX_TOOLS} tools", "tools")
    out: list[Tool] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind == "custom":
                raise FormatError(f"{where}: custom tools are not supported by the simulated engine (only "
                                  f"'function' tools)", where)
            raise FormatError(f"{where} must be an object with 'type': 'function' and a 'function'", where)
        unknown = sorted(tool.keys() - _TOOL_KEYS)
        if unknown:
            raise FormatError(f"{where} has an unknown field {unknown[0]!r}", where)
        out.append(_function(tool.get("function"), f"{where}.function"))
    _no_duplicates(out, "tools")
    return tuple(out)


def _functions(functions: Any) -> tuple[Tool, ...]:
    if not isinstance(functions, list) or not 1 <= len(functions) <= MAX_TOOLS:
        raise FormatError(f"'functions' must be a list of 1 to {MAX_TOOLS} functions", "functions")
    out = [_function(function, f"functions[{i}]") for i, function in enumerate(functions)]
    _no_duplicates(out, "functions")
    return tuple(out)


def _function(function: Any, where: str) -> Tool:
    """One function definition: a valid name, an optional description, an object schema."""
    if not isinstance(function, dict):
        raise FormatError(f"{where} must be an object", where)
    unknown = sorted(function.keys() - _FUNCTION_KEYS)
    if unknown:
        raise FormatError(f"{where} has an unknown field {unknown[0]!r}", where)
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FormatError(f"{where}.name must be 1 to 64 letters, digits, underscores or dashes, got {name!r}"[:300],
                          f"{where}.name")
    if not isinstance(function.get("description", ""), str):
        raise FormatError(f"{where}.description must be a string", f"{where}.description")
    strict = _strict(function, where)
    parameters = function.get("parameters")
    if parameters is None:
        return Tool(name, _ANY_OBJECT)
    _object_schema(parameters, strict, f"{where}.parameters")
    return Tool(name, parameters if "type" in parameters else {**parameters, "type": "object"})


def _no_duplicates(tools: list[Tool], field: str) -> None:
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.name in seen:
            raise FormatError(f"'{field}' names {tool.name!r} twice ({field}[{i}])", f"{field}[{i}]")
        seen.add(tool.name)


def _strict(owner: dict[str, Any], where: str) -> bool:
    strict = owner.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise FormatError(f"{where}.strict must be a boolean", f"{where}.strict")
    return bool(strict)


def _object_schema(schema: Any, strict: bool, where: str) -> None:
    """A JSON Schema whose instances are objects (what arguments and strict answers must be)."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise FormatError(f"{where} must be a JSON Schema of type 'object'", where)
    _schema(schema, strict, where)


def _schema(schema: Any, strict: bool, where: str) -> None:
    try:
        check_schema(schema, strict=strict)
    except SchemaError as exc:
        raise FormatError(f"{where}: {exc}", where) from None


def _tool_choice(choice: Any, names: set[str]) -> tuple[ToolChoice, str | None, set[str] | None]:
    """(mode, the named tool, the allowed tools) of ``tool_choice``."""
    if choice is None:
        return "auto", None, None
    if choice in ("none", "auto", "required"):
        return choice, None, None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return "required", _named(choice.get("function"), names, "tool_choice"), None
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        if not isinstance(allowed, dict) or allowed.get("mode") not in ("auto", "required") \
                or not isinstance(allowed.get("tools"), list) or not allowed["tools"]:
            raise FormatError("'tool_choice.allowed_tools' must hold a 'mode' ('auto' or 'required') and a "
                              "non-empty list of 'tools'", "tool_choice")
        chosen = {_named(tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None,
                         names, "tool_choice") for tool in allowed["tools"]}
        return allowed["mode"], None, chosen
    raise FormatError(f"'tool_choice' must be 'none', 'auto', 'required' or name a function "
                      f"({{'type': 'function', 'function': {{'name': ...}}}}), got {choice!r}"[:300], "tool_choice")


def _function_call(choice: Any, names: set[str]) -> tuple[ToolChoice, str | None]:
    """(mode, the named function) of the deprecated ``function_call``."""
    if choice is None:
        return "auto", None
    if choice in ("none", "auto"):
        return choice, None
    return "required", _named(choice, names, "function_call")


def _named(function: Any, names: set[str], param: str) -> str:
    """The name in ``{"name": ...}``, which must be one of ``names``."""
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise FormatError(f"'{param}' must name a function: {{'name': ...}}", param)
    if name not in names:
        raise FormatError(f"'{param}' names {name!r}, which is not among the request's tools", param)
    return name


def _response_format(response_format: Any, messages: Any) -> JSONFormat | None:
    """``response_format``: ``None`` for text, else the JSON the answer must be."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text" and response_format.keys() == {"type"}:
        return None
    if kind == "json_object" and response_format.keys() == {"type"}:
        return JSONFormat(_schema_in_prompt(messages))
    if kind != "json_schema" or response_format.keys() != {"type", "json_schema"}:
        raise FormatError("'response_format' must be {'type': 'text'}, {'type': 'json_object'} or "
                          "{'type': 'json_schema', 'json_schema': {...}}", "response_format")
    spec = response_format["json_schema"]
    where = "response_format.json_schema"
    if not isinstance(spec, dict) or spec.keys() - _JSON_SCHEMA_KEYS:
        raise FormatError(f"'{where}' must be an object of {sorted(_JSON_SCHEMA_KEYS)}", where)
    if not isinstance(spec.get("name"), str) or not _NAME.fullmatch(spec["name"]):
        raise FormatError(f"'{where}.name' must be 1 to 64 letters, digits, underscores or dashes", f"{where}.name")
    if not isinstance(spec.get("description", ""), str):
        raise FormatError(f"'{where}.description' must be a string", f"{where}.description")
    strict = _strict(spec, where)
    schema = spec.get("schema")
    if schema is None:
        return JSONFormat(None)
    if strict:
        _object_schema(schema, strict, f"{where}.schema")
    else:
        _schema(schema, strict, f"{where}.schema")
    return JSONFormat(schema)


def _schema_in_prompt(messages: Any) -> dict[str, Any] | None:
    """The last JSON Schema in a fenced block of the instructions (see the module docstring), if the
    simulated model can make instances of it. (Prompt text, not a request field: a block that is
    not such a schema is no error.)"""
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") not in _INSTRUCTING_ROLES:
            continue
        content = message.get("content")
        texts = [content] if isinstance(content, str) else \
            [part.get("text") for part in content if isinstance(part, dict)] if isinstance(content, list) else []
        for text in reversed([t for t in texts if isinstance(t, str)]):
            for block in reversed(text.split(_FENCE)[1::2]):   # the fenced parts (one pass over the text)
                block = block.removeprefix("json").strip()
                if not block.startswith("{"):
                    continue
                try:
                    schema = json.loads(block, parse_constant=_no_constant)
                    if isinstance(schema, dict) and schema.keys() & {"properties", "type", "$ref", "anyOf"}:
                        check_schema(schema)
                        return schema
                except (ValueError, RecursionError):   # not JSON, or no schema the engine serves
                    continue
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
