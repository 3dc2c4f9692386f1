"""Built-in model names: models that ship with jitagent-vllm, so the real engine runs with no download.

``tiny-random-llama`` is a Llama architecture (2 layers, hidden 256, 4 heads, 2 KV heads, vocabulary
32,000, 32,768 positions) with a ``config.json`` and a small tokenizer (built by
:mod:`jitagent_vllm.models.tiny_tokenizer`, with a Hermes-style chat template that calls tools), and
no weights: vLLM loads it with random ones (``load_format="dummy"``). It produces nonsense quickly,
on any CPU, through every part of a real vLLM engine and its OpenAI server: batching, chunked
prefill, KV blocks, preemption, streaming, chat templates, tool calls and structured outputs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["BUILTIN_MODELS", "TINY_MODEL", "resolve_model", "has_weights", "has_tokenizer", "openai_server_flags"]

TINY_MODEL = "tiny-random-llama"
BUILTIN_MODELS = (TINY_MODEL,)
#: The vLLM tool-call parser each built-in model's chat template is written for.
_TOOL_PARSERS = {TINY_MODEL: "hermes"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def resolve_model(name_or_path: str) -> str:
    """The directory (or hub name) vLLM should load for ``name_or_path``: a built-in name's packaged
    folder, else ``name_or_path`` unchanged."""
    if name_or_path in BUILTIN_MODELS:
        return str(resources.files(__package__).joinpath(name_or_path))
    return name_or_path


def has_weights(model_dir: str) -> bool:
    """Whether a local model folder holds weights (else it can only run with random ones)."""
    path = Path(model_dir)
    if not path.is_dir():
        return True  # a hub name: vLLM fetches its weights
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin")) or any(path.glob("*.pt"))


def has_tokenizer(model_dir: str) -> bool:
    """Whether a local model folder holds a tokenizer (else vLLM must run without one:
    ``skip_tokenizer_init``, prompts as token ids)."""
    path = Path(model_dir)
    return not path.is_dir() or any((path / name).is_file() for name in _TOKENIZER_FILES)


def openai_server_flags(name_or_path: str) -> tuple[str, ...]:
    """The flags of vLLM's OpenAI server (``vllm serve``) that a built-in model needs beyond its
    path: automatic tool choice with the tool parser its chat template is written for, and tool
    arguments held to their schema (``--tool-strict-level parameter``: as if every tool were
    ``strict``; a model with random weights makes nothing valid by itself). Other models need what
    their own documentation says (``VLLMEngineConfig.server_args``)."""
    parser = _TOOL_PARSERS.get(name_or_path)
    if parser is None:
        return ()
    return "--enable-auto-tool-choice", "--tool-call-parser", parser, "--tool-strict-level", "parameter"
