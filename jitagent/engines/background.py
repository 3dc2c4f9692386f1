"""An event loop on a thread of its own: where an engine runs for callers that have no loop.

``JITClient``'s synchronous callers and a vLLM engine made outside any event loop both need a
loop that runs by itself; :class:`BackgroundLoop` is that loop and its thread, started at once and
stopped from any thread (garbage collection included): what is left on it is cancelled, as
``asyncio.run`` does, and the loop is closed (its selector's file descriptors with it).
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["BackgroundLoop"]


class BackgroundLoop:
    """An event loop running on a daemon thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.loop.call_soon(ready.set)
        self.thread = threading.Thread(target=_run_until_stopped, args=(self.loop,), name=name, daemon=True)
        self.thread.start()
        ready.wait()   # running once this returns: callers may hand it work at once

    def stop(self) -> threading.Thread:
        """Stop the loop without waiting (from any thread); returns the thread, which ends soon after."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        return self.thread

    def close(self) -> None:
        """:meth:`stop`, then wait until the thread has ended (unless called on it)."""
        thread = self.stop()
        if thread is not threading.current_thread():
            thread.join()

    async def aclose(self) -> None:
        """:meth:`close` for a caller on another event loop."""
        await asyncio.to_thread(self.stop().join)


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    """The thread: run the loop until it is stopped, then end what is left on it as ``asyncio.run``
    does (a simulated engine stepping there hands its other callers on) and close it."""
    try:
        loop.run_forever()
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
