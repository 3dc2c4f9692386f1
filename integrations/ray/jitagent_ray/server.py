"""The app's OpenAI API on the caller's side: a request in, a replica's answer out.

:class:`ReplicasServer` is a :class:`~jitagent.client.transport.Server`, as jitagent's in-process
servers are, so the HTTP ingress
(:mod:`jitagent_ray.ingress`) and a Python caller (:func:`connect`: the OpenAI client over jitagent's
in-process transport, no HTTP) reach the replicas the same way. It takes jitagent's scheduling
fields out of the body (``slo``, ``request_class``, and those of ``vllm_xargs``, the wire format of
:mod:`jitagent.scheduling.request_args`), fills what they leave open from the caller's
``slo_scope``, and sends the call through the deployment handle, whose request router (Ray Serve's,
or :class:`jitagent_ray.router.SLORouter`) chooses the replica. Validating the rest of the request is
the replica's server's business.

A replica that dies under a call fails it at once with 503 ``engine_dead`` (an ``error`` event if
its stream had begun): Ray tells the caller's side as soon as the replica's process is gone.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import httpx2
import openai
from opentelemetry import propagate
from opentelemetry.context import Context
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from jitagent.client import CallScope
from jitagent.client.handlers import MAX_BODY_BYTES, APIErrorReply, JSONReply
from jitagent.client.text import BYTES_PER_TOKEN
from jitagent.client.transport import InProcessTransport, LoopHost, StreamedReply
from jitagent.scheduling.request_args import encode_request_args, parse_request_args
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import parse_slo
from jitagent_ray.calls import ReplicaCall, ReplyHead
from jitagent_ray.replica import REPLICAS_DEPLOYMENT

__all__ = ["ReplicasServer", "connect", "REPLICA_GONE"]

logger = logging.getLogger(__name__)

# What Ray raises on the caller's side when the replica serving a call is gone or unreachable.
REPLICA_GONE = (ActorDiedError, ActorUnavailableError, RayActorError)
# The scheduling fields of vllm_xargs this side reads (the rest stay in the body, for vLLM replicas).
_XARGS_READ = ("slo", "request_class", "run_id", "stage", "run_deadline_s", "stage_deadline_s", "run_elapsed_s")


def _gone(exc: BaseException) -> APIErrorReply:
    return APIErrorReply(503, f"the replica serving this call is gone: {type(exc).__name__}", type="server_error",
                         code="engine_dead")


def _bad(message: str, param: str) -> APIErrorReply:
    return APIErrorReply(400, message, param=param, code="invalid_slo" if param in ("slo", "vllm_xargs") else None)


class _ReplicaStreamReply:
    """A replica's streamed answer (a :class:`~jitagent.client.transport.StreamedReply`); closing it
    before the end cancels the replica's call, which aborts the request in its engine."""

    def __init__(self, stream: DeploymentResponseGenerator, headers: dict[str, str]) -> None:
        self._stream = stream
        self.headers = headers
        self.events = _events(stream)

    async def aclose(self) -> None:
        await self.events.aclose()
        self._stream.cancel()


class ReplicasServer:
    """The OpenAI API of the app's replicas, for callers in this process.

    Args:
        handle: the handle of the replicas' deployment.
    """

    def __init__(self, handle: DeploymentHandle) -> None:
        self._replicas = handle.options(stream=True)

    async def handle(self, method: str, path: str, body: bytes, scope: CallScope | None,
                     parent: Context | None = None) -> JSONReply | StreamedReply:
        """Answer one request as :meth:`OpenAIServer.handle <jitagent.client.handlers.OpenAIServer.handle>`
        does; a replica's errors are its replies, a dead replica's a 503."""
        try:
            call = self._call(method, path, body, scope, parent)
        except APIErrorReply as err:
            return err.reply()
        stream: DeploymentResponseGenerator = self._replicas.serve.remote(call)
        try:
            head = cast(ReplyHead, await stream.__anext__())
            if not head.streamed:
                return JSONReply(head.status, cast(bytes, await stream.__anext__()), head.headers)
        except REPLICA_GONE as exc:
            stream.cancel()
            return _gone(exc).reply()
        except BaseException:
            stream.cancel()
            raise
        return _ReplicaStreamReply(stream, head.headers)

    @staticmethod
    def _call(method: str, path: str, body: bytes, scope: CallScope | None, parent: Context | None) -> ReplicaCall:
        """The call to send: the body without its scheduling fields, and those in ``args``."""
        fields = _json_object(body) if method == "POST" else None
        slo, request_class, pipeline = _scheduling(fields, scope) if fields is not None else (
            scope.slo, scope.request_class, scope.pipeline) if scope is not None else (None, None, None)
        _check_fields(slo, request_class)
        try:   # what the replica will read: a mistake is a 400 here, not there
            args = encode_request_args(slo, request_class=request_class, pipeline=pipeline, now=time.monotonic())
            parse_request_args(args)
        except ValueError as exc:   # the pipeline does not go with the SLO
            raise _bad(str(exc), "slo") from None
        if fields is not None:
            body = json.dumps(fields).encode()
        max_tokens = (fields.get("max_completion_tokens") or fields.get("max_tokens")) if fields is not None else None
        trace: dict[str, str] = {}
        propagate.inject(trace, context=parent)
        return ReplicaCall(method, path, body, args, len(body) // BYTES_PER_TOKEN,
                           max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
                           trace=trace)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body's JSON object; ``None`` for anything else, which the replica's server answers (400)."""
    if len(body) > MAX_BODY_BYTES:
        raise APIErrorReply(413, f"the request body has {len(body)} bytes, over the limit of {MAX_BODY_BYTES}",
                            code="request_too_large")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _check_fields(slo: Any, request_class: Any) -> None:
    """A 400 naming the field unless the SLO and the request class are valid."""
    try:
        if slo is not None:
            parse_slo(slo)
    except ValueError as exc:
        raise _bad(str(exc), "slo") from None
    try:
        encode_request_args(request_class=request_class)   # checks it as the replica's scheduler will
    except ValueError as exc:
        raise _bad(str(exc), "request_class") from None


def _scheduling(fields: dict[str, Any], scope: CallScope | None) -> tuple[Any, str | None, PipelineContext | None]:
    """Take the SLO, request class and pipeline out of ``fields``: from ``slo``/``request_class``, or
    ``vllm_xargs``; else the scope's. Pipeline times come on this process's monotonic clock."""
    if fields.get("pipeline") is not None:
        raise _bad("'pipeline' holds times on the caller's clock, which a replica does not share: send the "
                   "pipeline in 'vllm_xargs' (run_id, stage, run_deadline_s, ...: jitagent.scheduling."
                   "request_args), as JITClient(base_url=...) does", "pipeline")
    fields.pop("pipeline", None)
    slo, request_class, pipeline = fields.pop("slo", None), fields.pop("request_class", None), None
    xargs = fields.get("vllm_xargs")
    if isinstance(xargs, dict):
        ours = {key: xargs.pop(key) for key in _XARGS_READ if key in xargs}
        if not xargs:
            del fields["vllm_xargs"]
        for name, value in (("slo", slo), ("request_class", request_class)):
            if value is not None and name in ours:
                raise _bad(f"'{name}' is given twice, in the body and in 'vllm_xargs'", name)
        try:
            args = parse_request_args(ours)
        except ValueError as exc:
            raise _bad(f"invalid vllm_xargs: {exc}", "vllm_xargs") from None
        slo = slo if slo is not None else args.slo
        request_class = request_class if request_class is not None else ours.get("request_class")
        pipeline = args.pipeline(time.monotonic())
    if scope is not None:
        slo = slo if slo is not None else scope.slo
        request_class = request_class if request_class is not None else scope.request_class
        pipeline = pipeline if pipeline is not None else scope.pipeline
    return slo, request_class, pipeline


async def _events(stream: DeploymentResponseGenerator) -> AsyncGenerator[bytes, None]:
    """A streamed reply's events as the replica sends them; a replica gone mid-stream ends it with
    an ``error`` event (503 ``engine_dead``), as the in-process server ends a refused stream."""
    try:
        async for event in stream:
            yield cast(bytes, event)
    except REPLICA_GONE as exc:
        error = _gone(exc).error
        yield f"data: {json.dumps({'error': error})}\n\n".encode()


def connect(app_name: str = "jitagent", **kwargs: Any) -> openai.AsyncOpenAI:
    """An OpenAI client whose calls go to a running app's replicas through its deployment handle
    (no HTTP): ``extra_body={"slo": ...}`` and :func:`~jitagent.client.slo_scope` work as with
    ``JITClient``. ``kwargs`` go to ``openai.AsyncOpenAI`` (``timeout``, ``max_retries``, ...)."""
    server = ReplicasServer(serve.get_deployment_handle(REPLICAS_DEPLOYMENT, app_name))
    kwargs.setdefault("api_key", "jitagent-ray")   # never sent anywhere
    kwargs.setdefault("base_url", "http://jitagent-ray.local/v1")
    return openai.AsyncOpenAI(http_client=httpx2.AsyncClient(transport=InProcessTransport(server, LoopHost())),
                              **kwargs)
