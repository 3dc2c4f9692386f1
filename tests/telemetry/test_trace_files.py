"""``jitagent trace view|plot`` on span files the caller wrote (issue 14, finding 10).

Text from a file reaches the terminal only as printable escapes; a span with a lone surrogate is shown
escaped and the file stays readable; lines that are not spans are skipped, counted in one warning;
a file with no span at all, or one that is not a regular file of a span file's size, ends in one line
on stderr and exit code 2. Each reproducer is followed by the same command on a good file.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from jitagent.cli import main
from jitagent.telemetry import build_timelines, read_spans, timeline

UNSAFE = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\u200b", "\r")
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\u202eevil\x9b31m\u2066\u200b\r$\\frac{a$"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(1_000 + seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def span(span_id: str, parent: str | None = None, start: float = 0.0, end: float = 1.0, **attributes: object) -> str:
    """One JSON line as the OpenTelemetry SDK writes a span (times in seconds from 1,000 s Unix)."""
    return json.dumps({"name": f"span {span_id}", "context": {"trace_id": "0x01", "span_id": span_id},
                       "parent_id": parent, "start_time": _iso(start), "end_time": _iso(end),
                       "attributes": attributes, "events": [{"name": "jitagent.first_token", "timestamp": _iso(start)}]})


def run(run_id: str, workflow: str = "graph", request_class: str = "plan") -> list[str]:
    """A run with one stage and one call, met its deadline."""
    return [span(f"r{run_id}", None, 0, 3, **{"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": workflow,
                                             "jitagent.pipeline.run_id": run_id, "jitagent.deadline": 1_004.0,
                                             "jitagent.slo.met": True}),
            span(f"s{run_id}", f"r{run_id}", 0, 2, **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "plan"}),
            span(f"c{run_id}", f"s{run_id}", 0, 2, **{"gen_ai.operation.name": "chat",
                                                      "jitagent.request_class": request_class,
                                                      "jitagent.slack.end_s": 1.5})]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    return path


def view(capsys: pytest.CaptureFixture[str], path: Path, *flags: str) -> tuple[int, str, str]:
    code = main(["trace", "view", str(path), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_control_characters_and_bidi_overrides_from_spans_are_escaped(tmp_path, capsys) -> None:
    path = write(tmp_path / "spans.jsonl", [*run("a", workflow=HOSTILE, request_class=HOSTILE), *run("b")])
    code, out, _ = view(capsys, path)
    assert code == 0
    assert not any(char in out for char in UNSAFE)
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\u202eevil" in out  # visible, cut to the label width
    assert "chat [\\x1b[2J" in out
    png = tmp_path / "t.png"
    assert main(["trace", "plot", str(path), "--out", str(png)]) == 0  # "$" no longer starts mathtext
    assert png.read_bytes()[:4] == b"\x89PNG"

    code, out, _ = view(capsys, write(tmp_path / "good.jsonl", run("c")))
    assert code == 0 and "graph  run c: met" in out


def test_a_span_with_a_lone_surrogate_is_shown_escaped_and_the_rest_kept(tmp_path, capsys) -> None:
    lines = [*run("a", request_class="to\ud800ol"), *run("b")]
    path = write(tmp_path / "spans.jsonl", lines)  # json.dumps writes the surrogate as the escape \\ud800
    code, out, err = view(capsys, path, "--limit", "5")
    assert code == 0 and err == ""
    out.encode("utf-8")  # printable everywhere: no surrogate left
    assert "chat [to\\ud800ol]" in out and "2 timelines: 2 met" in out
    assert main(["trace", "plot", str(path), "--out", str(tmp_path / "t.png")]) == 0


def test_lines_that_are_not_spans_are_skipped_with_one_warning(tmp_path, capsys, caplog, monkeypatch) -> None:
    monkeypatch.setattr(timeline, "MAX_SPAN_LINE_BYTES", 2_000)
    bad = ["not json", "[1, 2]", '{"name": "x"}', "[" * 1_500,  # not JSON, not an object, no context, too deep
           span("x1", start=0, **{"jitagent.deadline": "soon"}), span("x2", **{"jitagent.slo.met": "yes"}),
           span("x3", **{"jitagent.deadline": 1e308}), span("x4", **{"gen_ai.workflow.name": {"a": 1}}),
           span("x5", **{"gen_ai.workflow.name": "x" * 3_000}),  # longer than the (patched) line limit
           json.dumps({"name": "x", "context": [], "start_time": 5}), "\udcff\udcfe binary"]
    path = write(tmp_path / "spans.jsonl", [*run("a"), *bad, "", *run("b")])
    with caplog.at_level(logging.WARNING):
        code, out, err = view(capsys, path)
    assert code == 0 and "2 timelines: 2 met" in out
    [warning] = [r for r in caplog.records if r.name == "jitagent.telemetry.timeline"]
    assert f"skipped {len(bad)} lines that are not spans" in warning.getMessage()
    assert "(line 4: " in warning.getMessage()


@pytest.mark.parametrize("content, fragment", [
    (b"\x7fELF\x02\x01\x01\x00\xff\xfe\n\x00\x00", "not spans as the OpenTelemetry SDK writes them (2 lines; line 1: "),
    (b'{"name": "x"}\n[]\n', "(2 lines; line 1: no field 'context')"),
], ids=["binary", "json-not-spans"])
def test_a_file_with_no_span_gets_one_line_and_exit_2(tmp_path, capsys, content, fragment) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_bytes(content)
    for command in ("view", "plot"):
        assert main(["trace", command, str(path), "--out", str(tmp_path / "t.png")] if command == "plot"
                    else ["trace", command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err and "Traceback" not in err
    assert view(capsys, write(path, run("a")))[0] == 0


def test_files_that_are_too_large_or_not_regular_are_refused(tmp_path, capsys, monkeypatch) -> None:
    path = write(tmp_path / "spans.jsonl", run("a") * 20)
    monkeypatch.setattr(timeline, "MAX_SPAN_FILE_BYTES", 1_000)
    code, _, err = view(capsys, path)
    assert code == 2 and "bytes, more than the 1000 a span file may have" in err and err.count("\n") == 1
    for other, kind in ((tmp_path, "a directory"), (Path("/dev/zero"), "a character device")):
        code, _, err = view(capsys, other)
        assert code == 2 and f"{kind}, not a span file" in err
    monkeypatch.undo()
    assert view(capsys, path)[0] == 0


def test_repeated_span_ids_cannot_make_the_timeline_loop(tmp_path, capsys) -> None:
    # a -> b -> a' where a' repeats a's id: walking children by id would go round for ever.
    lines = [span("root"), span("a", "root"), span("b", "a"), span("a", "b")]
    path = write(tmp_path / "spans.jsonl", lines)
    [only] = build_timelines(read_spans(path))
    assert [row.depth for row in only.rows] == [0, 1, 2]
    assert view(capsys, path)[0] == 0


def test_a_huge_timeline_is_plotted_with_its_first_rows(tmp_path, capsys) -> None:
    lines = [span("root", None, 0, 10)] + [span(f"c{i}", "root", i / 100, i / 100 + 1) for i in range(400)]
    path = write(tmp_path / "spans.jsonl", lines)
    png = tmp_path / "t.png"
    assert main(["trace", "plot", str(path), "--out", str(png)]) == 0
    capsys.readouterr()
    height = int.from_bytes(png.read_bytes()[20:24], "big")  # the PNG's IHDR
    assert height < 0.3 * 70 * 110  # 61 rows drawn (60 and a count of the rest), not 401
    code, out, _ = view(capsys, path, "--width", "1000")
    assert code == 0 and len(out.splitlines()) == 1 + 1 + 2 + 401
    with pytest.raises(SystemExit, match="2"):
        main(["trace", "view", str(path), "--width", "100000"])
    assert "--width: '100000' must be at most 1000" in capsys.readouterr().err


def test_numbers_and_booleans_in_text_attributes_are_shown_as_text(tmp_path, capsys) -> None:
    lines = run("a")
    lines[0] = lines[0].replace('"jitagent.pipeline.run_id": "a"', '"jitagent.pipeline.run_id": 7, "jitagent.policy": true')
    code, out, _ = view(capsys, write(tmp_path / "spans.jsonl", lines))
    assert code == 0 and "graph  run 7  policy True: met" in out
