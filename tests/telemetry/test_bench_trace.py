"""``jitagent bench --trace`` and ``jitagent trace view|plot``: spans made from the benchmark's records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitagent.cli import main
from jitagent.evaluation.goodput import RequestRecord, Window, summarize
from jitagent.telemetry import build_timelines, read_spans


def _bench(tmp_path: Path, *extra: str) -> int:
    return main(["bench", "--workload", "mixed", "--policies", "fcfs", "--rate", "2", "--duration", "30", "--jobs",
                 "1", "--no-progress", "--out", str(tmp_path / "out"), *extra])


def test_bench_trace_has_a_span_per_call_nested_in_runs_and_agrees_with_the_scores(tmp_path: Path, capsys) -> None:
    path = tmp_path / "spans.jsonl"
    assert _bench(tmp_path, "--records", "--trace", str(path)) == 0
    assert f"spans to {path}" in capsys.readouterr().out
    records = [RequestRecord.from_json(json.loads(line))
               for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    spans = read_spans(path)
    calls = [s for s in spans if s.attributes["gen_ai.operation.name"] == "chat"]
    assert sorted(s.attributes["gen_ai.response.id"] for s in calls) == sorted(r.id for r in records)
    by_id = {s.span_id: s for s in spans}
    record_of = {r.id: r for r in records}
    for call in calls:
        record = record_of[call.attributes["gen_ai.response.id"]]
        assert call.start == pytest.approx(record.arrival, abs=1e-6)  # virtual seconds from the epoch
        assert call.attributes["gen_ai.usage.output_tokens"] == len(record.token_times)
        assert call.attributes["jitagent.policy"] == "fcfs"
        if record.pipeline_run is not None:
            stage = by_id[call.parent_id]
            run = by_id[stage.parent_id]
            assert stage.name.startswith("invoke_agent round") and run.name.startswith("invoke_workflow")
            assert run.attributes["jitagent.pipeline.run_id"] == record.pipeline_run
        else:
            assert call.parent_id is None

    # What met its SLO in the spans is what the benchmark scored as met (no warm-up here).
    summary = summarize(records, Window(warmup=0.0, end=1e9))
    timelines = build_timelines(spans)
    assert sum(t.met is True for t in timelines) == summary.num_met
    assert sum(t.met is not None for t in timelines) == summary.num_scored


def test_trace_view_and_plot(tmp_path: Path, capsys) -> None:
    path = tmp_path / "spans.jsonl"
    assert _bench(tmp_path, "--trace", str(path)) == 0
    capsys.readouterr()
    assert main(["trace", "view", str(path), "--limit", "1", "--width", "30"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].endswith("showing 1") and "run run-" in text and "slack@end" in text
    png = tmp_path / "t.png"
    assert main(["trace", "plot", str(path), "--limit", "1", "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000
    assert main(["trace", "view", str(tmp_path / "missing.jsonl")]) == 2
    assert "jitagent trace: error:" in capsys.readouterr().err


def test_bench_trace_without_the_sdk_fails_before_running(tmp_path: Path, capsys,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jitagent.telemetry.export.importlib.util.find_spec", lambda name: None)
    assert _bench(tmp_path, "--trace", str(tmp_path / "spans.jsonl")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'jitagent-core[otel]'" in err
    assert not (tmp_path / "out" / "results.json").exists()
