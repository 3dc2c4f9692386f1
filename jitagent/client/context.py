"""The ambient SLO and pipeline of LLM calls: a context variable that a ``with`` block sets.

A framework (``jit_slo`` wrapping a LangGraph graph, or the application itself) sets the scope
around code that calls the model; every :class:`~jitagent.client.JITClient` call made inside it,
in this task or in tasks it starts, carries that SLO and pipeline unless the call names its own.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO, parse_slo

__all__ = ["CallScope", "slo_scope", "current_scope"]


@dataclass(frozen=True, slots=True)
class CallScope:
    """The SLO and pipeline that calls inherit; ``None`` fields inherit nothing."""

    slo: SLO | None = None
    pipeline: PipelineContext | None = None


_SCOPE: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("jitagent_call_scope", default=None)


@contextmanager
def slo_scope(slo: SLO | dict[str, Any] | str | None = None, *,
              pipeline: PipelineContext | None = None) -> Iterator[CallScope]:
    """Give every model call made inside the block this SLO and/or pipeline.

    Scopes nest: a field left ``None`` keeps the enclosing scope's value. The SLO is validated on
    entry (``ValueError`` naming the problem), so a bad SLO fails where it was written.
    """
    outer = _SCOPE.get() or CallScope()
    scope = CallScope(parse_slo(slo) if slo is not None else outer.slo,
                      pipeline if pipeline is not None else outer.pipeline)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def current_scope() -> CallScope | None:
    """The innermost active scope, or ``None`` outside every ``slo_scope`` block."""
    return _SCOPE.get()
