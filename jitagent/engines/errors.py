"""Errors an engine raises to its callers, whatever the engine."""

from __future__ import annotations

__all__ = ["EngineDeadError"]


class EngineDeadError(RuntimeError):
    """The engine is gone (its process died, or it was closed): calls in flight fail with this,
    and so does every later call; a new engine is needed."""
