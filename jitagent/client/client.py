"""``JITClient``: an ``openai.AsyncOpenAI`` whose requests are served in-process by a jitagent engine.

Everything the OpenAI client offers (typed responses, streaming, errors, ``with_raw_response``,
``with_options``) works unchanged; only the HTTP layer is replaced (see
:mod:`jitagent.client.transport`). Each call's SLO comes from ``extra_body={"slo": ...}``, else
the ambient :func:`~jitagent.client.slo_scope`, else the client's ``slo``.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any, Self

import httpx2
import openai
import pydantic
from openai.types.chat import ChatCompletionChunk
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from jitagent import plugins
from jitagent.client._compat import FastResponseData
from jitagent.client.backend import SimBackend, SimToolSettings
from jitagent.client.handlers import OpenAIServer
from jitagent.client.remote import RemoteServed
from jitagent.client.transport import LoopHost, InProcessTransport, Server, SyncInProcessTransport
from jitagent.engines.protocol import Engine
from jitagent.engines.sim import DEFAULT_PROFILE, SimConfig, SimEngine
from jitagent.plugins import EnginePlugin
from jitagent.scheduling.policies import Policy
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO, parse_slo
from jitagent.telemetry.providers import Telemetry

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

__all__ = ["JITClient", "SyncJITClient"]

_BASE_URL = "http://jitagent.local/v1"
_API_KEY = "jitagent-in-process"   # never sent anywhere; the OpenAI client insists on having one


def _client_defaults(kwargs: dict[str, Any]) -> None:
    kwargs.setdefault("api_key", _API_KEY)
    kwargs.setdefault("base_url", _BASE_URL)


def _typed_chunk(data: object) -> ChatCompletionChunk | None:
    """A streamed chat chunk, built the fast way; ``None`` to let the OpenAI client build it.

    The OpenAI client builds response objects leniently and in Python (``construct_type``), an order
    of magnitude slower than pydantic's compiled validation of the same object (docs/benchmarks.md
    has the figures). Anything that does not validate takes the client's own path.
    """
    try:
        return ChatCompletionChunk.model_validate(data)
    except pydantic.ValidationError:
        return None


class _Served:
    """What a client and its copies (``with_options``) and its sync face share: the engine, the
    server, the host; and closing them, however the client is closed.

    A client dropped without being closed gives back its host's thread (and so the file
    descriptors of that thread's event loop) when this is garbage-collected, that is once the
    client, its copies and its sync face are all gone; a simulated engine stepping there is
    stopped with it. (An engine of its own that runs elsewhere is left to that engine.)
    """

    def __init__(self, engine: Engine, server: Server, model: str, host: LoopHost, owns_engine: bool) -> None:
        self.engine = engine
        self.server = server
        self.model = model
        self.host = host
        self.owns_engine = owns_engine
        self._collected = weakref.finalize(self, host.stop)   # must not refer to self

    async def aclose(self) -> None:
        """If the client made its engine, abort what is in flight and stop it; stop the host's thread."""
        self._collected.detach()
        if self.owns_engine:
            await self.engine.aclose()   # from any loop: each engine closes on its own loop
        await self.host.aclose()

    def close(self) -> None:
        """:meth:`aclose` for synchronous code."""
        self._collected.detach()
        if self.owns_engine:
            self.engine.close()
        self.host.close()


class _ServedInProcess(FastResponseData):
    """What the async and sync clients share on top of their OpenAI base class."""

    _served: _Served

    def copy(self, **kwargs: Any) -> Self:
        """A client with some options changed (``with_options``), served by the same engine."""
        kwargs["_extra_kwargs"] = {**kwargs.get("_extra_kwargs", {}), "_served": self._served}
        return super().copy(**kwargs)  # type: ignore[misc]

    with_options = copy

    def _fast_response(self, data: object, cast_to: type[Any]) -> Any | None:
        """Streamed chat chunks, built the fast way (see :func:`_typed_chunk`)."""
        return _typed_chunk(data) if cast_to is ChatCompletionChunk else None


class JITClient(_ServedInProcess, openai.AsyncOpenAI):
    """Drop-in ``openai.AsyncOpenAI`` whose requests are served in-process.

    On the simulated engine, jitagent's own server answers Chat Completions, Completions and
    Models. On an add-on's engine, the add-on's server does: on the vLLM engine, vLLM's own OpenAI
    server over the same engine (everything ``vllm serve`` offers for the model: tools,
    structured outputs, logprobs, ``n``, every sampling option and vLLM extra, the Responses API).

    Args:
        engine: the engine to serve from: an :class:`~jitagent.engines.protocol.Engine` (a
            :class:`SimEngine`, or one an add-on serves, such as ``jitagent_vllm.VLLMEngine``), or
            the name of the engine to start, which :meth:`close` also closes: ``"sim"`` (the
            default: a :class:`SimEngine` built from ``policy``, ``profile`` and ``time_scale``) or
            an add-on's engine (:mod:`jitagent.plugins`), such as ``"vllm"`` (a real vLLM engine
            serving ``model``, scheduled by ``policy``; needs ``jitagent-vllm``; tens of seconds to
            start on a CPU).
        policy: scheduling policy of a started engine (name, or an instance for the simulated one);
            ``"jit"`` by default.
        profile: hardware profile of a simulated engine.
        time_scale: wall seconds per modelled second for a simulated engine (1.0: GPU-like timing).
        model: the model name this client serves (``models.list()``); by default the profile's model.
            With ``engine="vllm"``, the model to load (a folder, a hub name or ``tiny-random-llama``,
            the default).
        slo: the SLO of calls that name none and run outside every ``slo_scope`` (a model, a dict
            or JSON text; ``ValueError`` if invalid).
        pipeline: the pipeline context of such calls.
        tracer_provider, meter_provider: where each call's span (``chat {model}``, a child of the
            caller's current span) and metrics go; by default the global OpenTelemetry providers,
            which record nothing until the application configures them.
        trace_content: record prompt and completion text on spans (off by default; ``None`` reads
            the ``JITAGENT_TRACE_CONTENT`` environment variable).
        sim_tools: how the simulated engine's model uses tools (how often a turn with tools calls
            one, which, how long the arguments; seeded): :class:`SimToolSettings`, whose defaults let
            an agent loop call tools and then answer. Only for the simulated engine.
        **kwargs: passed to ``openai.AsyncOpenAI`` (``timeout``, ``max_retries``, ``default_headers``, ...).
            With ``base_url`` (``http://host:port/v1``) the client talks to that running server over
            HTTP instead of an engine in this process, each call carrying its SLO and pipeline (see
            :mod:`jitagent.client.remote`); ``engine`` must then be left out.
    """

    def __init__(self, *, engine: Engine | str | None = None, policy: Policy | str = "jit",
                 profile: str = DEFAULT_PROFILE, time_scale: float = 1.0, model: str | None = None,
                 slo: SLO | dict[str, Any] | str | None = None, pipeline: PipelineContext | None = None,
                 tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None,
                 trace_content: bool | None = None, sim_tools: SimToolSettings | None = None,
                 _served: _Served | None = None, **kwargs: Any) -> None:
        if _served is None and kwargs.get("base_url") is not None:   # a server elsewhere, over HTTP
            kwargs.setdefault("api_key", os.environ.get("OPENAI_API_KEY") or _API_KEY)
            _served = RemoteServed(kwargs["base_url"], engine=engine, slo=slo, pipeline=pipeline, model=model,  # type: ignore[assignment]
                                   headers={"authorization": f"Bearer {kwargs['api_key']}"})
            kwargs.setdefault("http_client", httpx2.AsyncClient(transport=_served.transport()))
        if _served is None:
            owns_engine = engine is None or isinstance(engine, str)
            default_slo = parse_slo(slo) if slo is not None else None   # before an engine starts
            telemetry = Telemetry(tracer_provider, meter_provider, trace_content)
            served_engine, server, served_model = _serve(engine, policy, profile, time_scale, model, default_slo,
                                                         pipeline, telemetry, sim_tools)
            _served = _Served(served_engine, server, served_model, LoopHost(), owns_engine)
        self._served = _served
        _client_defaults(kwargs)
        if kwargs.get("http_client") is None:
            kwargs["http_client"] = httpx2.AsyncClient(transport=InProcessTransport(_served.server, _served.host))
        super().__init__(**kwargs)
        self._sync: SyncJITClient | None = None
        if isinstance(_served, RemoteServed):   # its sync face talks to the server over HTTP too
            self._sync = SyncJITClient(_served, http_client=httpx2.Client(transport=_served.sync_transport()),  # type: ignore[arg-type]
                                       base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                                       max_retries=self.max_retries)

    @property
    def engine(self) -> Engine:
        """The engine serving this client (a :class:`SimEngine`, a ``VLLMEngine``, ...)."""
        return self._served.engine

    @property
    def served_model(self) -> str:
        """The model name calls must use."""
        return self._served.model

    @property
    def sync(self) -> SyncJITClient:
        """A synchronous ``openai.OpenAI`` served by the same engine (on the engine's loop, or on a
        background thread's loop when no loop runs it)."""
        if self._sync is None:
            self._sync = SyncJITClient(self._served, timeout=self.timeout, max_retries=self.max_retries)
        return self._sync

    def chat_model(self, **kwargs: Any) -> ChatOpenAI:
        """LangChain's ``ChatOpenAI`` wired to this client: ``ainvoke``/``astream`` use it directly,
        ``invoke``/``stream`` use :attr:`sync`. ``model`` defaults to the served model, and usage
        is streamed; other arguments go to ``ChatOpenAI``."""
        from langchain_openai import ChatOpenAI  # optional dependency: only this method needs it

        sync = self.sync
        kwargs.setdefault("model", self.served_model)
        kwargs.setdefault("stream_usage", True)
        kwargs.setdefault("api_key", _API_KEY)
        return ChatOpenAI(root_async_client=self, async_client=self.chat.completions, root_client=sync,
                          client=sync.chat.completions, **kwargs)

    async def close(self) -> None:
        """Close the HTTP layer and, if this client made its engine, abort what is in flight and
        stop it; give back the thread that served synchronous calls, if any."""
        await super().close()
        if self._sync is not None:
            openai.OpenAI.close(self._sync)   # only its HTTP layer: the rest is closed here, without blocking
        await self._served.aclose()


def _serve(engine: Engine | str | None, policy: Policy | str, profile: str, time_scale: float, model: str | None,
           default_slo: SLO | None, pipeline: PipelineContext | None, telemetry: Telemetry,
           sim_tools: SimToolSettings | None = None) -> tuple[Engine, Server, str]:
    """The engine (``engine`` itself, or one started: ``"sim"``, ``None`` or an add-on's engine name),
    the server that answers the client's requests from it (the simulated engine's
    :class:`OpenAIServer`, or the one the engine's add-on gives) and the model name it serves."""
    plugin: EnginePlugin | None = None
    if engine is None or engine == "sim":
        engine = SimEngine(SimConfig(profile=profile), policy=policy, time_scale=time_scale)
    elif isinstance(engine, str):
        plugin = plugins.load(plugins.ENGINES, engine)
        if not isinstance(policy, str):
            raise ValueError(f"the {engine} engine takes its policy by name (jit, fcfs, edf, ltr, las)")
        engine, model = plugin.start(model=model, policy=policy), None   # the model loaded is served as itself
    if isinstance(engine, SimEngine):
        backend = SimBackend(engine, model or engine.model_name, sim_tools)
        server = OpenAIServer(backend, default_slo=default_slo, default_pipeline=pipeline, telemetry=telemetry)
        return engine, server, backend.model
    if sim_tools is not None:
        raise ValueError("sim_tools sets the simulated engine's model; this engine's model decides for itself")
    plugin = plugin or plugins.engine_plugin_serving(engine)
    if plugin is None:
        raise TypeError(f"engine must be 'sim', the name of an installed engine ({', '.join(plugins.names(plugins.ENGINES)) or 'none'}) "
                        f"or an engine object an installed add-on serves, got {type(engine).__name__}")
    served = plugin.server(engine, model=model, default_slo=default_slo, default_pipeline=pipeline, telemetry=telemetry)
    return engine, served, served.model


class SyncJITClient(_ServedInProcess, openai.OpenAI):
    """The synchronous face of a :class:`JITClient` (get it from :attr:`JITClient.sync`).

    Closing it (:meth:`close`, or leaving ``with client.sync:``) closes the client as
    ``await client.close()`` does: an application that only ever calls synchronously (LangChain's
    ``invoke``, say) gets its engine thread and file descriptors back without an event loop.
    """

    def __init__(self, _served: _Served, **kwargs: Any) -> None:
        self._served = _served
        _client_defaults(kwargs)
        if kwargs.get("http_client") is None:
            kwargs["http_client"] = httpx2.Client(transport=SyncInProcessTransport(_served.server, _served.host))
        super().__init__(**kwargs)

    def close(self) -> None:
        """Close the HTTP layer and the client's engine (if it made it) and engine thread."""
        super().close()
        self._served.close()

