"""Builds the tokenizer of ``tiny-random-llama``: ``python -m jitagent_vllm.models.tiny_tokenizer``.

The tiny model has random weights, so its tokenizer only has to be a real one: vLLM's chat
templates, tool parsers and structured outputs (which mask the model's logits to the tokens a
grammar allows) need text to map to token ids and back. This one is a byte-level BPE (GPT-2's
scheme: any text encodes, every token decodes) whose merges are learnt from the short fixed text
below, so that chat markup, JSON and English take a few bytes a token. The model may sample any
id of its 32,000: the ids past the learnt ones are filler tokens of two or three letters and
digits, so that every token the model makes decodes to visible text (as the byte-level fallback
of the engine without a tokenizer did), never to nothing.

The chat template (``chat_template.jinja``) is Hermes-style (vLLM's ``hermes`` tool parser):
tools go to the system turn inside ``<tools>``; the assistant calls one as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; tool results come back as a user
turn of ``<tool_response>`` blocks. A turn ends with ``<|im_end|>``, the end-of-sequence token
(id 2, the config's ``eos_token_id``).

The output is deterministic: running this again writes the same bytes (a test checks it).
"""

from __future__ import annotations

import itertools
import json
import string
import sys
from pathlib import Path

__all__ = ["VOCAB_SIZE", "LEARNT_VOCAB_SIZE", "SPECIAL_TOKENS", "MARKUP_TOKENS", "build", "write"]

VOCAB_SIZE = 32_000          # the model's (config.json): every id the model can sample is a token
LEARNT_VOCAB_SIZE = 1_024    # bytes, specials, markup and learnt merges; fillers after
SPECIAL_TOKENS = ("<unk>", "<s>", "<|im_end|>", "<|im_start|>")   # ids 0-3; bos 1, eos 2 as in config.json
MARKUP_TOKENS = (  # ids 4-9, decoded as text (the tool parser reads them)
    "<tools>", "</tools>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")

CHAT_TEMPLATE = """\
{%- macro text(content) -%}
{%- if content is string -%}{{ content }}
{%- elif content -%}{%- for part in content -%}{{ part.text if part.text is defined else '' }}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- set system = messages[0] if messages and messages[0].role in ('system', 'developer') else none -%}
{%- if tools -%}
<|im_start|>system
{% if system %}{{ text(system.content) }}

{% endif -%}
# Tools

You may call one or more functions. Their signatures are within <tools></tools>:
<tools>
{% for tool in tools %}{{ (tool.function if tool.function is defined else tool) | tojson }}
{% endfor -%}
</tools>
To call a function, answer with a JSON object of its name and arguments within <tool_call></tool_call>:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif system -%}
<|im_start|>system
{{ text(system.content) }}<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if message is not sameas system -%}
{%- if message.role == 'tool' -%}
{%- if loop.first or loop.previtem.role != 'tool' %}<|im_start|>user
{% endif -%}
<tool_response>
{{ text(message.content) }}
</tool_response>
{% if loop.last or loop.nextitem.role != 'tool' %}<|im_end|>
{% endif -%}
{%- else -%}
<|im_start|>{{ message.role }}
{{ text(message.content) }}
{%- for call in message.tool_calls or [] %}
{%- set call = call.function if call.function is defined else call %}
<tool_call>
{"name": {{ call.name | tojson }}, "arguments": {{ call.arguments if call.arguments is string else call.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% endif -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif -%}
"""

# What the merges are learnt from: chat markup, JSON and plain English, as an agent's prompts hold.
_TEXT = """\
You are a helpful assistant. Answer the question in one short sentence, then stop.
The scheduler serves each request within its deadline: a stream must start within a second and keep
pace with the reader; a tool call must return its whole answer before the tool times out.
What is the weather in Paris today? It is sunny and warm, with a light wind from the west.
Search the web for the latest results, read the three best pages and write a summary of them.
The function returns a list of numbers; call it again with the next page until it returns none.
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": 3}}
{"type": "object", "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
 "required": ["answer"], "additionalProperties": false}
{"title": "Report", "items": [1, 2, 3], "done": true, "score": 0.5, "tags": ["a", "b"], "note": null}
"""


def _corpus() -> list[str]:
    lines = _TEXT.splitlines() + CHAT_TEMPLATE.splitlines()
    return lines * 4   # repeated so that the pairs they share are merged first


def build() -> tuple[str, str]:
    """The tokenizer (``tokenizer.json``'s text) and ``tokenizer_config.json``'s text."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # The trainer gives its "special tokens" the first ids, in the model's vocabulary: the markup is
    # there too, so that its ids are fixed (ids 4-9) rather than appended after the fillers.
    trainer = trainers.BpeTrainer(vocab_size=LEARNT_VOCAB_SIZE, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[*SPECIAL_TOKENS, *MARKUP_TOKENS])
    tokenizer.train_from_iterator(_corpus(), trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP_TOKENS])
    data = json.loads(tokenizer.to_str())
    _fill(data["model"]["vocab"], data["added_tokens"])
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "<|im_end|>",
              "unk_token": "<unk>", "pad_token": "<|im_end|>", "add_bos_token": False, "add_eos_token": False,
              "clean_up_tokenization_spaces": False, "model_max_length": 32768}
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n",
            json.dumps(config, indent=2, sort_keys=True) + "\n")


def _fill(vocab: dict[str, int], added: list[dict[str, object]]) -> None:
    """Give every id up to :data:`VOCAB_SIZE` a token: the shortest strings of letters and digits
    not taken yet (a BPE model never produces them: no merge makes them; they only decode)."""
    taken = set(vocab) | {str(t["content"]) for t in added}
    next_id = max([*vocab.values(), *(int(t["id"]) for t in added)]) + 1   # type: ignore[call-overload]
    alphabet = string.ascii_letters + string.digits
    words = ("".join(chars) for n in (2, 3) for chars in itertools.product(alphabet, repeat=n))
    for word in words:
        if next_id >= VOCAB_SIZE:
            return
        if word not in taken:
            vocab[word] = next_id
            next_id += 1


def write(folder: Path) -> None:
    """Write the tokenizer's files into ``folder`` (beside the model's ``config.json``)."""
    tokenizer_json, config_json = build()
    (folder / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(config_json, encoding="utf-8")
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("tiny-random-llama")
    write(target)
    print(f"wrote {', '.join(FILES)} to {target}")
