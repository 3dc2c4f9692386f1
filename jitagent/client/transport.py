"""In-process HTTPX2 transports: the seam between the OpenAI client and the engine.

The OpenAI client builds an ``httpx2.Request``; instead of sending it over a socket, these
transports hand it to a :class:`Server` (the simulated engine's
:class:`~jitagent.client.handlers.OpenAIServer`, or an add-on's, such as vLLM's own OpenAI server
in-process) and wrap its reply in an ``httpx2.Response`` whose body streams as the engine produces
tokens (httpx2's own ``ASGITransport`` would buffer the whole body first).

:class:`LoopHost` decides on which event loop a client's calls are handled: the loop of the
caller when none of the client's calls is in flight elsewhere, so an async application pays no
thread hop; a background thread's loop for synchronous callers with no loop of their own. A call
from any other thread or loop is run on that loop (``run_coroutine_threadsafe``, one hop per
token); that is how the synchronous client works. The engines themselves serve callers on any
loop (several clients may share one engine), so a host knows only its own client's calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import httpx2
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from jitagent.client.context import CallScope, current_scope
from jitagent.client.handlers import JSONReply
from jitagent.engines.background import BackgroundLoop
from jitagent.slo import is_finite_number

__all__ = ["Server", "NamedServer", "StreamedReply", "LoopHost", "InProcessTransport", "SyncInProcessTransport"]

_T = TypeVar("_T")


class StreamedReply(Protocol):
    """A 200 event stream (:class:`~jitagent.client.handlers.StreamReply` is one): its events as
    they are made; :meth:`aclose` before the end aborts the request."""

    @property
    def events(self) -> AsyncIterator[bytes]: ...

    @property
    def headers(self) -> dict[str, str]: ...

    async def aclose(self) -> None: ...


class Server(Protocol):
    """What the transports hand each request to."""

    async def handle(self, method: str, path: str, body: bytes, scope: CallScope | None,
                     parent: Context | None = None) -> JSONReply | StreamedReply:
        """Answer one request (``path`` relative to the API root, ``/chat/completions``) on the
        host's loop; ``scope`` and ``parent`` (the OpenTelemetry context) are the caller's. Errors
        are replies."""
        ...


class NamedServer(Server, Protocol):
    """A server that also says which model it serves (an engine add-on's)."""

    @property
    def model(self) -> str: ...


class LoopHost:
    """Which event loop runs the engine, and running coroutines there from anywhere."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None   # where the engine last ran
        self._live = 0                                         # calls in flight on it
        self._background: BackgroundLoop | None = None   # for synchronous callers, started when one comes

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the engine last ran on, while that loop is running."""
        loop = self._loop
        return loop if loop is not None and loop.is_running() and not loop.is_closed() else None

    def acquire(self, caller: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
        """Claim a loop for one call from ``caller`` (``None``: a synchronous caller): the loop to
        run the call on; pair with :meth:`release`."""
        with self._lock:
            current = self.loop
            if current is None:
                target = caller or self._background_loop()
            elif caller is None or caller is current or self._live:
                target = current   # stay: a sync caller waits on it from its own thread; busy ones are bridged
            else:
                target = caller    # idle elsewhere: follow the async caller
            self._loop = target
            self._live += 1
            return target

    def release(self) -> None:
        with self._lock:
            self._live -= 1

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        if self._background is None:
            self._background = BackgroundLoop("jitagent-engine")
        return self._background.loop

    async def call(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, _T]) -> _T:
        """Await ``coro`` on ``loop`` from this loop (directly when they are the same)."""
        if loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    @staticmethod
    def call_sync(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on ``loop`` (running in another thread) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def stop(self) -> threading.Thread | None:
        """Stop the background thread, if one was started, without waiting (from any thread, at
        garbage collection too): what is left on its loop is cancelled, then the loop is closed
        (its selector's file descriptors with it). Returns the thread, which ends soon after."""
        with self._lock:
            background, self._background = self._background, None
        return background.stop() if background is not None else None

    def close(self) -> None:
        """:meth:`stop`, then wait until the thread has ended (unless called on it)."""
        thread = self.stop()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    async def aclose(self) -> None:
        """:meth:`close` for a caller on an event loop."""
        thread = self.stop()
        if thread is not None:
            await asyncio.to_thread(thread.join)


def _read_timeout(request: httpx2.Request) -> float | None:
    """The request's read timeout in seconds; ``None`` for none, and for one a float cannot hold
    (``10**400`` seconds, which would overflow the loop's clock arithmetic, is no limit either)."""
    read = (request.extensions.get("timeout") or {}).get("read")
    return float(read) if is_finite_number(read) else None


def _api_path(request: httpx2.Request, root: str) -> str:
    return request.url.path.removeprefix(root) or "/"


class _StreamBody(httpx2.AsyncByteStream):
    """A streamed reply's events for a caller on the engine's loop; ``aclose`` aborts the request."""

    def __init__(self, reply: StreamedReply, host: LoopHost) -> None:
        self._reply = reply
        self._host: LoopHost | None = host

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for event in self._reply.events:
            yield event

    async def aclose(self) -> None:
        try:
            await self._reply.aclose()
        finally:
            if self._host is not None:
                self._host.release()
                self._host = None


class _BridgedStreamBody(httpx2.AsyncByteStream):
    """A streamed reply for a caller on another loop: each event is fetched on the engine's loop."""

    def __init__(self, reply: StreamedReply, host: LoopHost, loop: asyncio.AbstractEventLoop) -> None:
        self._reply = reply
        self._host: LoopHost | None = host
        self._loop = loop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        events = self._reply.events
        while True:
            try:
                yield await self._host_call(events.__anext__())
            except StopAsyncIteration:
                return

    async def _host_call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def aclose(self) -> None:
        if self._host is None:
            return
        try:
            await self._host_call(self._reply.aclose())
        finally:
            self._host.release()
            self._host = None


class _SyncStreamBody(httpx2.SyncByteStream):
    """A streamed reply for a synchronous caller: each event is fetched on the engine's loop."""

    def __init__(self, reply: StreamedReply, host: LoopHost, loop: asyncio.AbstractEventLoop) -> None:
        self._reply = reply
        self._host: LoopHost | None = host
        self._loop = loop

    def __iter__(self) -> Iterator[bytes]:
        events = self._reply.events
        while True:
            try:
                yield LoopHost.call_sync(self._loop, events.__anext__())
            except StopAsyncIteration:
                return

    def close(self) -> None:
        if self._host is None:
            return
        try:
            LoopHost.call_sync(self._loop, self._reply.aclose())
        finally:
            self._host.release()
            self._host = None


def _response(reply: JSONReply | StreamedReply, stream: httpx2.AsyncByteStream | httpx2.SyncByteStream | None,
              request: httpx2.Request) -> httpx2.Response:
    if isinstance(reply, JSONReply):
        return httpx2.Response(reply.status, headers=reply.headers, content=reply.body, request=request)
    return httpx2.Response(200, headers=reply.headers, stream=stream, request=request)


class InProcessTransport(httpx2.AsyncBaseTransport):
    """Serves an ``httpx2.AsyncClient``'s requests from a :class:`Server` in this process.

    Args:
        server: answers the requests.
        host: where the engine runs.
        root: the API's path prefix in request URLs (``/v1``).
    """

    def __init__(self, server: Server, host: LoopHost, root: str = "/v1") -> None:
        self.server = server
        self.host = host
        self.root = root

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        # Read here: the engine's loop may run the call in another context.
        scope, parent = current_scope(), otel_context.get_current()
        loop = self.host.acquire(asyncio.get_running_loop())
        released = False
        try:
            handling = self.server.handle(request.method, _api_path(request, self.root), body, scope, parent)
            try:
                async with asyncio.timeout(_read_timeout(request)):
                    reply = await self.host.call(loop, handling)
            except TimeoutError:
                raise httpx2.ReadTimeout("the engine did not answer within the read timeout", request=request) from None
            if isinstance(reply, JSONReply):
                return _response(reply, None, request)
            stream: httpx2.AsyncByteStream = (_StreamBody(reply, self.host) if loop is asyncio.get_running_loop()
                                              else _BridgedStreamBody(reply, self.host, loop))
            released = True  # the stream releases the host when it is closed
            return _response(reply, stream, request)
        finally:
            if not released:
                self.host.release()


class SyncInProcessTransport(httpx2.BaseTransport):
    """The synchronous twin of :class:`InProcessTransport`, for ``openai.OpenAI`` (and LangChain's
    sync path): each request runs on the engine's loop in another thread while this one waits.

    It must not be called from the thread running the engine's loop (that would wait on itself).
    """

    def __init__(self, server: Server, host: LoopHost, root: str = "/v1") -> None:
        self.server = server
        self.host = host
        self.root = root

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        scope, parent = current_scope(), otel_context.get_current()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self.host.acquire(None)
        released = False
        try:
            if loop is running:
                raise RuntimeError("a synchronous JITClient call was made from the event loop that runs the "
                                   "engine, which would wait on itself: await the async client instead")
            handling = self.server.handle(request.method, _api_path(request, self.root), body, scope, parent)
            future = asyncio.run_coroutine_threadsafe(handling, loop)
            try:
                reply = future.result(_read_timeout(request))
            except TimeoutError:
                future.cancel()
                raise httpx2.ReadTimeout("the engine did not answer within the read timeout", request=request) from None
            if isinstance(reply, JSONReply):
                return _response(reply, None, request)
            released = True
            return _response(reply, _SyncStreamBody(reply, self.host, loop), request)
        finally:
            if not released:
                self.host.release()
