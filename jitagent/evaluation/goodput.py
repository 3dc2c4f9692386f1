"""Service goodput: the tokens delivered within their SLO, the metric every benchmark reports.

Each LLM call leaves a :class:`RequestRecord`; :func:`summarize` scores them over a measurement
:class:`Window` as DESIGN.md defines it. For a request with a prompt of P tokens and L output tokens,
with w the decode-token weight (default 1; 8 reproduces the JITServe artifact's weighting):

* stream: the P prompt tokens count iff the first token was delivered by ``arrival + ttft_s``; output
  token i (1-based) earns w iff delivered by ``arrival + ttft_s + (i - 1) * tpot_s``, so a late start
  still earns the later tokens that catch up with the schedule. The SLO is met iff the request
  finished and every token was on time.
* deadline: P + w·L count iff the request finished and its last token came by ``arrival + deadline_s``,
  else nothing.
* pipeline: the calls with a pipeline SLO sharing ``pipeline_run`` form one run. It is complete iff it
  has a ``final_round`` call and every call finished; it completes at its calls' latest token. If it
  completed by ``run_start + deadline_s``, P + w·L of every call count and the run is one request met;
  otherwise nothing counts and it is one request missed.

Requests (pipeline runs: by ``run_start``) arriving before ``window.warmup`` or at or after
``window.end`` are left out entirely. Within the window, a request without an SLO is not scored but
still enters the latency figures; an unfinished request misses its SLO (a stream keeps the tokens it
delivered on time). Tokens are judged by their delivery times only, so a run that drains past
``window.end`` may still earn them.

* service goodput = counted tokens / (end − warmup);
* request goodput = SLO-meeting requests / (end − warmup);
* SLO attainment = met / scored requests, a pipeline run counting as one request.

Latency figures (TTFT, TPOT, end-to-end, queue time) are taken over the finished calls in the window;
pipeline end-to-end over the complete runs. Every figure is also broken down by ``score_class``, with
the same window as denominator.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import chain
from typing import Any

import numpy as np

from jitagent.slo import SLO, DeadlineSLO, PipelineSLO, StreamSLO, parse_slo

__all__ = ["RequestRecord", "Window", "LatencyStats", "ClassSummary", "GoodputSummary", "summarize", "score_request"]

_STREAM_CHUNK = 1024  # streams scored per vectorised batch


@dataclass(slots=True)
class RequestRecord:
    """What one LLM call did, as the benchmark's ``records.jsonl`` holds it. Times in seconds on the run's clock.

    ``output_tokens`` is the request's true length; ``token_times`` the delivery time of each output
    token delivered, in order (shorter than ``output_tokens`` if the request did not finish).
    ``refused_at`` is when the engine refused it as unable to meet its SLO (a 429 ``slo_infeasible``
    to a client), if it did: its caller's wait ended there. ``policy``, ``seed`` and ``rate`` are
    provenance only.
    """

    id: str
    score_class: str
    arrival: float
    slo: SLO | None
    prompt_tokens: int
    output_tokens: int
    token_times: list[float]
    num_preemptions: int = 0
    first_scheduled: float | None = None
    pipeline_run: str | None = None
    run_start: float | None = None
    final_round: bool = False
    refused_at: float | None = None
    policy: str = ""
    seed: int = 0
    rate: float = 0.0

    def __post_init__(self) -> None:
        if self.prompt_tokens < 0:
            raise ValueError(f"record {self.id!r}: prompt_tokens must be >= 0, got {self.prompt_tokens}")
        if self.output_tokens < 1:
            raise ValueError(f"record {self.id!r}: output_tokens must be >= 1, got {self.output_tokens}")
        if self.num_preemptions < 0:
            raise ValueError(f"record {self.id!r}: num_preemptions must be >= 0, got {self.num_preemptions}")
        if isinstance(self.slo, PipelineSLO) and (self.pipeline_run is None or self.run_start is None):
            raise ValueError(f"record {self.id!r}: a pipeline SLO needs pipeline_run and run_start")

    @property
    def finished(self) -> bool:
        return len(self.token_times) == self.output_tokens

    def to_json(self) -> dict[str, Any]:
        """A plain dict for one ``records.jsonl`` line; the SLO as its ``model_dump()``."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["slo"] = None if self.slo is None else self.slo.model_dump()
        data["token_times"] = list(self.token_times)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        """Inverse of :meth:`to_json`. Raises :class:`ValueError` on unknown or missing fields or a bad SLO."""
        values = dict(data)
        slo = values.pop("slo", None)
        try:
            return cls(slo=None if slo is None else parse_slo(slo), **values)
        except TypeError as exc:
            raise ValueError(f"invalid request record: {exc}") from None


@dataclass(frozen=True, slots=True)
class Window:
    """The measured interval: requests arriving in ``[warmup, end)`` are scored."""

    warmup: float
    end: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.warmup) and math.isfinite(self.end)):
            raise ValueError(f"window bounds must be finite, got warmup={self.warmup!r}, end={self.end!r}")
        if self.end <= self.warmup:
            raise ValueError(f"window end must be after warm-up, got warmup={self.warmup!r}, end={self.end!r}")

    @property
    def duration(self) -> float:
        return self.end - self.warmup


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Mean and percentiles in seconds; all ``None`` when there was nothing to measure."""

    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencyStats:
        if not values:
            return cls(None, None, None, None)
        arr = np.asarray(values, dtype=float)
        p50, p90, p99 = np.percentile(arr, [50, 90, 99]).tolist()
        return cls(float(arr.mean()), p50, p90, p99)


@dataclass(frozen=True, slots=True)
class ClassSummary:
    """Goodput, attainment and latency of one request class (or of all of them)."""

    service_goodput: float
    slo_attainment: float | None  # None when nothing was scored
    request_goodput: float
    ttft_s: LatencyStats
    tpot_s: LatencyStats
    e2e_s: LatencyStats
    queue_s: LatencyStats
    pipeline_e2e_s: LatencyStats
    preemptions: int
    num_scored: int  # scored requests, a pipeline run counting as one
    num_met: int
    num_finished: int  # finished calls in the window, scored or not
    num_calls: int  # calls in the window, scored or not
    num_pipeline_runs: int
    tokens_counted: float  # P + w·L of what met its SLO (the goodput numerator)
    tokens_delivered: int  # output tokens delivered, on time or not

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (latency figures as nested dicts)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GoodputSummary(ClassSummary):
    """Figures over every scored request, and the same figures per ``score_class``."""

    by_class: dict[str, ClassSummary]


def summarize(records: Iterable[RequestRecord], window: Window, decode_weight: float = 1.0) -> GoodputSummary:
    """Score ``records`` over ``window`` with output tokens weighted ``decode_weight`` (see the module docstring).

    Raises:
        ValueError: on a bad weight, a record with more token times than output tokens, or a pipeline
            run whose calls disagree on run start, SLO or class.
    """
    if not (math.isfinite(decode_weight) and decode_weight > 0):
        raise ValueError(f"decode_weight must be positive and finite, got {decode_weight!r}")
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    streams: list[tuple[RequestRecord, StreamSLO]] = []
    runs: dict[str, list[RequestRecord]] = defaultdict(list)

    for rec in records:
        # A pipeline call is in or out of the window with its whole run.
        start = rec.run_start if rec.pipeline_run is not None and rec.run_start is not None else rec.arrival
        if not window.warmup <= start < window.end:
            continue
        if len(rec.token_times) > rec.output_tokens:
            raise ValueError(f"record {rec.id!r}: {len(rec.token_times)} token times for "
                             f"{rec.output_tokens} output tokens")
        tally = tallies[rec.score_class]
        tally.add_call(rec)
        if isinstance(rec.slo, StreamSLO):
            streams.append((rec, rec.slo))
        elif isinstance(rec.slo, DeadlineSLO):
            tally.add_request(*_score_deadline(rec, rec.slo, decode_weight))
        elif isinstance(rec.slo, PipelineSLO):
            runs[rec.pipeline_run].append(rec)  # type: ignore[index]  # checked in __post_init__

    # In chunks, so that the per-token arrays stay small enough to be cheap to allocate and cache-friendly.
    for i in range(0, len(streams), _STREAM_CHUNK):
        chunk = streams[i:i + _STREAM_CHUNK]
        counted, met_slo = _score_streams(chunk, decode_weight)
        for (rec, _), value, ok in zip(chunk, counted.tolist(), met_slo.tolist()):
            tallies[rec.score_class].add_request(ok, value)
    for run_id, calls in runs.items():
        _score_run(run_id, calls, tallies, decode_weight)

    per_class = {cls: t.summary(window.duration) for cls, t in sorted(tallies.items())}
    total = _Tally.merged(tallies.values()).summary(window.duration)
    return GoodputSummary(**{f.name: getattr(total, f.name) for f in fields(ClassSummary)}, by_class=per_class)


@dataclass(slots=True)
class _Tally:
    """Running sums for one class."""

    counted: float = 0.0
    delivered: int = 0
    scored: int = 0
    met: int = 0
    finished: int = 0
    calls: int = 0
    runs: int = 0
    preemptions: int = 0
    ttft: list[float] = field(default_factory=list)
    tpot: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)
    run_e2e: list[float] = field(default_factory=list)

    def add_call(self, rec: RequestRecord) -> None:
        """Counts and latencies of one call in the window, whether scored or not."""
        times = rec.token_times
        self.calls += 1
        self.delivered += len(times)
        self.preemptions += rec.num_preemptions
        if not rec.finished:
            return
        self.finished += 1
        self.ttft.append(times[0] - rec.arrival)
        self.e2e.append(times[-1] - rec.arrival)
        if len(times) >= 2:
            self.tpot.append((times[-1] - times[0]) / (len(times) - 1))
        if rec.first_scheduled is not None:
            self.queue.append(rec.first_scheduled - rec.arrival)

    def add_request(self, met: bool, counted: float) -> None:
        self.scored += 1
        self.met += met
        self.counted += counted

    @classmethod
    def merged(cls, tallies: Iterable[_Tally]) -> _Tally:
        out = cls()
        for t in tallies:
            for f in fields(cls):  # numbers add, latency lists concatenate
                setattr(out, f.name, getattr(out, f.name) + getattr(t, f.name))
        return out

    def summary(self, duration: float) -> ClassSummary:
        return ClassSummary(
            service_goodput=self.counted / duration,
            slo_attainment=self.met / self.scored if self.scored else None,
            request_goodput=self.met / duration,
            ttft_s=LatencyStats.of(self.ttft),
            tpot_s=LatencyStats.of(self.tpot),
            e2e_s=LatencyStats.of(self.e2e),
            queue_s=LatencyStats.of(self.queue),
            pipeline_e2e_s=LatencyStats.of(self.run_e2e),
            preemptions=self.preemptions,
            num_scored=self.scored,
            num_met=self.met,
            num_finished=self.finished,
            num_calls=self.calls,
            num_pipeline_runs=self.runs,
            tokens_counted=self.counted,
            tokens_delivered=self.delivered,
        )


def score_request(rec: RequestRecord, decode_weight: float = 1.0) -> tuple[bool, float]:
    """Whether one stream or deadline request met its SLO, and the tokens it earns: the rule
    :func:`summarize` applies to each (a pipeline call is scored with its run, not alone)."""
    if isinstance(rec.slo, StreamSLO):
        counted, met = _score_streams([(rec, rec.slo)], decode_weight)
        return bool(met[0]), float(counted[0])
    if isinstance(rec.slo, DeadlineSLO):
        return _score_deadline(rec, rec.slo, decode_weight)
    raise ValueError(f"record {rec.id!r}: only a stream or deadline request is scored alone, not {rec.slo!r:.80}")


def _score_deadline(rec: RequestRecord, slo: DeadlineSLO, decode_weight: float) -> tuple[bool, float]:
    """All or nothing: met when it finished by its deadline."""
    met = rec.finished and rec.token_times[-1] <= rec.arrival + slo.deadline_s
    return met, _value(rec, decode_weight) if met else 0.0


def _value(rec: RequestRecord, decode_weight: float) -> float:
    """Everything a request can earn: P + w·L."""
    return rec.prompt_tokens + decode_weight * rec.output_tokens


def _score_streams(
    streams: Sequence[tuple[RequestRecord, StreamSLO]], decode_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Counted tokens and SLO met, per stream, over all streams' token times at once."""
    n = len(streams)
    lengths = np.fromiter((len(r.token_times) for r, _ in streams), dtype=np.int64, count=n)
    total = int(lengths.sum())
    times = np.fromiter(chain.from_iterable(r.token_times for r, _ in streams), dtype=float, count=total)
    first_due = np.fromiter((r.arrival + slo.ttft_s for r, slo in streams), dtype=float, count=n)
    tpot = np.fromiter((slo.tpot_s for _, slo in streams), dtype=float, count=n)
    offsets = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    index = np.arange(total) - np.repeat(offsets, lengths)  # i - 1 for each token
    # Same operations in the same order as StreamSLO.token_due, so boundary cases agree bit for bit.
    on_time = times <= np.repeat(first_due, lengths) + index * np.repeat(tpot, lengths)
    cum = np.concatenate(([0], np.cumsum(on_time)))
    timely = cum[offsets + lengths] - cum[offsets]
    started = lengths > 0
    first_ok = np.zeros(n, dtype=bool)
    first_ok[started] = on_time[offsets[started]]
    prompt = np.fromiter((r.prompt_tokens for r, _ in streams), dtype=float, count=n)
    output = np.fromiter((r.output_tokens for r, _ in streams), dtype=np.int64, count=n)
    counted = np.where(first_ok, prompt, 0.0) + decode_weight * timely
    return counted, timely == output


def _score_run(run_id: str, calls: list[RequestRecord], tallies: dict[str, _Tally], decode_weight: float) -> None:
    """Score one pipeline run (all or nothing) into its class's tally."""
    head = calls[0]
    for rec in calls[1:]:
        if (rec.run_start, rec.slo, rec.score_class) != (head.run_start, head.slo, head.score_class):
            raise ValueError(f"pipeline run {run_id!r}: calls {head.id!r} and {rec.id!r} disagree on "
                             "run_start, SLO or score_class")
    tally = tallies[head.score_class]
    tally.runs += 1
    complete = any(rec.final_round for rec in calls) and all(rec.finished for rec in calls)
    if not complete:
        tally.add_request(False, 0.0)
        return
    completion = max(rec.token_times[-1] for rec in calls)
    tally.run_e2e.append(completion - head.run_start)  # type: ignore[operator]
    met = completion <= head.run_start + head.slo.deadline_s  # type: ignore[operator, union-attr]
    tally.add_request(met, sum(_value(rec, decode_weight) for rec in calls) if met else 0.0)
