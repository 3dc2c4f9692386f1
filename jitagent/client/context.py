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

__all__ = ["CallScope", "slo_scope", "current_scope", "check_pipeline"]


@dataclass(frozen=True, slots=True)
class CallScope:
    """The SLO, pipeline and request class that calls inherit; ``None`` fields inherit nothing.

    The request class names the kind of call (a graph node, an endpoint): the scheduler learns
    output lengths per class, so calls of one kind inform the estimates of the next.
    """

    slo: SLO | None = None
    pipeline: PipelineContext | None = None
    request_class: str | None = None


_SCOPE: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("jitagent_call_scope", default=None)


@contextmanager
def slo_scope(slo: SLO | dict[str, Any] | str | None = None, *, pipeline: PipelineContext | None = None,
              request_class: str | None = None) -> Iterator[CallScope]:
    """Give every model call made inside the block this SLO, pipeline and/or request class.

    Scopes nest: a field left ``None`` keeps the enclosing scope's value. Values are validated on
    entry (``ValueError`` naming the problem), so a mistake fails where it was written.
    """
    if request_class is not None and (not isinstance(request_class, str) or not request_class):
        raise ValueError(f"request_class must be a non-empty string, got {request_class!r}")
    check_pipeline(pipeline)
    outer = _SCOPE.get() or CallScope()
    scope = CallScope(parse_slo(slo) if slo is not None else outer.slo,
                      pipeline if pipeline is not None else outer.pipeline,
                      request_class if request_class is not None else outer.request_class)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def check_pipeline(pipeline: Any) -> None:
    """TypeError unless ``pipeline`` is ``None`` or a :class:`PipelineContext` (which checks its fields)."""
    if pipeline is not None and not isinstance(pipeline, PipelineContext):
        raise TypeError(f"pipeline must be a PipelineContext, got {type(pipeline).__name__}: {pipeline!r:.80}")


def current_scope() -> CallScope | None:
    """The innermost active scope, or ``None`` outside every ``slo_scope`` block."""
    return _SCOPE.get()
