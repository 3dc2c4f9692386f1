"""The parts of vLLM that jitagent reaches and vLLM does not publish as API, in one place: a vLLM
release that changes one of them breaks this module only."""

from __future__ import annotations

from typing import Any

__all__ = ["stop_output_handler"]


def stop_output_handler(llm: Any) -> None:
    """Cancel the task of an ``AsyncLLM`` that reads the engine process's outputs (its
    ``output_handler``, started with the first request), if it has one."""
    handler = getattr(llm, "output_handler", None)
    if handler is not None:
        handler.cancel()
