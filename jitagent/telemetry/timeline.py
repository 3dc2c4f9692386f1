"""Per-run slack timelines from spans, and their terminal view.

A timeline is one root span (a ``jit_slo`` run, a benchmark's pipeline run, or a call made
outside any run) with the spans under it, in start order: when each began and ended, when it was
due, its slack at the start and at the end, and whether it met its deadline, all in seconds from
the root's start. Spans come from a JSON-lines file (:func:`read_spans`: what ``jitagent bench
--trace`` and :func:`~jitagent.telemetry.export.jsonl_tracer_provider` write) or from the SDK's
finished spans (:func:`spans_from_sdk`, e.g. an ``InMemorySpanExporter``'s).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jitagent.telemetry import names

__all__ = ["SpanData", "Row", "Timeline", "read_spans", "spans_from_sdk", "build_timelines", "select_timelines",
           "format_timeline", "format_timelines"]

_ISO = "%Y-%m-%dT%H:%M:%S.%fZ"   # the SDK's timestamps in to_json


@dataclass(frozen=True, slots=True)
class SpanData:
    """A finished span, as much of it as a timeline needs; times are Unix seconds."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: float
    end: float
    attributes: Mapping[str, Any]
    events: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Row:
    """One span of a timeline; times in seconds from the timeline's start."""

    depth: int
    label: str
    start: float
    end: float
    deadline: float | None
    slack_start: float | None
    slack_end: float | None
    met: bool | None
    events: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Timeline:
    """A root span and everything under it; ``rows[0]`` is the root."""

    title: str
    start: float     # Unix seconds
    rows: tuple[Row, ...]
    is_run: bool     # the root is a workflow run (else a call made outside any run)
    run_id: str | None

    @property
    def met(self) -> bool | None:
        return self.rows[0].met

    @property
    def horizon(self) -> float:
        """Where a picture of it should end: its last end or deadline."""
        return max(max(r.end, r.deadline or 0.0) for r in self.rows)


def _unix(iso: str) -> float:
    return datetime.strptime(iso, _ISO).replace(tzinfo=timezone.utc).timestamp()


def read_spans(path: str | Path) -> list[SpanData]:
    """The spans of a JSON-lines file of SDK spans (``ReadableSpan.to_json``); ValueError naming
    the line when one is not such a span."""
    spans = []
    with open(path) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                spans.append(SpanData(
                    raw["context"]["trace_id"], raw["context"]["span_id"], raw.get("parent_id"), raw["name"],
                    _unix(raw["start_time"]), _unix(raw["end_time"]), raw.get("attributes") or {},
                    tuple((e["name"], _unix(e["timestamp"])) for e in raw.get("events") or ())))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a span as the OpenTelemetry SDK writes it ({exc})") from None
    return spans


def spans_from_sdk(spans: Iterable[Any]) -> list[SpanData]:
    """:class:`SpanData` of the SDK's finished spans (``ReadableSpan``)."""
    def span_id(value: int) -> str:
        return f"0x{value:016x}"

    return [SpanData(f"0x{s.context.trace_id:032x}", span_id(s.context.span_id),
                     span_id(s.parent.span_id) if s.parent is not None else None, s.name, s.start_time / 1e9,
                     s.end_time / 1e9, dict(s.attributes or {}), tuple((e.name, e.timestamp / 1e9) for e in s.events))
            for s in spans]


def _label(span: SpanData) -> str:
    attributes = span.attributes
    operation = attributes.get(names.OPERATION)
    if operation == "invoke_workflow":
        return str(attributes.get(names.WORKFLOW_NAME, span.name))
    if operation == "invoke_agent":
        return str(attributes.get(names.AGENT_NAME, span.name))
    request_class = attributes.get(names.REQUEST_CLASS)
    return f"{operation} [{request_class}]" if operation and request_class else span.name


def _title(root: SpanData) -> str:
    attributes = root.attributes
    run = attributes.get(names.RUN_ID)
    parts = [_label(root), f"run {run}" if run is not None else str(attributes.get(names.RESPONSE_ID, ""))]
    if names.POLICY in attributes:
        parts.append(f"policy {attributes[names.POLICY]}")
    return "  ".join(p for p in parts if p)


def _row(span: SpanData, depth: int, origin: float) -> Row:
    attributes = span.attributes
    deadline = attributes.get(names.DEADLINE)
    met = attributes.get(names.SLO_MET)
    return Row(depth, _label(span), span.start - origin, span.end - origin,
               deadline - origin if deadline is not None else None, attributes.get(names.SLACK_START),
               attributes.get(names.SLACK_END), met if isinstance(met, bool) else None,
               tuple((name, at - origin) for name, at in span.events))


def build_timelines(spans: Iterable[SpanData]) -> list[Timeline]:
    """One timeline per root span (a span whose parent is not among ``spans``), in start order."""
    spans = list(spans)
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanData]] = defaultdict(list)
    roots = []
    for span in spans:
        if span.parent_id is None or span.parent_id not in ids:
            roots.append(span)
        else:
            children[span.parent_id].append(span)
    timelines = []
    for root in sorted(roots, key=lambda s: s.start):
        rows: list[Row] = []
        stack = [(root, 0)]
        while stack:
            span, depth = stack.pop()
            rows.append(_row(span, depth, root.start))
            stack.extend((child, depth + 1) for child in sorted(children[span.span_id],
                                                                  key=lambda s: (s.start, s.name), reverse=True))
        attributes = root.attributes
        run_id = attributes.get(names.RUN_ID)
        timelines.append(Timeline(_title(root), root.start, tuple(rows),
                                  attributes.get(names.OPERATION) == "invoke_workflow",
                                  str(run_id) if run_id is not None else None))
    return timelines


def select_timelines(timelines: Sequence[Timeline], *, run: str | None = None, missed: bool = False,
                     calls: bool = False) -> list[Timeline]:
    """Pick timelines: runs only, unless there are none or ``calls`` asks for the calls made outside
    any run too; with ``run``, the run of that id; with ``missed``, those that missed their deadline."""
    chosen = list(timelines)
    if not calls and any(t.is_run for t in chosen):
        chosen = [t for t in chosen if t.is_run]
    if run is not None:
        chosen = [t for t in chosen if t.run_id == run]
    if missed:
        chosen = [t for t in chosen if t.met is False]
    return chosen


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _bar(row: Row, scale: float, width: int) -> str:
    cells = [" "] * width
    first = min(width - 1, int(row.start * scale))
    last = min(width - 1, max(first, math.ceil(row.end * scale) - 1))
    mark = {True: "#", False: "x", None: "="}[row.met]
    for i in range(first, last + 1):
        cells[i] = mark
    if row.deadline is not None and 0 <= row.deadline * scale <= width:  # the horizon is the last cell's end
        cells[min(width - 1, int(row.deadline * scale))] = "|"
    return "".join(cells)


def format_timeline(timeline: Timeline, width: int = 40) -> str:
    """A table of the timeline's spans with a bar each (``#`` met, ``x`` missed, ``=`` no deadline;
    ``|`` the deadline), times in seconds from the run's start."""
    root = timeline.rows[0]
    verdict = {True: "met", False: "MISSED", None: "no deadline"}[root.met]
    horizon = timeline.horizon or 1.0
    scale = width / horizon
    labels = ["  " * r.depth + r.label for r in timeline.rows]
    label_width = max(len(label) for label in labels)
    header = (f"{'span'.ljust(label_width)}  {'start':>7} {'end':>7} {'due':>7} {'slack@0':>8} {'slack@end':>9}"
              f"  0{f'{horizon:.2f} s'.rjust(width - 1)}")
    lines = [f"{timeline.title}: {verdict}", header]
    for label, row in zip(labels, timeline.rows):
        due = "-" if row.deadline is None else f"{row.deadline:.3f}"
        lines.append(f"{label.ljust(label_width)}  {row.start:7.3f} {row.end:7.3f} {due:>7} "
                     f"{_signed(row.slack_start):>8} {_signed(row.slack_end):>9}  {_bar(row, scale, width)}")
    return "\n".join(lines)


def format_timelines(timelines: Sequence[Timeline], limit: int | None = None, width: int = 40) -> str:
    """How many of ``timelines`` met their deadline, then the first ``limit`` of them in full."""
    shown = timelines[:limit] if limit is not None else timelines
    met = sum(t.met is True for t in timelines)
    missed = sum(t.met is False for t in timelines)
    head = f"{len(timelines)} timelines: {met} met, {missed} missed; showing {len(shown)}"
    return "\n\n".join([head, *(format_timeline(t, width) for t in shown)])
