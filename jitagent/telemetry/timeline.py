"""Per-run slack timelines from spans, and their terminal view.

A timeline is one root span (a ``jit_slo`` run, a benchmark's pipeline run, or a call made
outside any run) with the spans under it, in start order: when each began and ended, when it was
due, its slack at the start and at the end, and whether it met its deadline, all in seconds from
the root's start. Spans come from a JSON-lines file (:func:`read_spans`: what ``jitagent bench
--trace`` and :func:`~jitagent.telemetry.export.jsonl_tracer_provider` write) or from the SDK's
finished spans (:func:`spans_from_sdk`, e.g. an ``InMemorySpanExporter``'s).

A span file is the caller's: :func:`read_spans` reads only a regular file of at most
:data:`MAX_SPAN_FILE_BYTES`, skips (and counts, with one warning) the lines that are not spans: not
JSON, not UTF-8, longer than :data:`MAX_SPAN_LINE_BYTES`, the wrong shape, or a timeline attribute
of the wrong type; and every label and title is made printable (control characters, escape
sequences, bidi overrides and lone surrogates shown as escapes) and cut to :data:`MAX_LABEL_CHARS`.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jitagent.inputs import open_input, printable
from jitagent.telemetry import names

__all__ = ["SpanData", "Row", "Timeline", "read_spans", "spans_from_sdk", "build_timelines", "select_timelines",
           "format_timeline", "format_timelines", "MAX_SPAN_FILE_BYTES", "MAX_SPAN_LINE_BYTES", "MAX_LABEL_CHARS",
           "MAX_INDENT"]

logger = logging.getLogger(__name__)

_ISO = "%Y-%m-%dT%H:%M:%S.%fZ"   # the SDK's timestamps in to_json

MAX_SPAN_FILE_BYTES = 1 << 30   # about 700,000 spans as jitagent bench --trace writes them
MAX_SPAN_LINE_BYTES = 4 << 20   # a span with its prompt and completion recorded (trace_content) fits
MAX_LABEL_CHARS = 60            # a label or title longer than this is cut, marked with "…"
MAX_INDENT = 12                 # deeper spans are indented as much as this depth
_MAX_SECONDS = 1e11             # a time or slack beyond this (Unix time in the year 5138) is not one

# The attributes a timeline reads, by the type they must have.
_TEXT_ATTRIBUTES = (names.OPERATION, names.WORKFLOW_NAME, names.AGENT_NAME, names.REQUEST_CLASS, names.RUN_ID,
                    names.POLICY, names.RESPONSE_ID)
_NUMBER_ATTRIBUTES = (names.DEADLINE, names.SLACK_START, names.SLACK_END)


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
    """The spans of a JSON-lines file of SDK spans (``ReadableSpan.to_json``).

    Lines that are not such spans are skipped; their number and the first of them are logged once,
    as a warning.

    Raises:
        ValueError: one line naming the file: not a regular file, larger than
            :data:`MAX_SPAN_FILE_BYTES`, or lines of which none is a span.
    """
    where = printable(str(path))
    spans: list[SpanData] = []
    skipped = 0
    first_problem = ""
    with open_input(path, "span file", MAX_SPAN_FILE_BYTES) as file:
        for number, line in enumerate(_lines(file), 1):
            if line is not None and not line.strip():
                continue
            try:
                if line is None:
                    raise ValueError(f"longer than {MAX_SPAN_LINE_BYTES} bytes")
                spans.append(_parse_span(line))
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
                skipped += 1
                reason = f"no field {exc}" if isinstance(exc, KeyError) else str(exc)
                first_problem = first_problem or f"line {number}: {printable(reason, 200)}"
    lines = f"{skipped} line{'s' * (skipped > 1)}"
    if skipped and not spans:
        raise ValueError(f"{where}: not spans as the OpenTelemetry SDK writes them ({lines}; {first_problem})")
    if skipped:
        logger.warning("%s: skipped %s that are not spans as the OpenTelemetry SDK writes them (%s)",
                       where, lines, first_problem)
    return spans


def _lines(file: Any) -> Iterable[bytes | None]:
    """The file's lines, ``None`` for one longer than :data:`MAX_SPAN_LINE_BYTES` (read past, never held)."""
    while line := file.readline(MAX_SPAN_LINE_BYTES + 1):
        if len(line) <= MAX_SPAN_LINE_BYTES:
            yield line
            continue
        while line and not line.endswith(b"\n"):  # the rest of the long line
            line = file.readline(MAX_SPAN_LINE_BYTES)
        yield None


def _parse_span(line: bytes) -> SpanData:
    """One line of SDK JSON as a span; ValueError, KeyError or TypeError when it is not one."""
    raw = json.loads(line.decode("utf-8"))
    context = raw["context"]
    parent = raw.get("parent_id")
    return SpanData(_text(context["trace_id"]), _text(context["span_id"]), None if parent is None else _text(parent),
                    _text(raw["name"]), _unix(raw["start_time"]), _unix(raw["end_time"]),
                    _timeline_attributes(raw.get("attributes") or {}),
                    tuple((_text(e["name"]), _unix(e["timestamp"])) for e in raw.get("events") or ()))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _timeline_attributes(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    """``attributes``, once those a timeline reads are checked: text a scalar, times finite numbers
    of seconds, whether the SLO was met a boolean; TypeError or ValueError naming the first that is not."""
    if not isinstance(attributes, Mapping):
        raise TypeError(f"attributes: expected an object, got {type(attributes).__name__}")
    for key in _TEXT_ATTRIBUTES:
        value = attributes.get(key, "")
        if not isinstance(value, (str, int, float)):  # bool is an int: a scalar like the rest
            raise TypeError(f"{key}: expected text, got {type(value).__name__}")
    for key in _NUMBER_ATTRIBUTES:
        value = attributes.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not abs(value) <= _MAX_SECONDS:
            raise ValueError(f"{key}: expected seconds (a number of magnitude at most {_MAX_SECONDS:g}), "
                             f"got {printable(repr(value), 40)}")
    if not isinstance(attributes.get(names.SLO_MET, False), bool):
        raise TypeError(f"{names.SLO_MET}: expected true or false, got {type(attributes[names.SLO_MET]).__name__}")
    return attributes


def spans_from_sdk(spans: Iterable[Any]) -> list[SpanData]:
    """:class:`SpanData` of the SDK's finished spans (``ReadableSpan``).

    Raises:
        ValueError, TypeError: a timeline attribute of the wrong type (``jitagent.deadline`` not a number).
    """
    def span_id(value: int) -> str:
        return f"0x{value:016x}"

    return [SpanData(f"0x{s.context.trace_id:032x}", span_id(s.context.span_id),
                     span_id(s.parent.span_id) if s.parent is not None else None, s.name, s.start_time / 1e9,
                     s.end_time / 1e9, dict(_timeline_attributes(s.attributes or {})),
                     tuple((e.name, e.timestamp / 1e9) for e in s.events))
            for s in spans]


def _label(span: SpanData) -> str:
    """What a row is called, printable and cut to :data:`MAX_LABEL_CHARS` (its text is the caller's)."""
    attributes = span.attributes
    operation = attributes.get(names.OPERATION)
    if operation == "invoke_workflow":
        label = str(attributes.get(names.WORKFLOW_NAME, span.name))
    elif operation == "invoke_agent":
        label = str(attributes.get(names.AGENT_NAME, span.name))
    else:
        request_class = attributes.get(names.REQUEST_CLASS)
        label = f"{operation} [{request_class}]" if operation and request_class else span.name
    return printable(label, MAX_LABEL_CHARS)


def _title(root: SpanData) -> str:
    attributes = root.attributes
    run = attributes.get(names.RUN_ID)
    parts = [_label(root), f"run {printable(str(run), MAX_LABEL_CHARS)}" if run is not None
             else printable(str(attributes.get(names.RESPONSE_ID, "")), MAX_LABEL_CHARS)]
    if names.POLICY in attributes:
        parts.append(f"policy {printable(str(attributes[names.POLICY]), MAX_LABEL_CHARS)}")
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
        visited: set[str] = set()  # span ids repeated in a file can make a cycle: each id once
        while stack:
            span, depth = stack.pop()
            if span.span_id in visited:
                continue
            visited.add(span.span_id)
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
    first = max(0, min(width - 1, int(row.start * scale)))  # a span may start before its root
    last = max(first, min(width - 1, math.ceil(row.end * scale) - 1))
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
    horizon = timeline.horizon if timeline.horizon > 0 else 1.0
    scale = width / horizon
    labels = ["  " * min(r.depth, MAX_INDENT) + r.label for r in timeline.rows]
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
