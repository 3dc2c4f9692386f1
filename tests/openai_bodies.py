"""Hypothesis strategies of OpenAI request bodies, good and malformed, for fuzzing any server of the
Chat Completions and Completions APIs (the simulated engine's, the vLLM engine's, ``vllm serve``).

Engine-agnostic: every strategy takes the model name to put in ``model`` and returns plain data.

* :func:`chat_bodies`, :func:`completion_bodies`: JSON-able objects (``json.dumps`` writes them as
  standard JSON: no NaN or infinity), each a good body with up to three mutations applied: a field
  set to a value of the wrong type or out of range (huge and negative numbers, integers beyond the
  range of a float such as ``10**400``, nested lists and objects, odd Unicode including lone
  surrogates, which JSON's ``\\ud800`` escapes allow), a field removed, an unknown field added, a
  message whose ``role`` is a list, an object or an unknown word, and so on. Good bodies exercise
  ``tools`` (with parameter schemas of several shapes), ``tool_choice`` (named tools included), the
  legacy ``functions``/``function_call``, histories holding assistant tool calls and tool results,
  ``response_format`` (JSON mode, JSON Schemas strict and not), ``stream``/``stream_options``,
  ``logit_bias``, ``metadata`` and jitagent's extras ``slo``, ``pipeline`` and ``request_class``.
* :func:`request_bodies`: ``(path, body)`` pairs over both APIs, and bodies that are not objects.
* :func:`raw_bodies`: ``(path, bytes)`` pairs: the above serialised, plus text no JSON parser
  should accept quietly: truncated, not UTF-8, NaN and Infinity literals, integers of thousands of
  digits, and nesting tens of thousands deep.
* :func:`check_answer`: what every server must answer to any of them: a 2xx, or a 4xx in the
  OpenAI error shape; never a 500.

Cost is bounded so a fuzz test runs quickly on a real engine: a body that may be valid asks for at
most 4 tokens (``max_tokens``/``max_completion_tokens`` are never removed or set to null, so no
valid body falls back to "as many tokens as the context allows"), prompts are a few words or a few
token ids, and containers hold at most a handful of items.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

__all__ = ["chat_bodies", "completion_bodies", "request_bodies", "raw_bodies", "check_answer", "JSONBody"]

JSONBody = Any   # what json.dumps writes: dict, list, str, int, float, bool or None

# Fields that would let a valid body generate the whole context: never removed nor set to null.
_COST_FIELDS = ("max_tokens", "max_completion_tokens")

_ODD_TEXT = ["", " ", "\x00", "\ud800", "a\udfffb", "\udc00\ud800", "\u202e\u2066rtl", "\ufeff", "e\u0301",
             "🤖" * 3, "\n\r\t", "null", "NaN", "{}", "<|endoftext|>", "\\u0000"]
_HUGE_INTS = [2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -(10**400)]
_ODD_FLOATS = [0.0, -0.0, 5e-324, 1e-300, 1e300, 1.7976931348623157e308, -1.7976931348623157e308, 0.5, 2.0000001]


def _text(max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size) | st.sampled_from(_ODD_TEXT)


_ints = st.integers(-5, 40) | st.sampled_from(_HUGE_INTS) | st.integers()
_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(_ODD_FLOATS)
_scalars = st.none() | st.booleans() | _ints | _floats | _text()


def _deep(depth: int) -> JSONBody:
    value: JSONBody = 0
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


# Any JSON value, small; nesting up to 100 deep (deeper ones only as raw bytes: json.dumps recurses).
_values: st.SearchStrategy[JSONBody] = (
    st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text(6), inner, max_size=3),
                 max_leaves=6)
    | st.integers(20, 100).map(_deep))


# -- good parts -------------------------------------------------------------------------------

def _content() -> st.SearchStrategy[JSONBody]:
    part = st.fixed_dictionaries({"type": st.just("text"), "text": _text()})
    return _text() | st.lists(part, min_size=1, max_size=2)


_ROLES = ["system", "developer", "user", "assistant"]
_name = st.from_regex(r"[a-z_]{1,8}", fullmatch=True)
_message = st.fixed_dictionaries({"role": st.sampled_from(_ROLES), "content": _content()},
                                  optional={"name": _name})
# Argument schemas as tools write them: empty, flat, closed (strict-ready), nested, with $defs.
_PARAMETERS = [
    {"type": "object", "properties": {}},
    {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]},
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}, "b": {"type": "number"}},
     "required": ["a", "b"], "additionalProperties": False},
    {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
                                      "when": {"type": "string", "format": "date"}}},
    {"$defs": {"P": {"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]}},
     "type": "object", "properties": {"p": {"$ref": "#/$defs/P"}, "q": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
]
_function = st.fixed_dictionaries({"name": _name}, optional={"description": _text(),
                                                             "parameters": st.sampled_from(_PARAMETERS)})
_tool = st.fixed_dictionaries({"type": st.just("function"), "function": _function})
_arguments = st.sampled_from(['{}', '{"city": "Paris"}', '{"a": 1, "b": 2.5}', '{"a": '])
_tool_call = st.fixed_dictionaries({"id": st.from_regex(r"call_[a-z0-9]{1,8}", fullmatch=True),
                                    "type": st.just("function"),
                                    "function": st.fixed_dictionaries({"name": _name, "arguments": _arguments})})
# An assistant turn that called tools, and a result for each call.
_tool_round = st.lists(_tool_call, min_size=1, max_size=2).map(lambda calls: [
    {"role": "assistant", "content": None, "tool_calls": calls},
    *({"role": "tool", "tool_call_id": call["id"], "content": "42"} for call in calls)])
_messages = st.tuples(st.lists(_message, min_size=1, max_size=3), st.lists(_tool_round, max_size=2)).map(
    lambda parts: parts[0] + [m for round_ in parts[1] for m in round_])
_tool_choice = st.sampled_from(["none", "auto", "required"]) | _name.map(
    lambda name: {"type": "function", "function": {"name": name}})
_response_format = st.sampled_from([
    {"type": "text"}, {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}},
    *({"type": "json_schema", "json_schema": {"name": "answer", "schema": p, "strict": True}} for p in _PARAMETERS[:3])])
_seconds = st.floats(0.001, 60.0)
_slo = st.one_of(
    st.fixed_dictionaries({"kind": st.just("stream"), "ttft_s": _seconds, "tpot_s": _seconds}),
    st.fixed_dictionaries({"kind": st.just("deadline"), "deadline_s": _seconds}),
    st.fixed_dictionaries({"kind": st.just("pipeline"), "deadline_s": _seconds}),
).flatmap(lambda slo: st.fixed_dictionaries(
    {k: st.just(v) for k, v in slo.items()},
    optional={"on_infeasible": st.sampled_from(["best_effort", "reject"])}))
_clock = st.floats(0.0, 1e7)
_pipeline = st.fixed_dictionaries({"run_id": _text(8), "run_start": _clock, "run_deadline": _clock,
                                   "stage": _text(8), "stage_deadline": _clock})
_metadata = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)
_logit_bias = st.dictionaries(st.integers(0, 100).map(str), st.integers(-100, 100), max_size=2)

# Optional fields of both APIs, each with values the OpenAI API accepts.
_COMMON_OPTIONAL: dict[str, st.SearchStrategy[JSONBody]] = {
    "temperature": st.floats(0.0, 2.0), "top_p": st.floats(0.0, 1.0),
    "presence_penalty": st.floats(-2.0, 2.0), "frequency_penalty": st.floats(-2.0, 2.0),
    "seed": st.integers(-(2**63), 2**63 - 1), "n": st.just(1),
    "stop": _text(4).filter(bool) | st.lists(_text(4).filter(bool), min_size=1, max_size=4),
    "user": _text(8), "logit_bias": _logit_bias,
    "slo": _slo, "pipeline": _pipeline, "request_class": _text(8).filter(bool),
}
_CHAT_OPTIONAL: dict[str, st.SearchStrategy[JSONBody]] = {
    **_COMMON_OPTIONAL, "max_completion_tokens": st.integers(1, 4), "metadata": _metadata,
    "tools": st.lists(_tool, min_size=1, max_size=2), "tool_choice": _tool_choice,
    "functions": st.lists(_function, min_size=1, max_size=2),
    "function_call": st.sampled_from(["none", "auto"]) | _name.map(lambda name: {"name": name}),
    "parallel_tool_calls": st.booleans(), "response_format": _response_format,
    "logprobs": st.booleans(), "top_logprobs": st.integers(0, 20), "store": st.booleans(),
}
_COMPLETION_OPTIONAL: dict[str, st.SearchStrategy[JSONBody]] = {
    **_COMMON_OPTIONAL, "echo": st.booleans(), "best_of": st.just(1), "logprobs": st.integers(0, 5),
}
_token_ids = st.lists(st.integers(0, 100), min_size=1, max_size=5)
_prompt = _text(40).filter(bool) | _token_ids | st.lists(_text(20).filter(bool), min_size=1, max_size=1) \
    | st.lists(_token_ids, min_size=1, max_size=1)

# Field names no OpenAI API has, and jitagent's and vLLM's extras written wrongly.
_UNKNOWN_FIELDS = st.sampled_from(["foo", "", "Model", "messages ", "vllm_xargs", "priority", "slo_s", "__proto__",
                                   "\ud800", "max_tokens\x00"])


def _streamed(body: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``body`` plus ``stream`` (and ``stream_options`` when streamed)."""
    def add(stream: bool, usage: bool | None) -> dict[str, Any]:
        out = {**body, "stream": stream}
        if stream and usage is not None:
            out["stream_options"] = {"include_usage": usage}
        return out
    return st.builds(add, st.booleans(), st.none() | st.booleans())


def _good(required: dict[str, st.SearchStrategy[JSONBody]],
          optional: dict[str, st.SearchStrategy[JSONBody]]) -> st.SearchStrategy[dict[str, Any]]:
    """The required fields and up to three optional ones (more would rarely leave a body every
    engine can serve), maybe streamed."""
    chosen = st.lists(st.sampled_from(sorted(optional)), max_size=3, unique=True)
    return chosen.flatmap(lambda names: st.fixed_dictionaries({**required, **{n: optional[n] for n in names}})) \
        .flatmap(lambda body: _streamed(body) | st.just(body))


# -- mutations ----------------------------------------------------------------------------------

def _bad_number(field: str) -> st.SearchStrategy[JSONBody]:
    """Numbers out of every range (and, for the cost fields, never null)."""
    values = st.sampled_from(_HUGE_INTS) | st.integers(-(2**70), 0) | st.sampled_from(_ODD_FLOATS) | _floats
    return values if field in _COST_FIELDS else values | st.none()


@st.composite
def _mutated(draw: st.DrawFn, good: st.SearchStrategy[dict[str, Any]], fields: list[str]) -> JSONBody:
    body = draw(good)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["set", "set_number", "drop", "unknown", "role", "message", "nested"]))
        field = draw(st.sampled_from(fields))
        if kind == "set":
            value = draw(_values)
            if not (field in _COST_FIELDS and value is None):
                body[field] = value
        elif kind == "set_number":
            body[field] = draw(_bad_number(field))
        elif kind == "drop" and field not in _COST_FIELDS:
            body.pop(field, None)
        elif kind == "unknown":
            body[draw(_UNKNOWN_FIELDS)] = draw(_values)
        elif kind in ("role", "message") and isinstance(body.get("messages"), list) and body["messages"]:
            i = draw(st.integers(0, len(body["messages"]) - 1))
            message = body["messages"][i]
            if kind == "role" and isinstance(message, dict):
                message["role"] = draw(st.sampled_from([["user"], {"role": "user"}, "tool", "function", "robot", "",
                                                         "USER", None, 1]) | _values)
            else:
                body["messages"][i] = draw(_values)
        elif kind == "nested" and isinstance(body.get(field), dict) and body[field]:
            key = draw(st.sampled_from(sorted(body[field])))
            body[field][key] = draw(_values | _bad_number(key))
    return body


def chat_bodies(model: str) -> st.SearchStrategy[JSONBody]:
    """Chat Completions bodies for ``model``: good ones, and good ones with mutations."""
    good = _good({"model": st.just(model), "messages": _messages, "max_tokens": st.integers(1, 4)}, _CHAT_OPTIONAL)
    fields = ["model", "messages", "max_tokens", "stream", "stream_options", *_CHAT_OPTIONAL]
    return _mutated(good, fields)


def completion_bodies(model: str) -> st.SearchStrategy[JSONBody]:
    """Completions bodies for ``model``: good ones (text or token-id prompts), and mutated ones.
    Mutated prompts include token ids far beyond any vocabulary (``2**31``, ``10**400``)."""
    good = _good({"model": st.just(model), "prompt": _prompt, "max_tokens": st.integers(1, 4)}, _COMPLETION_OPTIONAL)
    fields = ["model", "prompt", "max_tokens", "stream", "stream_options", *_COMPLETION_OPTIONAL]
    bad_ids = st.lists(st.integers(-3, 40000) | st.sampled_from(_HUGE_INTS), min_size=1, max_size=4)
    with_bad_ids = st.tuples(good, bad_ids).map(lambda pair: {**pair[0], "prompt": pair[1]})
    return _mutated(good, fields) | with_bad_ids


def request_bodies(model: str) -> st.SearchStrategy[tuple[str, JSONBody]]:
    """``(path, body)``: Chat Completions and Completions bodies, and JSON values that are not objects."""
    paths = st.sampled_from(["/chat/completions", "/completions"])
    return st.one_of(
        st.tuples(st.just("/chat/completions"), chat_bodies(model)),
        st.tuples(st.just("/completions"), completion_bodies(model)),
        st.tuples(paths, _values.filter(lambda value: not isinstance(value, dict))),
    )


def _dumps(body: JSONBody) -> bytes:
    return json.dumps(body).encode()


_RAW_ODDITIES = st.sampled_from([
    b"", b" ", b"{", b"}", b"null", b"[]", b'"text"', b"\xff\xfe{}", b'{"model": "\xc3\x28"}',
    b'{"model": 1e999}', b'{"temperature": NaN}', b'{"temperature": Infinity}', b'{"max_tokens": -Infinity}',
    b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"[" * 100_000,
    b'{"max_tokens": ' + b"9" * 5000 + b"}", b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"a": 1, "a": 2}', b"\x00", b"{\"model\": \"x\"}\x00",
])


def raw_bodies(model: str) -> st.SearchStrategy[tuple[str, bytes]]:
    """``(path, bytes)``: serialised :func:`request_bodies`, some of them truncated, and raw text
    no JSON parser should take quietly (see the module docstring)."""
    serialised = request_bodies(model).map(lambda pair: (pair[0], _dumps(pair[1])))
    truncated = st.tuples(serialised, st.integers(0, 200)).map(lambda x: (x[0][0], x[0][1][:x[1]]))
    oddities = st.tuples(st.sampled_from(["/chat/completions", "/completions"]), _RAW_ODDITIES)
    return st.one_of(serialised, truncated, oddities)


def check_answer(status: int, body: bytes) -> None:
    """A 2xx, or a 4xx in the OpenAI error shape; a stream ends with [DONE] or an error event."""
    assert status < 500, (status, body[:500])
    if status >= 400:
        _check_error(json.loads(body))
        return
    assert status == 200
    if body.startswith(b"data: "):
        events = [e.removeprefix(b"data: ") for e in body.split(b"\n\n") if e]
        last = events[-1]
        if last != b"[DONE]":
            _check_error(json.loads(last))
    else:
        assert json.loads(body)["choices"]


def _check_error(payload: Any) -> None:
    assert isinstance(payload, dict) and payload.keys() == {"error"}, payload
    error = payload["error"]
    assert error.keys() == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str)
