"""The OpenAI-compatible client: swap ``openai.AsyncOpenAI(...)`` for ``JITClient(...)``.

Needs the ``client`` extra (``pip install 'jitagent-core[client]'``): openai 3.x (over httpx2), and
langchain-openai for :meth:`JITClient.chat_model`. Without it, importing this package fails with a
``ModuleNotFoundError`` that names the extra.

Usage (inside async code)::

    client = JITClient(slo={"kind": "stream", "ttft_s": 1.0, "tpot_s": 0.05})   # the default SLO
    with slo_scope({"kind": "deadline", "deadline_s": 10}):                      # the ambient SLO
        reply = await client.chat.completions.create(model=client.served_model, messages=[...])
    await client.chat.completions.create(..., extra_body={"slo": {...}})         # the call's own SLO
    llm = client.chat_model()                                                    # LangChain ChatOpenAI
    await client.close()

``slo_scope`` is exported under that name because ``jitagent.slo`` is already the SLO module.
"""

from jitagent._version import DISTRIBUTION

_EXTRA = ("openai", "httpx2", "langchain_openai", "langchain_core", "jsonschema")   # what the client extra installs

try:
    from jitagent.client.client import JITClient, SyncJITClient
except ModuleNotFoundError as exc:
    if (exc.name or "").partition(".")[0] not in _EXTRA:
        raise
    raise ModuleNotFoundError(f"JITClient needs the 'client' extra ({exc.name} is missing): "
                              f"pip install '{DISTRIBUTION}[client]'", name=exc.name) from None
from jitagent.client.context import CallScope, current_scope, slo_scope
from jitagent.client.simulated_turn import SimToolSettings

__all__ = ["JITClient", "SyncJITClient", "slo_scope", "current_scope", "CallScope", "SimToolSettings"]
