"""Built-in model names: models that ship with jitagent-vllm, so the real engine runs with no download.

``tiny-random-llama`` is a Llama architecture (2 layers, hidden 256, 4 heads, 2 KV heads, vocabulary
32,000, 32,768 positions) with only a ``config.json``: vLLM loads it with random weights
(``load_format="dummy"``) and no tokenizer. It produces nonsense quickly, on any CPU, through every
part of a real vLLM engine: batching, chunked prefill, KV blocks, preemption, streaming.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["BUILTIN_MODELS", "TINY_MODEL", "resolve_model", "has_weights"]

TINY_MODEL = "tiny-random-llama"
BUILTIN_MODELS = (TINY_MODEL,)


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
