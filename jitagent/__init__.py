"""jitagent: SLO-aware LLM serving middleware.

The core (SLOs, policies, engines, benchmarks) needs no heavy framework; ``JITClient`` and
``slo_scope`` need the ``client`` extra (``pip install 'jitagent-core[client]'``: openai, httpx2) and
are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jitagent._version import __version__
from jitagent.slo import SLO, DeadlineSLO, InfeasibleSLOError, PipelineSLO, StreamSLO, parse_slo

if TYPE_CHECKING:
    from jitagent.client import JITClient, slo_scope

__all__ = ["SLO", "StreamSLO", "DeadlineSLO", "PipelineSLO", "parse_slo", "InfeasibleSLOError", "JITClient",
           "slo_scope"]

_CLIENT_EXPORTS = ("JITClient", "slo_scope")


def __getattr__(name: str) -> Any:
    if name in _CLIENT_EXPORTS:  # the OpenAI client is an optional dependency (its error names the extra)
        import jitagent.client

        return getattr(jitagent.client, name)
    raise AttributeError(f"module 'jitagent' has no attribute {name!r}")
