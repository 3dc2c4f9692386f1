"""The requests waiting for admission, kept in first-deadline order one request at a time.

JIT re-ranks its waiting requests once a frame by their first deadline. Sorting them all at the
frame boundary made that one step wait on the policy in proportion to the queue (11 ms at 2,000
waiting), so :class:`WaitingIndex` keeps the order as requests come and go, and answers what a
frame must know before it looks at any request: which classes' length estimates the frame's
feasibility checks will read, the latest first deadline among requests that may have to be refused,
and the oldest arrival. Entries of requests that left are dropped lazily and the lists compacted
once they are mostly stale, so memory stays proportional to the requests waiting. While a frame's
sweep walks the entries (:attr:`WaitingIndex.held`), compaction waits until the next frame: the
sweep still counts the requests that were waiting when the frame began.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator

from jitagent.scheduling.request import RequestState

__all__ = ["WaitingIndex", "Entry"]

#: (first deadline, sequence number, request): in sweep order; the sequence number breaks ties by
#: arrival in the queue and tells an entry from a later one of the same request (requeued).
Entry = tuple[float, int, RequestState]

_STALE_SLACK = 64   # stale entries tolerated beyond the live ones before a compaction


class WaitingIndex:
    """Waiting requests, each with its entry's sequence number, in insertion order (as a set)."""

    __slots__ = ("live", "held", "_order", "_arrivals", "_next_seq", "_stale", "_class_members", "_refined",
                 "_refusable")

    def __init__(self) -> None:
        self.live: dict[RequestState, int] = {}
        self.held = False                                 # entries are being walked: no compaction
        self._order: list[Entry] = []                     # by (first deadline, seq); stale entries included
        self._arrivals: list[tuple[float, int, RequestState]] = []   # heap of timed requests' arrivals
        self._next_seq = 0
        self._stale = 0
        # What a frame reads of a request's class, kept per (class, max_tokens), see JIT._rank_waiting.
        self._class_members: dict[tuple[str, int], dict[RequestState, None]] = {}
        self._refined: dict[RequestState, None] = {}
        self._refusable: dict[RequestState, float] = {}   # request -> its first deadline

    def __len__(self) -> int:
        return len(self.live)

    def __contains__(self, req: RequestState) -> bool:
        return req in self.live

    def __iter__(self) -> Iterator[RequestState]:
        return iter(self.live)

    @property
    def next_seq(self) -> int:
        """The sequence number the next request added will get."""
        return self._next_seq

    def add(self, req: RequestState, key: float, *, timed: bool, class_key: tuple[str, int] | None,
            refined: bool, refusable: bool) -> int:
        """``req`` waits, first deadline ``key``; returns where its entry went in :attr:`entries`.
        ``timed``: it has an SLO (it may wait too long); ``class_key``: a frame reads its class's
        estimate; ``refined``: a frame refines its own estimate; ``refusable``: its caller asked to
        be refused rather than served late."""
        seq = self._next_seq
        self._next_seq += 1
        self.live[req] = seq
        entry = (key, seq, req)
        at = bisect.bisect_right(self._order, entry)
        self._order.insert(at, entry)
        if timed:
            heapq.heappush(self._arrivals, (req.arrival, seq, req))
        if class_key is not None:
            self._class_members.setdefault(class_key, {})[req] = None
        if refined:
            self._refined[req] = None
        if refusable:
            self._refusable[req] = key
        return at

    def discard(self, req: RequestState) -> int | None:
        """``req`` no longer waits; the sequence number of its entry, or None if it was not waiting."""
        seq = self.live.pop(req, None)
        if seq is None:
            return None
        key = (req.request_class, req.max_tokens)
        members = self._class_members.get(key)
        if members is not None and req in members:
            del members[req]
            if not members:
                del self._class_members[key]
        self._refined.pop(req, None)
        self._refusable.pop(req, None)
        self._stale += 1
        if not self.held:
            self.tidy()
        return seq

    def clear(self) -> None:
        """Forget every request and entry (nothing waits any more)."""
        self.live.clear()
        self.held = False
        self._order, self._arrivals, self._stale = [], [], 0
        self._class_members.clear()
        self._refined.clear()
        self._refusable.clear()

    @property
    def entries(self) -> list[Entry]:
        """Every entry in sweep order, stale ones included (tell them by :attr:`live`): the list itself,
        which :meth:`add` inserts into and a compaction replaces."""
        return self._order

    def ordered(self) -> list[tuple[float, RequestState]]:
        """The waiting requests with their first deadlines, in sweep order."""
        live = self.live
        return [(key, req) for key, seq, req in self._order if live.get(req) == seq]

    def class_keys(self) -> Iterable[tuple[str, int]]:
        return self._class_members.keys()

    def refined(self) -> Iterable[RequestState]:
        return self._refined.keys()

    def last_refusable_key(self) -> float | None:
        """The latest first deadline among the waiting requests whose callers asked to be refused."""
        return max(self._refusable.values(), default=None)

    def oldest_arrival(self) -> float | None:
        """The earliest arrival among the waiting requests with an SLO."""
        arrivals, live = self._arrivals, self.live
        while arrivals and live.get(arrivals[0][2]) != arrivals[0][1]:
            heapq.heappop(arrivals)
        return arrivals[0][0] if arrivals else None

    def tidy(self) -> None:
        """Compact the entries if they are mostly stale (not while :attr:`held`: call it on release)."""
        if self._stale > len(self.live) + _STALE_SLACK:
            self._compact()

    def _compact(self) -> None:
        live = self.live
        self._order = [entry for entry in self._order if live.get(entry[2]) == entry[1]]
        self._arrivals = [entry for entry in self._arrivals if live.get(entry[2]) == entry[1]]
        heapq.heapify(self._arrivals)
        self._stale = 0
