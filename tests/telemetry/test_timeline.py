"""Slack timelines from spans: in memory or from a JSON-lines file, as text and as a PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry import trace

from jitagent.telemetry import (
    build_timelines,
    format_timeline,
    format_timelines,
    jsonl_tracer_provider,
    plot_timelines,
    read_spans,
    select_timelines,
    spans_from_sdk,
)
from otel_recorder import Recorder

S = 1_000_000_000  # nanoseconds


def _make_run(tracer: trace.Tracer, run_id: str, late: bool) -> None:
    """A run due at 10 s with stages plan (due 4 s) and work (due 9 s), one call each; late runs
    finish work at 11 s."""
    t0 = 1_000 * S
    run = tracer.start_span("invoke_workflow g", start_time=t0, attributes={
        "gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "g", "jitagent.pipeline.run_id": run_id,
        "jitagent.deadline": 1_010.0, "jitagent.slack.start_s": 10.0,
        "jitagent.slack.end_s": -1.0 if late else 1.0, "jitagent.slo.met": not late})
    context = trace.set_span_in_context(run)
    end = 1_011 if late else 1_009
    for node, start, finish, due in (("plan", 1_000, 1_003, 1_004.0), ("work", 1_003, end, 1_009.0)):
        stage = tracer.start_span(f"invoke_agent {node}", context, start_time=start * S, attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": node, "jitagent.deadline": due,
            "jitagent.slack.start_s": due - start, "jitagent.slack.end_s": due - finish,
            "jitagent.slo.met": finish <= due})
        call = tracer.start_span("chat m", trace.set_span_in_context(stage), start_time=start * S, attributes={
            "gen_ai.operation.name": "chat", "jitagent.request_class": node, "jitagent.deadline": due,
            "jitagent.slack.end_s": due - finish + 0.5, "jitagent.slo.met": finish - 0.5 <= due})
        call.add_event("jitagent.first_token", timestamp=(start + 1) * S)
        call.end(int((finish - 0.5) * S))
        stage.end(finish * S)
    run.end(end * S)


def _spans(tracer: trace.Tracer) -> None:
    _make_run(tracer, "run-a", late=False)
    _make_run(tracer, "run-b", late=True)
    tracer.start_span("chat m", start_time=1_005 * S).end(1_006 * S)  # a call outside any run


def test_timelines_from_memory_and_from_a_file_agree(tmp_path: Path) -> None:
    from_memory = _timelines()
    path = tmp_path / "spans.jsonl"
    with open(path, "w") as out:
        provider = jsonl_tracer_provider(out)
        _spans(provider.get_tracer("test"))
        provider.shutdown()
    from_file = build_timelines(read_spans(path))
    assert [t.rows for t in from_file] == [t.rows for t in from_memory]
    assert [t.is_run for t in from_file] == [True, True, False]

    a, b, call = from_memory
    assert a.met is True and b.met is False and call.met is None
    assert [(r.depth, r.label) for r in a.rows] == [(0, "g"), (1, "plan"), (2, "chat [plan]"), (1, "work"),
                                                    (2, "chat [work]")]
    work = b.rows[3]
    assert (work.start, work.end, work.deadline, work.slack_end, work.met) == (3.0, 11.0, 9.0, -2.0, False)
    assert b.rows[4].events == (("jitagent.first_token", 4.0),)
    assert b.horizon == 11.0


def _timelines() -> list:
    rec = Recorder()
    _spans(rec.tracer_provider.get_tracer("test"))
    return build_timelines(spans_from_sdk(rec.exporter.get_finished_spans()))


def test_selection_and_text_view() -> None:
    timelines = _timelines()
    assert [t.title for t in select_timelines(timelines)] == ["g  run run-a", "g  run run-b"]
    assert len(select_timelines(timelines, calls=True)) == 3
    [late] = select_timelines(timelines, missed=True)
    assert select_timelines(timelines, run="run-b") == [late]
    text = format_timeline(late, width=22)
    lines = text.splitlines()
    assert lines[0] == "g  run run-b: MISSED"
    work = next(line for line in lines if line.startswith("  work"))
    assert "3.000  11.000   9.000   +6.000    -2.000" in work
    bar = work[-22:]
    assert bar.count("|") == 1 and bar.index("|") == 18 and bar[6] == "x"  # due at 9 of 11 s; late: x
    plan = next(line for line in lines if line.startswith("  plan"))
    assert "#" in plan[-22:]
    summary = format_timelines(select_timelines(timelines), limit=1)
    assert summary.startswith("2 timelines: 1 met, 1 missed; showing 1") and "run-b" not in summary


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = plot_timelines(_timelines(), tmp_path / "t.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no timeline"):
        plot_timelines([], tmp_path / "none.png")


def test_a_file_that_is_not_spans_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"name": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: not spans .* \(1 line; line 1: no field 'context'\)"):
        read_spans(path)
