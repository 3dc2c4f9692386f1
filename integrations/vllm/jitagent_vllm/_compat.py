"""The parts of vLLM that jitagent reaches and vLLM does not publish as API, in one place: a vLLM
release that changes one of them breaks this module only.

* ``Scheduler._preempt_request(request, timestamp)``: vLLM's own preemption (blocks freed, the
  request recomputed later), for a policy's preemptions (:func:`preempt`).
* ``AsyncLLM.output_handler``: the task reading the engine process's outputs (:func:`stop_output_handler`).
* ``app.state.vllm_config``: where ``vllm serve``'s app keeps its config (:func:`served_model_config`).
"""

from __future__ import annotations

from typing import Any

from vllm.v1.core.sched.scheduler import Scheduler

__all__ = ["preempt", "stop_output_handler", "served_model_config", "PRIVATE_APIS"]

# Every private name that can be imported, as "module:attribute.path", for the test that imports each
# (the others are attributes of live objects, met by the tests that run them).
PRIVATE_APIS = ("vllm.v1.core.sched.scheduler:Scheduler._preempt_request",)
# Checked at import, so that a release without it fails here, naming it, not in a running engine.
_PREEMPT = Scheduler._preempt_request


def preempt(scheduler: Scheduler, request: Any, now: float) -> None:
    """Preempt a running ``request`` (already out of ``scheduler.running``) as vLLM does."""
    _PREEMPT(scheduler, request, now)


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
