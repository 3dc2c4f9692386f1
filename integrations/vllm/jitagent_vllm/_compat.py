"""The parts of vLLM that jitagent reaches and vLLM does not publish as API, in one place: a vLLM
release that changes one of them breaks this module only.

* ``Scheduler._preempt_request(request, timestamp)``: vLLM's own preemption (blocks freed, the
  request recomputed later), for a policy's preemptions (:func:`preempt`).
* ``AsyncLLM.output_handler``: the task reading the engine process's outputs (:func:`stop_output_handler`).
* ``AsyncLLM.output_processor.request_states``: the requests in flight, by internal id
  (:func:`unfinished_request_ids`).
* ``app.state.vllm_config``: where ``vllm serve``'s app keeps its config (:func:`served_model_config`).
* ``vllm.entrypoints.launchers``: how ``vllm serve`` parses its flags and builds its app
  (:func:`serve_args`, :func:`openai_app`), imported when called (they import the whole server).
"""

from __future__ import annotations

from typing import Any

from vllm.v1.core.sched.scheduler import Scheduler

__all__ = ["preempt", "stop_output_handler", "unfinished_request_ids", "served_model_config", "serve_args",
           "openai_app", "PRIVATE_APIS"]

# Every private name that can be imported, as "module:attribute.path", for the test that imports each
# (the others are attributes of live objects, met by the tests that run them).
PRIVATE_APIS = ("vllm.v1.core.sched.scheduler:Scheduler._preempt_request",
                "vllm.entrypoints.launchers.cli_args:make_arg_parser",
                "vllm.entrypoints.launchers.cli_args:validate_parsed_serve_args",
                "vllm.entrypoints.launchers.app:build_app",
                "vllm.entrypoints.launchers.api_server.app_state:init_app_state")
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


def unfinished_request_ids(llm: Any) -> list[str]:
    """The internal ids of every request an ``AsyncLLM`` is serving (``abort(ids, internal=True)``
    ends them), whoever made them: ``generate`` callers and vLLM's OpenAI server alike."""
    return list(llm.output_processor.request_states)


def served_model_config(scope: Any) -> Any:
    """The ``ModelConfig`` of the model that ``vllm serve``'s app serves, from an ASGI request's
    scope (vLLM keeps its config in the app's state)."""
    return scope["app"].state.vllm_config.model_config


def serve_args(argv: list[str]) -> Any:
    """``vllm serve``'s settings from its command-line flags, parsed and checked by vLLM itself (so
    that every default is ``vllm serve``'s)."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    args = make_arg_parser(FlexibleArgumentParser(prog="jitagent")).parse_args(argv)
    validate_parsed_serve_args(args)
    return args


async def openai_app(engine_client: Any, args: Any) -> Any:
    """``vllm serve``'s ASGI app (its OpenAI server, middleware included) over ``engine_client``,
    built as ``vllm serve`` builds it; on the engine client's event loop."""
    from vllm.entrypoints.launchers.api_server.app_state import init_app_state
    from vllm.entrypoints.launchers.app import build_app

    tasks = await engine_client.get_supported_tasks()
    app = build_app(args, tasks, engine_client.model_config)
    await init_app_state(engine_client, app.state, args, tasks)
    # vLLM's handler of engine errors tells the HTTP server behind the app to exit if the engine
    # died (``terminate_if_errored(server=app.state.server, ...)``); in-process there is none (a dead
    # engine is a 503 here), and without the attribute a request's engine error became a 500.
    app.state.server = _NoHTTPServer()
    return app


class _NoHTTPServer:
    """Stands in for the uvicorn server ``vllm serve`` keeps in ``app.state.server``."""

    should_exit = False
