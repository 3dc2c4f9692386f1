"""Engine-clock times as span timestamps.

Engines, ``jit_slo`` and the scheduler measure time with ``time.monotonic()`` (a benchmark with
its own virtual clock); spans carry Unix times. An offset read once turns the one into the other.
"""

from __future__ import annotations

import time

__all__ = ["monotonic_offset", "unix_ns"]


def monotonic_offset() -> float:
    """What to add to a ``time.monotonic()`` reading, now, to make it a Unix time in seconds."""
    return time.time() - time.monotonic()


def unix_ns(t: float, offset: float) -> int:
    """``t + offset`` seconds as a span timestamp (nanoseconds)."""
    return round((t + offset) * 1e9)
