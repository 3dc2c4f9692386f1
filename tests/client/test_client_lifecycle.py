"""Client lifecycles: one ``SimEngine`` shared by clients on several event loops, and every way of
closing a client (``await client.close()``, ``client.sync.close()``, ``with client.sync:``,
garbage collection) giving back the engine thread and its file descriptors. After each, the
engine holds no request and serves the next call normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import subprocess
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jitagent.client import JITClient
from jitagent.engines.sim import SimEngine

MESSAGES = [{"role": "user", "content": "Plan the next stage."}]
TIME_SCALE = 0.01


async def _stream_text(client: JITClient, max_tokens: int) -> str:
    stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=True,
                                                  max_tokens=max_tokens, seed=7)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


def _on_a_thread_loop(work: Callable[[], Any]) -> Any:
    """``asyncio.run(work())`` on a thread of its own (a second event loop), returning its result."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(work())), daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize("first, thread_tokens, main_tokens", [
    ("thread", 60, 20),    # the engine steps on the thread's loop; the main loop's stream is served from there
    ("main", 60, 20),      # and the other way round
    ("thread", 20, 150),   # the thread's loop ends first: the main loop's stream carries the engine on
])
def test_two_clients_on_one_engine_stream_from_two_loops(first: str, thread_tokens: int, main_tokens: int) -> None:
    """Finding 3: one stream in a thread's ``asyncio.run`` and one on the main loop, on one engine,
    at the same time: both end with all their tokens, and the engine then serves either loop."""
    engine = SimEngine(time_scale=TIME_SCALE)

    async def in_thread(max_tokens: int) -> str:
        client = JITClient(engine=engine, max_retries=0)
        try:
            return await asyncio.wait_for(_stream_text(client, max_tokens), 30)
        finally:
            await client.close()

    async def main() -> None:
        client = JITClient(engine=engine, max_retries=0)
        try:
            if first == "thread":
                thread, result = _on_a_thread_loop(lambda: in_thread(thread_tokens))
                while engine.core.num_live == 0:   # the engine now steps on the thread's loop
                    await asyncio.sleep(0.001)
                mine = await asyncio.wait_for(_stream_text(client, main_tokens), 30)
            else:
                task = asyncio.create_task(_stream_text(client, main_tokens))
                while engine.core.num_live == 0:   # the engine now steps on this loop
                    await asyncio.sleep(0.001)
                thread, result = _on_a_thread_loop(lambda: in_thread(thread_tokens))
                mine = await asyncio.wait_for(task, 30)
            await asyncio.wait_for(asyncio.to_thread(thread.join), 30)
            assert len(mine.split()) == main_tokens and len(result[0].split()) == thread_tokens
            assert engine.core.num_live == 0 and engine.core.free_blocks == engine.core.limits.num_blocks
            thread, result = _on_a_thread_loop(lambda: in_thread(5))   # then each loop is served again
            await asyncio.to_thread(thread.join)
            assert len(result[0].split()) == 5
            assert len((await _stream_text(client, 5)).split()) == 5
        finally:
            await client.close()

    asyncio.run(main())
    assert engine.core.num_live == 0


# -- closing ------------------------------------------------------------------------------------

def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _engine_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "jitagent-engine"}


def _sync_call(sync: Any, model: str) -> None:
    reply = sync.chat.completions.create(model=model, messages=MESSAGES, max_tokens=3)
    assert reply.choices[0].message.content


def _use_synchronously(client: JITClient, how: str) -> None:
    """Use ``client`` only synchronously (no event loop in this thread), closing it as ``how`` says."""
    if how == "with client.sync":
        with client.sync as sync:
            _sync_call(sync, client.served_model)
            with sync.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=True,
                                              max_tokens=50) as stream:
                next(iter(stream))   # left in flight: closing the client aborts it
    elif how.startswith("langchain"):
        pytest.importorskip("langchain_openai")
        assert client.chat_model(max_tokens=3).invoke("Plan the next stage.").content
    else:
        _sync_call(client.sync, client.served_model)
    if how == "sync close":
        client.sync.close()


@pytest.mark.parametrize("how", ["sync close", "with client.sync", "garbage collection",
                                 "langchain invoke, garbage collection"])
def test_every_way_of_closing_gives_back_the_engine_thread_and_fds(how: str) -> None:
    """Finding 6: a client used only synchronously starts a thread whose event loop holds 3 file
    descriptors (epoll and a socket pair); ``client.sync.close()``, ``with client.sync:`` and
    garbage collection each give them back (as ``await client.close()`` does), and the engine
    holds nothing and serves the next call."""
    gc.collect()
    fds, threads = _fds(), _engine_threads()
    client = JITClient(time_scale=TIME_SCALE, max_retries=0)
    engine = client.engine
    _use_synchronously(client, how)
    started = _engine_threads() - threads
    if "garbage collection" in how:
        assert len(started) == 1 and _fds() == fds + 3   # the reproducer: still held while the client lives
        del client
        gc.collect()
    for thread in started:
        thread.join(10)
        assert not thread.is_alive()
    assert _fds() == fds and not _engine_threads() - threads
    assert engine.core.num_live == 0 and engine.core.free_blocks == engine.core.limits.num_blocks
    again = JITClient(engine=engine, max_retries=0)   # the engine serves on, and gives back again
    _use_synchronously(again, "sync close")
    assert _fds() == fds and not _engine_threads() - threads


def test_async_close_after_sync_use_gives_back_the_thread() -> None:
    """``await client.close()`` (the path that worked before) still does, after sync calls."""
    fds, threads = _fds(), _engine_threads()
    client = JITClient(time_scale=TIME_SCALE, max_retries=0)
    _sync_call(client.sync, client.served_model)
    asyncio.run(client.close())
    assert _fds() == fds and not _engine_threads() - threads


# -- teardown says nothing ----------------------------------------------------------------------

@contextlib.contextmanager
def _reporting_nothing(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail if anything would reach the user's stderr: an exception ignored in ``__del__`` or a
    finalizer (``sys.unraisablehook``), a warning, or a log record of level WARNING and up
    (asyncio's "Task was destroyed but it is pending!", ``concurrent.futures``' "exception
    calling callback")."""
    found: list[str] = []
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: found.append(f"unraisable: {u.exc_value!r} "
                                                                            f"in {u.object!r}")
    caplog.set_level(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            gc.collect()   # a task or coroutine given up is reported when it is collected
    finally:
        sys.unraisablehook = hook
    found += [f"warning: {w.message}" for w in caught]
    found += [f"log {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert not found, "\n".join(found)


def test_a_call_sent_to_a_loop_as_it_ends_is_served_elsewhere_and_nothing_is_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    """The race, made certain: the engine steps on a thread's ``asyncio.run``, which is ending (it
    has cancelled its tasks and is running them out) when a caller on the main loop sends its
    request there. The request is not taken on the ending loop (where a new stepping task would be
    destroyed pending as the loop closes, and the caller would wait forever): the caller's own
    loop serves it, and nothing is reported."""
    engine = SimEngine(time_scale=TIME_SCALE)

    async def on_thread(ending: threading.Event, sent: threading.Event) -> None:
        async def serve_until_cancelled() -> None:
            try:
                async for _ in engine.generate(prompt_len=10, max_tokens=500, output_len=500):
                    pass
            finally:   # cancelled as asyncio.run ends: hold the loop while the main loop's call is sent
                ending.set()
                sent.wait(10)

        asyncio.create_task(serve_until_cancelled())
        while engine.core.num_live == 0:   # the engine now steps on this loop; returning ends it
            await asyncio.sleep(0.001)

    async def main() -> None:
        # asyncio.run cancels the stepping task and the caller's in an order of its own: the
        # request is sent while the stepping task is still there about half the time, so 20 tries.
        for _ in range(20):
            ending, sent = threading.Event(), threading.Event()
            thread = threading.Thread(target=lambda: asyncio.run(on_thread(ending, sent)), daemon=True)
            thread.start()
            await asyncio.to_thread(ending.wait, 10)
            call = asyncio.create_task(_tokens(engine.generate(prompt_len=10, max_tokens=5, output_len=5)))
            await asyncio.sleep(0.005)   # its request is sent to the ending loop
            sent.set()
            assert await asyncio.wait_for(call, 5) == [1, 2, 3, 4, 5]
            await asyncio.to_thread(thread.join, 10)
            assert not thread.is_alive()

    with _reporting_nothing(caplog):
        asyncio.run(main())
    assert engine.core.num_live == 0 and not engine._streams


async def _tokens(generation: Any) -> list[int]:
    return [t async for t in generation]


# -- memory ---------------------------------------------------------------------------------------

def _object_counts() -> Counter[str]:
    gc.collect()
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def _objects_kept_per_client(clients: int = 100) -> dict[str, int]:
    """Kinds of object that grew by at least one per two clients made, used once synchronously and
    closed, on one engine."""
    engine = SimEngine(time_scale=0)

    def one_client() -> None:
        client = JITClient(engine=engine, max_retries=0)
        _sync_call(client.sync, client.served_model)
        client.sync.close()

    for _ in range(20):   # warm up: caches, interned strings, the first thread's leftovers
        one_client()
    before = _object_counts()
    for _ in range(clients):
        one_client()
    assert engine.core.num_live == 0 and not engine._streams
    return {kind: n for kind, n in (_object_counts() - before).items() if n >= clients // 2}


def test_short_lived_clients_on_a_shared_engine_leave_no_objects_behind() -> None:
    """Issue 14, the client soak's RSS growth: clients made, used once synchronously and closed,
    on one engine, leave no object behind per client (counted by type after a collection).

    Counted in a fresh interpreter: in this one, what other tests imported (vLLM, Ray) keeps caches
    that grow with the clients (CPython's ABC caches, by weak reference) and would be counted too."""
    done = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    grown = json.loads(done.stdout.splitlines()[-1])
    assert not grown, f"objects kept per client: {grown}"


if __name__ == "__main__":   # the count above, in a fresh interpreter
    print(json.dumps(_objects_kept_per_client()))
