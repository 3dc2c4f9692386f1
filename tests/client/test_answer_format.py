"""Reading what a request asks its answer to be (:mod:`jitagent.client.answer_format`): the tool
fields to the OpenAI API's rules, and JSON mode's schema taken from the prompt's format instructions.
"""

from __future__ import annotations

import json

import pydantic
from langchain_core.output_parsers import PydanticOutputParser

from jitagent.client.answer_format import AnswerFormat, JSONFormat, Tool, read_answer_format

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"properties": {"a": {"type": "integer"}}}}}


class Verdict(pydantic.BaseModel):
    answer: bool


def test_defaults_and_narrowing() -> None:
    """No answer format: ``None`` (plain text). Tools default to ``"auto"`` with parallel calls; an
    untyped parameter schema is an object; ``allowed_tools`` narrows the tools, a named tool
    forbids parallel calls; ``functions`` is the legacy form."""
    assert read_answer_format({"messages": []}) is None
    assert read_answer_format({"tools": [TOOL]}) == AnswerFormat(
        (Tool("f", {"properties": {"a": {"type": "integer"}}, "type": "object"}),), "auto", None, True, False, None)
    other = {"type": "function", "function": {"name": "g"}}
    narrowed = read_answer_format({"tools": [TOOL, other], "tool_choice": {"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "g"}}]}}})
    assert narrowed is not None and [t.name for t in narrowed.tools] == ["g"] and narrowed.tool_choice == "required"
    named = read_answer_format({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}}})
    assert named is not None and named.named == "f" and not named.parallel
    legacy = read_answer_format({"functions": [TOOL["function"]], "function_call": "auto"})
    assert legacy is not None and legacy.functions and not legacy.parallel


def test_json_mode_follows_the_last_schema_in_the_instructions() -> None:
    """LangChain's format instructions carry a schema in a fenced block; a block that is not JSON,
    not a schema, or in an assistant message is passed over; without one, any JSON object."""
    instructions = PydanticOutputParser(pydantic_object=Verdict).get_format_instructions()
    messages = [
        {"role": "system", "content": "Answer in JSON.\n```\n{not json\n```\n```json\n{\"a\": 1}\n```"},
        {"role": "user", "content": [{"type": "text", "text": instructions}]},
        {"role": "assistant", "content": '```\n{"properties": {"x": {"type": "string"}}}\n```'},
    ]
    found = read_answer_format({"messages": messages, "response_format": {"type": "json_object"}})
    assert found is not None and found.json is not None and found.json.schema is not None
    assert set(found.json.schema["properties"]) == {"answer"}
    plain = read_answer_format({"messages": messages[:1], "response_format": {"type": "json_object"}})
    assert plain == AnswerFormat(json=JSONFormat(None))
    unclosed = [{"role": "user", "content": "```" + json.dumps({"properties": {}}) * 1000}]
    assert read_answer_format({"messages": unclosed, "response_format": {"type": "json_object"}}).json.schema is None
