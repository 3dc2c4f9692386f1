"""One real vLLM engine (tiny-random-llama on the CPU, the JIT policy) shared by the tests that need
one: starting it takes tens of seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def vllm_engine() -> Iterator[object]:
    pytest.importorskip("vllm")
    from jitagent_vllm import VLLMEngine, VLLMEngineConfig

    with VLLMEngine(VLLMEngineConfig(max_model_len=4096)) as engine:
        yield engine
