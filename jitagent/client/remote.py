"""Remote servers: the OpenAI client's requests go over real HTTP, each carrying its SLO and pipeline.

``JITClient(base_url="http://host:port/v1")`` talks to a running OpenAI-compatible server (``vllm
serve --scheduler-cls jitagent_vllm.JITScheduler``, or any server behind an llm-d gateway) through
:class:`RemoteTransport`, which wraps httpx2's own transport and rewrites each generation request
(``POST .../chat/completions``, ``.../completions``, ``.../responses``) on its way out:

* the call's SLO, pipeline context and request class (as the in-process client takes them: the
  body's ``slo``, ``pipeline`` and ``request_class``, i.e. ``extra_body``; else the ambient
  :func:`~jitagent.client.slo_scope`, which ``jit_slo`` sets for each graph node; else the
  client's ``slo`` and ``pipeline``) go into the body's ``vllm_xargs`` (:func:`~jitagent.client.xargs.move_to_vllm_xargs`, as
  for vLLM's server in-process; the one wire format; pipeline
  deadlines are sent relative to the moment the request leaves, so no clock is shared). The
  body's own jitagent fields are removed: another server would refuse or ignore them. Keys the
  caller put in ``vllm_xargs`` itself win over these;
* a stream SLO also travels as the headers llm-d's router reads for SLO-aware routing,
  ``x-llm-d-slo-ttft-ms`` and ``x-llm-d-slo-tpot-ms`` (milliseconds, rounded up);
* the caller's OpenTelemetry context travels as W3C ``traceparent`` (with the globally configured
  propagator), so that a server that traces (``vllm serve --otlp-traces-endpoint``) continues
  the caller's trace.

A body whose jitagent fields are invalid is answered here with a 400 in the OpenAI error shape,
as the in-process server answers it; nothing is sent. Other requests pass through unchanged.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import httpx2
from opentelemetry import propagate

from jitagent.client.context import CallScope, check_pipeline, current_scope
from jitagent.client.handlers import APIErrorReply
from jitagent.client.xargs import move_to_vllm_xargs
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO, StreamSLO, parse_slo

__all__ = ["RemoteTransport", "SyncRemoteTransport", "RemoteServed", "carry_scheduling", "SLO_TTFT_HEADER",
           "SLO_TPOT_HEADER"]

#: The SLO headers llm-d's router reads (milliseconds).
SLO_TTFT_HEADER = "x-llm-d-slo-ttft-ms"
SLO_TPOT_HEADER = "x-llm-d-slo-tpot-ms"

_GENERATION_PATHS = ("/completions", "/responses")   # path endings (``/chat/completions`` is one)


class _Carrier:
    """What a remote client's requests carry besides the body: the client's default SLO and
    pipeline (validated once, when the client is made)."""

    def __init__(self, slo: SLO | Mapping[str, Any] | str | None, pipeline: PipelineContext | None) -> None:
        check_pipeline(pipeline)
        self.slo = parse_slo(slo) if slo is not None else None
        self.pipeline = pipeline

    def rewrite(self, request: httpx2.Request, body: bytes) -> httpx2.Request | httpx2.Response:
        """:func:`carry_scheduling` with this client's defaults and the caller's ambient scope."""
        return carry_scheduling(request, body, current_scope(), slo=self.slo, pipeline=self.pipeline)


class RemoteTransport(httpx2.AsyncBaseTransport):
    """An async transport that sends each request with its SLO and pipeline (see the module).

    Args:
        transport: the transport that sends (by default httpx2's own, over HTTP).
        slo, pipeline: what a call carries when neither its body nor an ambient scope names one
            (an SLO as a model, a dict or JSON text; ``ValueError`` if invalid).
    """

    def __init__(self, transport: httpx2.AsyncBaseTransport | None = None, *,
                 slo: SLO | Mapping[str, Any] | str | None = None, pipeline: PipelineContext | None = None) -> None:
        self._carrier = _Carrier(slo, pipeline)
        self._transport = transport if transport is not None else httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not _is_generation(request):
            return await self._transport.handle_async_request(request)
        outgoing = self._carrier.rewrite(request, await request.aread())
        if isinstance(outgoing, httpx2.Response):
            return outgoing
        return await self._transport.handle_async_request(outgoing)

    async def aclose(self) -> None:
        await self._transport.aclose()


class SyncRemoteTransport(httpx2.BaseTransport):
    """The synchronous twin of :class:`RemoteTransport`, for ``openai.OpenAI``."""

    def __init__(self, transport: httpx2.BaseTransport | None = None, *,
                 slo: SLO | Mapping[str, Any] | str | None = None, pipeline: PipelineContext | None = None) -> None:
        self._carrier = _Carrier(slo, pipeline)
        self._transport = transport if transport is not None else httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if not _is_generation(request):
            return self._transport.handle_request(request)
        outgoing = self._carrier.rewrite(request, request.read())
        if isinstance(outgoing, httpx2.Response):
            return outgoing
        return self._transport.handle_request(outgoing)

    def close(self) -> None:
        self._transport.close()


class RemoteServed:
    """What a ``JITClient(base_url=...)``, its copies and its sync face share: no engine (the server
    runs it), the model name, and the transports that carry the client's default SLO and pipeline.

    Args:
        base_url: the server's API root (``http://host:port/v1``).
        engine: must be ``None``: a client talks to a server elsewhere or serves an engine in-process.
        slo, pipeline: the client's defaults (``ValueError`` if invalid).
        model: the model calls use by default (``served_model``, ``chat_model``); by default the
            first the server lists, asked for when first needed.
        headers: the client's headers for that question (its API key).
    """

    engine = None

    def __init__(self, base_url: str, *, engine: object = None, slo: SLO | Mapping[str, Any] | str | None = None,
                 pipeline: PipelineContext | None = None, model: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        if engine is not None:
            raise ValueError("JITClient takes engine= (an engine served in this process) or base_url= (a server "
                             "elsewhere, over HTTP), not both")
        self._carrier = _Carrier(slo, pipeline)
        self._base_url = str(base_url).rstrip("/")
        self._model = model
        self._headers = dict(headers or {})

    @property
    def model(self) -> str:
        """The model calls use by default: the one given, else the first the server lists."""
        if self._model is None:
            response = httpx2.get(f"{self._base_url}/models", headers=self._headers, timeout=10.0)
            response.raise_for_status()
            self._model = response.json()["data"][0]["id"]
        return self._model

    def transport(self) -> RemoteTransport:
        return RemoteTransport(slo=self._carrier.slo, pipeline=self._carrier.pipeline)

    def sync_transport(self) -> SyncRemoteTransport:
        return SyncRemoteTransport(slo=self._carrier.slo, pipeline=self._carrier.pipeline)

    async def aclose(self) -> None:
        """Nothing to stop: each client closes its own connections."""

    def close(self) -> None:
        """Nothing to stop: each client closes its own connections."""


def _is_generation(request: httpx2.Request) -> bool:
    return request.method == "POST" and request.url.path.rstrip("/").endswith(_GENERATION_PATHS)


def carry_scheduling(request: httpx2.Request, body: bytes, scope: CallScope | None, *, slo: SLO | None = None,
                     pipeline: PipelineContext | None = None,
                     now: float | None = None) -> httpx2.Request | httpx2.Response:
    """``request`` (whose body is ``body``) as it goes to a remote server: with its SLO, pipeline and
    request class in ``vllm_xargs`` and its SLO headers; unchanged when it carries none (or its
    body is not a JSON object: the server answers that); a 400 response when its jitagent fields
    are invalid. ``slo`` and ``pipeline`` are the client's defaults; ``now`` is the moment it is
    sent on the pipeline's clock (``time.monotonic()``)."""
    try:
        fields = json.loads(body) if body else None
    except ValueError:
        return request
    if not isinstance(fields, dict):
        return request
    unchanged = dict(fields)
    try:
        call_slo, _, _ = move_to_vllm_xargs(fields, scope, now=time.monotonic() if now is None else now,
                                            default_slo=slo, default_pipeline=pipeline)
    except APIErrorReply as error:
        reply = error.reply()
        return httpx2.Response(reply.status, headers=reply.headers, content=reply.body, request=request)
    if fields == unchanged:
        return request
    headers = httpx2.Headers([(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"])
    for name, value in _headers(call_slo).items():
        headers.setdefault(name, value)
    carrier: dict[str, str] = {}
    propagate.inject(carrier)   # the caller's span, where a propagator is configured
    for name, value in carrier.items():
        headers.setdefault(name, value)
    return httpx2.Request(request.method, request.url, headers=headers, content=json.dumps(fields).encode(),
                          extensions=request.extensions)


def _headers(slo: SLO | None) -> dict[str, str]:
    """llm-d's SLO headers for ``slo`` (a stream SLO has both; other kinds have neither)."""
    if not isinstance(slo, StreamSLO):
        return {}
    return {SLO_TTFT_HEADER: _milliseconds(slo.ttft_s), SLO_TPOT_HEADER: _milliseconds(slo.tpot_s)}


def _milliseconds(seconds: float) -> str:
    # Whole milliseconds, rounded up: routers parse integers, and rounding down could make 0 (no SLO).
    return str(max(1, math.ceil(seconds * 1000)))
