"""Online, survival-conditioned estimates of how many output tokens a request will produce.

Output lengths are learned per request class (a pipeline stage, a chat endpoint, ...) from the
requests that finish. The estimate for a request that has generated ``g`` tokens is a quantile of
the length distribution *conditioned on the length exceeding g*: high quantiles start conservative
and tighten by themselves as generation goes on, with no trained weights.

Until a class has ``min_samples`` finished requests it borrows the pooled samples of all classes,
and before anything has finished, a log-normal prior.

The class is the caller's to choose, so the estimator keeps at most ``max_classes`` of them (256 by
default): a new class beyond that evicts the least recently used one (observed or looked up), whose
requests then borrow the pooled samples until their class has ``min_samples`` again. Memory is
bounded by ``max_classes`` windows whatever callers send.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import OrderedDict, deque
from statistics import NormalDist
from typing import Any

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

    def conditional_quantiles(self, qs: tuple[float, ...], generated: int, min_tail: int) -> list[float] | None:
        """Each q-quantile of the lengths greater than ``generated``; None with fewer than ``min_tail`` of them."""
        first = bisect.bisect_right(self.sorted, generated)
        tail = len(self.sorted) - first
        if tail < min_tail:
            return None
        return [self.sorted[first + min(tail - 1, int(q * tail))] for q in qs]


class OutputLengthEstimator:
    """Per-class output-length distributions, learned online.

    Args:
        prior_median: median output length assumed before any request has finished.
        prior_sigma: log-space spread of that prior (1.0 puts its 95th percentile near 5x the median).
        min_samples: finished requests a class needs before its own samples are used.
        window: how many recent lengths each class keeps (the distribution follows drift).
        max_classes: how many classes keep their own samples; the least recently used is forgotten
            first when a new one arrives beyond that.
    """

    #: Lookups remembered between two observations: requests of a class that have generated as many
    #: tokens (in a batch that started together) ask the same question, and the answer only changes
    #: when a length is observed. Cleared when full, so that it stays bounded without observations.
    MEMO_SIZE = 4096

    def __init__(self, prior_median: float = 200.0, prior_sigma: float = 1.0, min_samples: int = 20,
                 window: int = 2000, max_classes: int = 256) -> None:
        if prior_median <= 0 or prior_sigma <= 0 or min_samples < 1 or window < min_samples:
            raise ValueError("prior_median and prior_sigma must be positive and window >= min_samples >= 1")
        if max_classes < 1:
            raise ValueError(f"max_classes must be at least 1, got {max_classes}")
        self._mu = math.log(prior_median)
        self._sigma = prior_sigma
        self._min_samples = min_samples
        self._window = window
        self._max_classes = max_classes
        self._classes: OrderedDict[str, _Samples] = OrderedDict()   # least recently used first
        self._pooled = _Samples(window)
        self._memo: dict[tuple[str, Any, int, int | None], Any] = {}

    @property
    def num_classes(self) -> int:
        """Classes that keep samples of their own (at most ``max_classes``)."""
        return len(self._classes)

    def observe(self, request_class: str, output_len: int) -> None:
        """Learn from a finished request that produced ``output_len`` tokens."""
        samples = self._classes.get(request_class)
        if samples is None:
            if len(self._classes) >= self._max_classes:
                self._classes.popitem(last=False)
            samples = self._classes[request_class] = _Samples(self._window)
        else:
            self._classes.move_to_end(request_class)
        samples.add(output_len)
        self._pooled.add(output_len)
        self._memo.clear()

    def quantile(self, request_class: str, q: float, generated: int = 0, max_tokens: int | None = None) -> float:
        """The q-quantile of the total output length of a request that has already generated
        ``generated`` tokens, never below ``generated + 1`` nor above ``max_tokens``."""
        estimate = self._memo.get((request_class, q, generated, max_tokens))
        return self._lookup(request_class, q, generated, max_tokens) if estimate is None else estimate

    def quantiles(self, request_class: str, qs: tuple[float, ...], generated: int = 0,
                  max_tokens: int | None = None) -> tuple[float, ...]:
        """:meth:`quantile` at each of ``qs``, remembered as one answer (what a caller asking for
        several quantiles of each request saves)."""
        key = (request_class, qs, generated, max_tokens)
        estimates = self._memo.get(key)
        if estimates is None:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            estimates = self._memo[key] = tuple([self._bounded(estimate, generated, max_tokens)
                                                 for estimate in self._estimates(request_class, generated, qs)])
        return estimates

    def mean(self, request_class: str, generated: int = 0, max_tokens: int | None = None) -> float:
        """The expected total output length given ``generated`` tokens so far (same bounds as
        :meth:`quantile`); the prior's median stands in before samples exist."""
        estimate = self._memo.get((request_class, None, generated, max_tokens))
        return self._lookup(request_class, None, generated, max_tokens) if estimate is None else estimate

    def _lookup(self, request_class: str, q: float | None, generated: int, max_tokens: int | None) -> float:
        """The quantile (the mean when ``q`` is None), bounded, computed and remembered."""
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        estimate = self._bounded(self._estimates(request_class, generated, None if q is None else (q,))[0],
                                 generated, max_tokens)
        self._memo[request_class, q, generated, max_tokens] = estimate
        return estimate

    def _estimates(self, request_class: str, generated: int, qs: tuple[float, ...] | None) -> list[float]:
        """Unbounded estimates at each of ``qs`` (the mean when None), all from the same samples: the
        class's own, else the pooled ones, else the prior (which source answers depends on the
        samples beyond ``generated``, not on q)."""
        min_tail = max(3, self._min_samples // 4)
        own = self._classes.get(request_class)
        if own is not None:
            self._classes.move_to_end(request_class)
        for samples in (own, self._pooled):
            if samples is not None and len(samples.sorted) >= self._min_samples:
                if qs is None:
                    mean = samples.conditional_mean(generated, min_tail)
                    if mean is not None:
                        return [mean]
                else:
                    estimates = samples.conditional_quantiles(qs, generated, min_tail)
                    if estimates is not None:
                        return estimates
        return [self._prior_quantile(q, generated) for q in ((0.5,) if qs is None else qs)]

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
