"""Capacity search: the highest arrival rate at which a policy keeps SLO attainment at its target.

DESIGN.md defines a policy's capacity as the highest rate whose SLO attainment stays >= 90%; resource
saving = 1 − capacity(baseline) / capacity(jit). Attainment falls with the rate, noisily; the search
assumes it is monotone. :func:`find_capacity` brackets the threshold by doubling (or halving) from a
starting rate, then bisects geometrically (the tolerance is relative) until the bracket's
``hi / lo − 1`` is within ``rel_tol``. Each rate is evaluated at most once: a probe is a whole
benchmark run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Probe", "CapacityResult", "find_capacity"]

# Halving stops at start / 2**_MAX_HALVINGS: a policy failing there has no useful capacity.
_MAX_HALVINGS = 8


@dataclass(frozen=True, slots=True)
class Probe:
    """One evaluated rate (requests per second) and the SLO attainment it gave."""

    rate: float
    attainment: float


@dataclass(frozen=True, slots=True)
class CapacityResult:
    """The capacity found and every probe, in the order they were evaluated.

    ``capacity`` is the highest probed rate that met the target, 0.0 if none did. ``converged`` is
    False when ``max_probes`` ran out before the bracket closed to ``rel_tol``.
    """

    capacity: float
    target: float
    converged: bool
    probes: tuple[Probe, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict for the benchmark report."""
        return {
            "capacity": self.capacity,
            "target": self.target,
            "converged": self.converged,
            "probes": [{"rate": p.rate, "attainment": p.attainment} for p in self.probes],
        }


def find_capacity(
    attainment_at: Callable[[float], float],
    *,
    target: float = 0.9,
    start: float,
    rel_tol: float = 0.05,
    max_probes: int = 16,
) -> CapacityResult:
    """Search for the highest rate ``r`` with ``attainment_at(r) >= target``.

    Args:
        attainment_at: runs the workload at a rate and returns its SLO attainment in [0, 1].
        target: the attainment a rate must reach, in (0, 1].
        start: the first rate to try, > 0; the search goes down to ``start / 256`` at most.
        rel_tol: stop once the highest passing and lowest failing rates are within this ratio.
        max_probes: the most evaluations of ``attainment_at``.

    Raises:
        ValueError: on a bad argument, or when ``attainment_at`` returns something outside [0, 1].
    """
    if not (math.isfinite(target) and 0 < target <= 1):
        raise ValueError(f"target must be in (0, 1], got {target!r}")
    if not (math.isfinite(start) and start > 0):
        raise ValueError(f"start must be a positive finite rate, got {start!r}")
    if not (math.isfinite(rel_tol) and rel_tol > 0):
        raise ValueError(f"rel_tol must be positive and finite, got {rel_tol!r}")
    if max_probes < 1:
        raise ValueError(f"max_probes must be >= 1, got {max_probes!r}")

    seen: dict[float, float] = {}  # rate -> attainment, in evaluation order

    def meets(rate: float) -> bool:
        if rate not in seen:
            value = float(attainment_at(rate))
            if not 0 <= value <= 1:  # also rejects NaN
                raise ValueError(f"attainment_at({rate!r}) returned {value!r}, expected a share in [0, 1]")
            seen[rate] = value
        return seen[rate] >= target

    def result(capacity: float, converged: bool) -> CapacityResult:
        probes = tuple(Probe(rate, value) for rate, value in seen.items())
        return CapacityResult(capacity, target, converged, probes)

    # Bracket: lo meets the target, hi does not.
    if meets(start):
        lo = start
        while True:
            if len(seen) >= max_probes:
                return result(lo, False)
            if not meets(2 * lo):
                hi = 2 * lo
                break
            lo *= 2
    else:
        hi = start
        while True:
            if hi <= start / 2**_MAX_HALVINGS:
                return result(0.0, True)
            if len(seen) >= max_probes:
                return result(0.0, False)
            if meets(hi / 2):
                lo = hi / 2
                break
            hi /= 2

    while hi / lo - 1 > rel_tol:
        mid = math.sqrt(lo * hi)
        if not lo < mid < hi:  # the bracket is as narrow as floats allow
            break
        if len(seen) >= max_probes:
            return result(lo, False)
        if meets(mid):
            lo = mid
        else:
            hi = mid
    return result(lo, True)
