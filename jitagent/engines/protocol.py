"""``Engine``: what jitagent needs from an engine, whatever runs the model.

The simulated engine (:class:`~jitagent.engines.sim.SimEngine`), the vLLM engine
(``jitagent_vllm.VLLMEngine``) and the engines to come (a remote server, replicas behind a router)
implement it; ``JITClient``, the live benchmark (:func:`jitagent.bench.live.serve_live`) and the
soak are written against it and nothing else. An add-on makes its engine known to the core by an
entry point (:mod:`jitagent.plugins`): ``JITClient(engine="vllm")`` finds it there.

An engine serves *requests of known lengths*: a prompt of ``prompt_len`` tokens whose answer ends
after ``output_len`` tokens (capped by ``max_tokens``). The benchmarks know both, as the simulated
model does; an engine running a real model makes a prompt of that many tokens and stops the answer
there (vLLM: random token ids, ``ignore_eos``), telling its scheduler only ``max_tokens``, so a
policy never knows more than it would in service. Serving text (prompts, chat templates, the
answer's words) is the OpenAI layer's business: an engine's plugin provides a
:class:`~jitagent.client.backend.Backend` for that.

Contract, for every engine:

* ``generate`` raises :class:`ValueError` at once for a request the engine can never serve (the
  same checks as :meth:`Engine.validate`), yields one item per output token as it is delivered,
  and raises :class:`~jitagent.slo.InfeasibleSLOError` when the policy refuses the request (it
  cannot meet its SLO). Closing the iterator, or cancelling the task that reads it, aborts the
  request in the engine.
* ``close``/``aclose`` fail every call in flight with
  :class:`~jitagent.engines.errors.EngineDeadError` and free what the engine holds; they are safe to
  call twice and from any thread (``close``) or loop (``aclose``).
* ``now`` is the clock that pipeline contexts' absolute deadlines and token times are read on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO

__all__ = ["Engine"]


@runtime_checkable
class Engine(Protocol):
    """An engine: requests in, tokens out as they are made, scheduled by a jitagent policy."""

    @property
    def model_name(self) -> str:
        """The model it serves (what ``models.list()`` shows)."""
        ...

    @property
    def max_model_len(self) -> int:
        """The most prompt plus output tokens one request may have."""
        ...

    @property
    def policy_name(self) -> str:
        """The scheduling policy it runs (``jit``, ``fcfs``, ...), for records and spans."""
        ...

    def now(self) -> float:
        """The engine's clock, in seconds."""
        ...

    def validate(self, prompt_tokens: int, max_tokens: int) -> None:
        """Raise ``ValueError`` naming the problem unless a request of this size can ever run here."""
        ...

    def generate(self, prompt_len: int, max_tokens: int, output_len: int, *, slo: SLO | None = None,
                 request_class: str = "default", pipeline: PipelineContext | None = None,
                 request_id: str | None = None) -> AsyncIterator[Any]:
        """Serve a request of ``prompt_len`` tokens whose answer is ``output_len`` tokens (capped by
        ``max_tokens``, all its policy is told): one item per output token, as it is delivered."""
        ...

    async def wait_idle(self) -> None:
        """Return once nothing is in flight."""
        ...

    async def aclose(self) -> None:
        """Fail what is in flight (:class:`~jitagent.engines.errors.EngineDeadError`) and stop."""
        ...

    def close(self) -> None:
        """:meth:`aclose` for synchronous code."""
        ...
