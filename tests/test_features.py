"""The feature table (docs/features.md) is true: every row's probe, a real call through the OpenAI
client or LangChain's ``ChatOpenAI``, is run against each engine (column), and must succeed where
the table says ✓ and fail with exactly the error the table gives where it gives one.

Columns: ``simulated`` (``JITClient()``), ``vllm`` (``JITClient`` over an in-process vLLM engine,
tiny-random-llama) and ``vllm_serve`` (``vllm serve --scheduler-cls jitagent_vllm.JITScheduler``
with the same model, through ``JITClient(base_url=...)``, which talks HTTP to it). Each column's
engine is started once for the whole table (a module-scoped fixture per column; pytest runs one
column's rows together and stops that engine before the next starts). The vLLM columns are
skipped only where vLLM is not importable.

``python tests/test_features.py [COLUMN ...]`` prints the table as observed now (the rows of
docs/features.md with their cells filled in by running the probes), to paste in after a change.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from jitagent.client import JITClient

TABLE = Path(__file__).resolve().parents[1] / "docs" / "features.md"
COLUMNS = ("simulated", "vllm", "vllm_serve")
TINY = "tiny-random-llama"
OK = "✓"
CELL_CHARS = 200   # a longer error is kept to this many characters and ends with "…" (matched as a prefix)
SEED = 1           # every probe's sampling is seeded: the same outcome every run
JSON_TOKENS = 256  # room for JSON (an answer, tool calls): a model cut short by max_tokens leaves it unfinished

# --- what the probes send -------------------------------------------------------------------------

QUESTION = [{"role": "user", "content": "What is the population of Paris, doubled?"}]
JSON_QUESTION = [{"role": "user", "content": "Is Paris in France? Answer in JSON."}]
TOOLS = [
    {"type": "function", "function": {
        "name": "lookup_population", "description": "The population of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Lyon"]}},
                       "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "calculate", "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string", "maxLength": 20}},
                       "required": ["expression"], "additionalProperties": False}}},
]
TOOL_NAMES = {t["function"]["name"] for t in TOOLS}
TOOL_HISTORY = [
    *QUESTION,
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "lookup_population", "arguments": json.dumps({"city": "Paris"})}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "2102650"},
]


class Verdict(BaseModel):
    """A structured answer with a short, closed shape (a random-weight model under a grammar ends it soon)."""

    answer: Literal["yes", "no"]
    unit: Literal["people", "km"]


VERDICT_SCHEMA = {"type": "json_schema", "json_schema": {
    "name": "Verdict", "strict": True, "schema": {**Verdict.model_json_schema(), "additionalProperties": False}}}


@tool
def lookup_population(city: Literal["Paris", "Lyon"]) -> int:
    """The population of a city."""
    return {"Paris": 2102650, "Lyon": 522250}[city]


@tool
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return expression


# --- probes ---------------------------------------------------------------------------------------


class Unmet(AssertionError):
    """A probe's call succeeded but its result is not what the feature promises."""


def check(condition: object, what: str) -> None:
    if not condition:
        raise Unmet(what)


@dataclass
class Target:
    """One engine as the probes see it: an async OpenAI client, the model name, and ChatOpenAI."""

    client: openai.AsyncOpenAI
    model: str
    chat_model: Callable[..., ChatOpenAI]

    async def chat(self, **kwargs: Any) -> Any:
        kwargs.setdefault("messages", QUESTION)
        kwargs.setdefault("max_tokens", 16)
        kwargs.setdefault("seed", SEED)
        return await self.client.chat.completions.create(model=self.model, **kwargs)


Probe = Callable[[Target], Awaitable[None]]
PROBES: dict[str, Probe] = {}


def probe(fn: Probe) -> Probe:
    PROBES[fn.__name__] = fn
    return fn


@probe
async def chat(t: Target) -> None:
    reply = await t.chat()
    check(reply.choices[0].message.content and reply.usage.completion_tokens >= 1, "no text or no usage")


@probe
async def completions(t: Target) -> None:
    reply = await t.client.completions.create(model=t.model, prompt="Once upon a time", max_tokens=8)
    check(reply.choices[0].text and reply.usage.completion_tokens >= 1, "no text or no usage")


@probe
async def streaming(t: Target) -> None:
    chunks = [c async for c in await t.chat(stream=True)]
    check(sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 1, "no text streamed")


@probe
async def stream_usage(t: Target) -> None:
    chunks = [c async for c in await t.chat(stream=True, stream_options={"include_usage": True})]
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1, "no usage chunk")


@probe
async def stop(t: Target) -> None:
    reply = await t.chat(stop=[" ", "."], max_tokens=32)
    check(" " not in reply.choices[0].message.content.strip(), "text past a stop sequence")


@probe
async def seed(t: Target) -> None:
    first, second = [(await t.chat(temperature=1.0, seed=7)).choices[0].message.content for _ in range(2)]
    check(first == second, "the same seed gave different texts")


@probe
async def sampling(t: Target) -> None:
    await t.chat(temperature=0.7, top_p=0.9, presence_penalty=0.5, frequency_penalty=0.5)


@probe
async def vllm_sampling(t: Target) -> None:
    await t.chat(extra_body={"top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1})


@probe
async def n(t: Target) -> None:
    reply = await t.chat(n=2, temperature=1.0)
    check(len(reply.choices) == 2, f"n=2 gave {len(reply.choices)} choice(s)")


@probe
async def logprobs(t: Target) -> None:
    content = (await t.chat(logprobs=True, top_logprobs=2)).choices[0].logprobs
    check(content and content.content and all(len(x.top_logprobs) == 2 for x in content.content),
          "no logprobs with 2 top logprobs per token")


@probe
async def logit_bias(t: Target) -> None:
    await t.chat(logit_bias={"100": -100})


@probe
async def tools_auto(t: Target) -> None:
    message = (await t.chat(tools=TOOLS, tool_choice="auto", max_tokens=JSON_TOKENS)).choices[0].message
    check(message.content is not None or message.tool_calls, "neither text nor a tool call")
    check_tool_calls(message.tool_calls or [])


@probe
async def tool_choice_required(t: Target) -> None:
    calls = (await t.chat(tools=TOOLS, tool_choice="required", max_tokens=JSON_TOKENS)).choices[0].message.tool_calls
    check(calls, "no tool call")
    check_tool_calls(calls)


@probe
async def tool_choice_named(t: Target) -> None:
    choice = {"type": "function", "function": {"name": "calculate"}}
    calls = (await t.chat(tools=TOOLS, tool_choice=choice, max_tokens=JSON_TOKENS)).choices[0].message.tool_calls
    check(calls and calls[0].function.name == "calculate", "no call of the named tool")
    check_tool_calls(calls)


@probe
async def tool_choice_none(t: Target) -> None:
    message = (await t.chat(tools=TOOLS, tool_choice="none")).choices[0].message
    check(not message.tool_calls and message.content is not None, "a tool call, or no text")


@probe
async def parallel_tool_calls(t: Target) -> None:
    many = (await t.chat(tools=TOOLS, tool_choice="required", parallel_tool_calls=True, max_tokens=JSON_TOKENS))
    one = (await t.chat(tools=TOOLS, tool_choice="required", parallel_tool_calls=False, max_tokens=JSON_TOKENS))
    check(many.choices[0].message.tool_calls, "no tool call with parallel_tool_calls=true")
    check(len(one.choices[0].message.tool_calls or []) == 1, "not exactly one call with parallel_tool_calls=false")


@probe
async def tool_history(t: Target) -> None:
    reply = await t.chat(messages=TOOL_HISTORY, tools=TOOLS)
    check(reply.choices[0].message.content is not None or reply.choices[0].message.tool_calls, "no reply")


def check_tool_calls(calls: list[Any]) -> None:
    for call in calls:
        check(call.function.name in TOOL_NAMES and isinstance(json.loads(call.function.arguments), dict),
              f"a call of {call.function.name!r} with arguments {call.function.arguments!r}")


@probe
async def json_object(t: Target) -> None:
    content = (await t.chat(messages=JSON_QUESTION, response_format={"type": "json_object"},
                         max_tokens=JSON_TOKENS)
               ).choices[0].message.content
    check(isinstance(json.loads(content), dict), "not a JSON object")


@probe
async def json_schema(t: Target) -> None:
    reply = await t.chat(messages=JSON_QUESTION, response_format=VERDICT_SCHEMA, max_tokens=JSON_TOKENS)
    Verdict.model_validate_json(reply.choices[0].message.content)


@probe
async def parse(t: Target) -> None:
    reply = await t.client.chat.completions.parse(model=t.model, messages=JSON_QUESTION, response_format=Verdict,
                                                  max_tokens=JSON_TOKENS)
    check(isinstance(reply.choices[0].message.parsed, Verdict), "nothing parsed")


@probe
async def responses(t: Target) -> None:
    reply = await t.client.responses.create(model=t.model, input="Name a scheduler.", max_output_tokens=16)
    check(reply.output_text, "no output text")


@probe
async def embeddings(t: Target) -> None:
    reply = await t.client.embeddings.create(model=t.model, input="deadline-aware scheduling")
    check(reply.data and reply.data[0].embedding, "no embedding")


@probe
async def models(t: Target) -> None:
    check(t.model in [m.id for m in (await t.client.models.list()).data], "the served model is not listed")


@probe
async def lc_invoke(t: Target) -> None:
    message = await asyncio.to_thread(t.chat_model(max_tokens=16).invoke, "Name a scheduler.")
    check(isinstance(message.content, str) and message.content, "no text")


@probe
async def lc_ainvoke(t: Target) -> None:
    message = await t.chat_model(max_tokens=16).ainvoke("Name a scheduler.")
    check(isinstance(message.content, str) and message.content, "no text")


@probe
async def lc_stream(t: Target) -> None:
    chunks = await asyncio.to_thread(lambda: list(t.chat_model(max_tokens=16).stream("Name a scheduler.")))
    check("".join(str(c.content) for c in chunks), "no text streamed")


@probe
async def lc_astream(t: Target) -> None:
    chunks = [c async for c in t.chat_model(max_tokens=16).astream("Name a scheduler.")]
    check("".join(str(c.content) for c in chunks), "no text streamed")


@probe
async def lc_batch(t: Target) -> None:
    replies = await asyncio.to_thread(t.chat_model(max_tokens=8).batch, ["Name a scheduler.", "Name a policy."])
    check(len(replies) == 2 and all(r.content for r in replies), "not two replies with text")


@probe
async def lc_bind_tools(t: Target) -> None:
    model = t.chat_model(max_tokens=JSON_TOKENS).bind_tools([lookup_population, calculate], tool_choice="any")
    message = await model.ainvoke(QUESTION[0]["content"])
    check(message.tool_calls and {c["name"] for c in message.tool_calls} <= TOOL_NAMES, "no call of a bound tool")


async def structured(t: Target, method: str, prompt: str = JSON_QUESTION[0]["content"]) -> None:
    model = t.chat_model(max_tokens=JSON_TOKENS).with_structured_output(Verdict, method=method)
    check(isinstance(await model.ainvoke(prompt), Verdict), "not a Verdict")


@probe
async def lc_structured_function_calling(t: Target) -> None:
    await structured(t, "function_calling")


@probe
async def lc_structured_json_mode(t: Target) -> None:
    # JSON mode sends no schema: LangChain leaves it to the prompt, as here.
    await structured(t, "json_mode", f"{JSON_QUESTION[0]['content']} Use this JSON schema:\n```json\n"
                                     f"{json.dumps(Verdict.model_json_schema())}\n```")


@probe
async def lc_structured_json_schema(t: Target) -> None:
    await structured(t, "json_schema")


@probe
async def lc_usage_metadata(t: Target) -> None:
    message = await t.chat_model(max_tokens=16).ainvoke("Name a scheduler.")
    check(message.usage_metadata and message.usage_metadata["output_tokens"] >= 1, "no usage metadata")
    last = None
    async for chunk in t.chat_model(max_tokens=16).astream("Name a scheduler."):
        last = chunk if last is None else last + chunk
    check(last is not None and last.usage_metadata and last.usage_metadata["output_tokens"] >= 1,
          "no usage metadata when streaming")


# --- outcomes and the table -----------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    """A failure as the table writes it: an HTTP error as its status and the server's message,
    anything else as its type and text; one line, at most :data:`CELL_CHARS` characters."""
    if isinstance(exc, openai.APIStatusError):
        message = exc.body.get("message") if isinstance(exc.body, dict) else None
        text = f"{exc.status_code} {message or exc.response.text or exc.message}"
    elif isinstance(exc, Unmet):
        text = f"unmet: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS - 1] + "…"


async def outcome(target: Target, name: str) -> str:
    """``✓``, or the failure as the table writes it."""
    try:
        await PROBES[name](target)
    except Exception as exc:  # every failure is an outcome to compare with the table
        return describe(exc)
    return OK


def matches(observed: str, expected: str) -> bool:
    return observed == expected or (expected.endswith("…") and observed.startswith(expected[:-1]))


@dataclass(frozen=True)
class Row:
    feature: str
    probe: str
    cells: dict[str, str]


def _split(line: str) -> list[str]:
    """A markdown table line's cells (``\\|`` is a ``|`` inside a cell)."""
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def read_table(path: Path = TABLE) -> list[Row]:
    """The rows of the table whose header begins ``| feature | probe |``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| feature | probe |"))
    header = _split(lines[start])
    assert header[2:] == ["simulated", "vLLM in-process", "vllm serve"], header
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        feature, name, *cells = _split(line)
        rows.append(Row(feature, name.strip("`"), dict(zip(COLUMNS, map(_read_cell, cells), strict=True))))
    return rows


def render_cell(text: str) -> str:
    """An outcome as a table cell: ✓, or the error as inline code (in double backticks if it holds one)."""
    if text == OK:
        return OK
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _read_cell(cell: str) -> str:
    return cell.strip("`").strip()


# --- the engines ----------------------------------------------------------------------------------

Opener = Callable[[], AbstractAsyncContextManager[Target]]


@contextmanager
def column_engine(column: str) -> Iterator[Opener]:
    """The engine of ``column``, started once; yields how to open a :class:`Target` on it."""
    if column == "simulated":
        yield lambda: _jit_client(JITClient(time_scale=0.01))
        return
    pytest.importorskip("vllm")
    if column == "vllm":
        from jitagent_vllm import VLLMEngine, VLLMEngineConfig

        with VLLMEngine(VLLMEngineConfig(max_model_len=4096)) as engine:
            yield lambda: _jit_client(JITClient(engine=engine))
        return
    from jitagent_vllm.serve import running_server

    with running_server(TINY, policy="jit") as url:
        yield lambda: _jit_client(JITClient(base_url=url, model=TINY))


@asynccontextmanager
async def _jit_client(client: JITClient) -> AsyncIterator[Target]:
    try:
        yield Target(client.with_options(max_retries=0), client.served_model,
                     lambda **kw: client.chat_model(**{"max_retries": 0, "seed": SEED, **kw}))
    finally:
        await client.close()


# --- the test -------------------------------------------------------------------------------------

ROWS = read_table()


@pytest.fixture(scope="module", params=COLUMNS)
def column(request: pytest.FixtureRequest) -> Iterator[tuple[str, Opener]]:
    with column_engine(request.param) as opener:
        yield request.param, opener


def test_every_probe_has_one_row_and_every_row_a_probe() -> None:
    names = [row.probe for row in ROWS]
    assert sorted(names) == sorted(PROBES) and len(set(names)) == len(names)


@pytest.mark.parametrize("row", ROWS, ids=[row.probe for row in ROWS])
async def test_the_table_is_true(column: tuple[str, Opener], row: Row) -> None:
    name, opener = column
    async with opener() as target:
        observed = await outcome(target, row.probe)
    expected = row.cells[name]
    assert matches(observed, expected), f"{row.feature} on {name}: the table says {expected!r}, got {observed!r}"


# --- printing the table as observed ---------------------------------------------------------------


def observe(columns: list[str]) -> dict[str, dict[str, str]]:
    """Every probe's outcome on each of ``columns`` (each probe in an event loop of its own, as in the test)."""
    seen: dict[str, dict[str, str]] = {}
    for name in columns:
        with column_engine(name) as opener:
            for probe_name in PROBES:
                seen.setdefault(probe_name, {})[name] = asyncio.run(_observe_one(opener, probe_name))
    return seen


async def _observe_one(opener: Opener, probe_name: str) -> str:
    async with opener() as target:
        return await outcome(target, probe_name)


def main(columns: list[str]) -> None:
    seen = observe(columns)
    cells = {row.probe: row.cells for row in ROWS}
    print("| feature | probe | simulated | vLLM in-process | vllm serve |\n| --- | --- | --- | --- | --- |")
    for row in ROWS:
        shown = [render_cell(seen[row.probe].get(c, cells[row.probe][c])) for c in COLUMNS]
        print(f"| {row.feature} | `{row.probe}` | " + " | ".join(shown) + " |")
    for c in columns:
        print(f"{c}: {sum(seen[p][c] == OK for p in seen)} of {len(seen)} work", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:] or list(COLUMNS))
