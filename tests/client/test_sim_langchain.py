"""LangChain's ``ChatOpenAI`` (``JITClient.chat_model()``) on the simulated engine: ``bind_tools``
(async, streamed, sync) and ``with_structured_output`` by each of its three methods. Costs about 3 s.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pydantic
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.tools import tool

from jitagent.client import JITClient
from jitagent.engines.sim import SimConfig, SimEngine


@tool
def get_weather(city: str, unit: Literal["c", "f"]) -> str:
    """The weather in a city."""
    return f"18 {unit} in {city}"


@tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


class Forecast(pydantic.BaseModel):
    """A structured answer."""

    city: str = pydantic.Field(max_length=40)
    degrees: float = pydantic.Field(ge=-50, le=50)
    sunny: bool


@pytest.fixture
def client() -> Any:
    client = JITClient(engine=SimEngine(SimConfig(), time_scale=0.0), max_retries=0)
    yield client
    asyncio.run(client.close())


def check_tool_calls(message: Any) -> None:
    """Calls LangChain parsed (none it could not), each valid for its tool's own argument schema."""
    assert message.tool_calls and not message.invalid_tool_calls
    tools = {"get_weather": get_weather, "add": add}
    for call in message.tool_calls:
        tools[call["name"]].args_schema.model_validate(call["args"])


async def test_bind_tools_invoke_and_stream(client: JITClient) -> None:
    llm = client.chat_model().bind_tools([get_weather, add], tool_choice="any")
    check_tool_calls(await llm.ainvoke("What is the weather in Paris?"))
    merged: AIMessageChunk | None = None
    async for chunk in llm.astream("What is the weather in Paris?"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    check_tool_calls(merged)
    assert merged.response_metadata["finish_reason"] == "tool_calls" and merged.usage_metadata["output_tokens"] > 0
    named = client.chat_model().bind_tools([get_weather, add], tool_choice="add")
    reply = await asyncio.to_thread(named.invoke, "Add two and two.")   # the sync face
    check_tool_calls(reply)
    assert {call["name"] for call in reply.tool_calls} == {"add"}


@pytest.mark.parametrize("method", ["function_calling", "json_mode", "json_schema"])
async def test_with_structured_output(client: JITClient, method: str) -> None:
    """Each method gives a ``Forecast``. JSON mode names no schema in the request: the prompt carries
    it, as LangChain's format instructions write it (which the simulated model follows)."""
    llm = client.chat_model().with_structured_output(Forecast, method=method, include_raw=True)
    prompt = "Give the forecast for Paris."
    if method == "json_mode":
        prompt += "\n" + PydanticOutputParser(pydantic_object=Forecast).get_format_instructions()
    for seed in range(3):
        result = await llm.ainvoke(prompt, seed=seed)
        assert result["parsing_error"] is None and isinstance(result["parsed"], Forecast)
