"""Online, survival-conditioned estimates of how many output tokens a request will produce.

Output lengths are learned per request class (a pipeline stage, a chat endpoint, ...) from the
requests that finish. The estimate for a request that has generated ``g`` tokens is a quantile of
the length distribution *conditioned on the length exceeding g*: high quantiles start conservative
and tighten by themselves as generation goes on, with no trained weights.

Until a class has ``min_samples`` finished requests it borrows the pooled samples of all classes,
and before anything has finished, a log-normal prior.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from statistics import NormalDist

__all__ = ["OutputLengthEstimator"]

_STANDARD_NORMAL = NormalDist()


class _Samples:
    """A bounded window of recent lengths, kept sorted for quantile queries."""

    __slots__ = ("sorted", "_order", "_capacity", "_suffix_sums")

    def __init__(self, capacity: int) -> None:
        self.sorted: list[int] = []
        self._order: deque[int] = deque()
        self._capacity = capacity
        self._suffix_sums: list[int] | None = None

    def add(self, length: int) -> None:
        if len(self._order) == self._capacity:
            old = self._order.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]
        self._order.append(length)
        bisect.insort(self.sorted, length)
        self._suffix_sums = None

    def conditional_mean(self, generated: int, min_tail: int) -> float | None:
        """Mean of the lengths greater than ``generated``; None with fewer than ``min_tail`` of them."""
        first = bisect.bisect_right(self.sorted, generated)
        tail = len(self.sorted) - first
        if tail < min_tail:
            return None
        if self._suffix_sums is None:  # rebuilt lazily: lengths arrive far less often than queries
            self._suffix_sums = list(itertools.accumulate(reversed(self.sorted), initial=0))[::-1]
        return self._suffix_sums[first] / tail

    def conditional_quantile(self, q: float, generated: int, min_tail: int) -> float | None:
        """q-quantile of the lengths greater than ``generated``; None with fewer than ``min_tail`` of them."""
        first = bisect.bisect_right(self.sorted, generated)
        tail = len(self.sorted) - first
        if tail < min_tail:
            return None
        return self.sorted[first + min(tail - 1, int(q * tail))]


class OutputLengthEstimator:
    """Per-class output-length distributions, learned online.

    Args:
        prior_median: median output length assumed before any request has finished.
        prior_sigma: log-space spread of that prior (1.0 puts its 95th percentile near 5x the median).
        min_samples: finished requests a class needs before its own samples are used.
        window: how many recent lengths each class keeps (the distribution follows drift).
    """

    def __init__(self, prior_median: float = 200.0, prior_sigma: float = 1.0, min_samples: int = 20,
                 window: int = 2000) -> None:
        if prior_median <= 0 or prior_sigma <= 0 or min_samples < 1 or window < min_samples:
            raise ValueError("prior_median and prior_sigma must be positive and window >= min_samples >= 1")
        self._mu = math.log(prior_median)
        self._sigma = prior_sigma
        self._min_samples = min_samples
        self._window = window
        self._classes: dict[str, _Samples] = {}
        self._pooled = _Samples(window)

    def observe(self, request_class: str, output_len: int) -> None:
        """Learn from a finished request that produced ``output_len`` tokens."""
        samples = self._classes.get(request_class)
        if samples is None:
            samples = self._classes[request_class] = _Samples(self._window)
        samples.add(output_len)
        self._pooled.add(output_len)

    def quantile(self, request_class: str, q: float, generated: int = 0, max_tokens: int | None = None) -> float:
        """The q-quantile of the total output length of a request that has already generated
        ``generated`` tokens, never below ``generated + 1`` nor above ``max_tokens``."""
        return self._bounded(self._lookup(request_class, generated, q), generated, max_tokens)

    def mean(self, request_class: str, generated: int = 0, max_tokens: int | None = None) -> float:
        """The expected total output length given ``generated`` tokens so far (same bounds as
        :meth:`quantile`); the prior's median stands in before samples exist."""
        return self._bounded(self._lookup(request_class, generated, None), generated, max_tokens)

    def _lookup(self, request_class: str, generated: int, q: float | None) -> float:
        min_tail = max(3, self._min_samples // 4)
        for samples in (self._classes.get(request_class), self._pooled):
            if samples is not None and len(samples.sorted) >= self._min_samples:
                estimate = (samples.conditional_mean(generated, min_tail) if q is None
                            else samples.conditional_quantile(q, generated, min_tail))
                if estimate is not None:
                    return estimate
        return self._prior_quantile(0.5 if q is None else q, generated)

    @staticmethod
    def _bounded(estimate: float, generated: int, max_tokens: int | None) -> float:
        estimate = max(estimate, generated + 1)
        return min(estimate, max_tokens) if max_tokens is not None else estimate

    def remaining(self, request_class: str, q: float, generated: int = 0, max_tokens: int | None = None) -> float:
        """Estimated output tokens still to come (the conditioned quantile minus what was generated)."""
        return self.quantile(request_class, q, generated, max_tokens) - generated

    def _prior_quantile(self, q: float, generated: int) -> float:
        # Log-normal conditioned on exceeding `generated`: F^-1(F(g) + q * (1 - F(g))).
        below = _STANDARD_NORMAL.cdf((math.log(generated) - self._mu) / self._sigma) if generated > 0 else 0.0
        p = min(below + q * (1.0 - below), 1.0 - 1e-9)
        return math.exp(self._mu + self._sigma * _STANDARD_NORMAL.inv_cdf(max(p, 1e-9)))
