"""The tiny model's tokenizer: rebuilt by its script byte for byte, and a real tokenizer whose chat
template carries tools, tool calls and tool results (no engine: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

from jitagent_vllm.models import TINY_MODEL, has_tokenizer, resolve_model  # noqa: E402
from jitagent_vllm.models import tiny_tokenizer  # noqa: E402

FOLDER = Path(resolve_model(TINY_MODEL))
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_the_shipped_files_are_what_the_script_builds(tmp_path: Path) -> None:
    tiny_tokenizer.write(tmp_path)
    for name in tiny_tokenizer.FILES:
        assert (tmp_path / name).read_bytes() == (FOLDER / name).read_bytes(), f"{name} differs: rebuild it"
    assert has_tokenizer(str(FOLDER))


def test_every_id_of_the_model_decodes_and_the_chat_template_carries_tools() -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(FOLDER)
    config = json.loads((FOLDER / "config.json").read_text())
    assert len(tokenizer) == config["vocab_size"] and tokenizer.eos_token_id == config["eos_token_id"]
    assert all(tokenizer.decode([i]) for i in range(len(tiny_tokenizer.SPECIAL_TOKENS), len(tokenizer), 97))
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    text = tokenizer.apply_chat_template(messages, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nBe terse.\n\n# Tools")
    assert json.dumps(TOOLS[0]["function"]) in text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(tokenizer.encode(text)) == text   # byte-level: any text round-trips
