"""The parts of vLLM that jitagent reaches and vLLM does not publish as API, in one place: a vLLM
release that changes one of them breaks this module only."""

from __future__ import annotations

from typing import Any

__all__ = ["stop_output_handler", "served_model_config"]


def stop_output_handler(llm: Any) -> None:
    """Cancel the task of an ``AsyncLLM`` that reads the engine process's outputs (its
    ``output_handler``, started with the first request), if it has one."""
    handler = getattr(llm, "output_handler", None)
    if handler is not None:
        handler.cancel()


def served_model_config(scope: Any) -> Any:
    """The ``ModelConfig`` of the model that ``vllm serve``'s app serves, from an ASGI request's
    scope (vLLM keeps its config in the app's state)."""
    return scope["app"].state.vllm_config.model_config
