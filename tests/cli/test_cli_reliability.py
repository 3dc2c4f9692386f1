"""``jitagent bench`` on degenerate runs and hostile files (issue 14, finding 9).

Every reproducer is followed by a normal run of the same command working. Degenerate but valid runs
(no arrival, one, all in the warm-up, one empty rate of a sweep) complete, showing ``-`` where nothing
was scored; bad flags and files end in one line on stderr and exit code 2; nothing the command reads
can hang it (a FIFO) or exhaust it (size, depth, aliases, a product past the floats).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitagent.cli import main
from jitagent.inputs import MAX_VALUES, printable

GOOD = ("classes:\n  - kind: single\n    name: chat\n    lengths: conv\n"
        "    slo: {kind: stream, ttft_s: 1, tpot_s: 0.1}\n")


class _Hung(BaseException):
    """Raised by the alarm: not an Exception, so the command cannot turn it into an exit code."""


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail, rather than hang, a test whose command blocks (opening a FIFO waits for a writer)."""
    def hung(signum: int, frame: object) -> None:
        raise _Hung("the command blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def bench(tmp_path: Path, *flags: str) -> int:
    """``jitagent bench`` with fcfs, one job, no progress bar, ``--out tmp_path/out``; the exit code."""
    try:
        return main(["bench", "--policies", "fcfs", "--jobs", "1", "--no-progress", "--out", str(tmp_path / "out"),
                     *flags])
    except SystemExit as exc:  # argparse
        return int(exc.code or 0)


def one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def results(tmp_path: Path) -> list[dict]:
    return json.loads((tmp_path / "out" / "results.json").read_text())["runs"]


# -- degenerate runs complete -----------------------------------------------------------------------

@pytest.mark.parametrize("flags", [
    ("--workload", "chat", "--rate", "0.01", "--duration", "10"),                     # no arrival
    ("--workload", "mixed", "--rate", "1", "--duration", "10", "--warmup", "9.99"),   # all in the warm-up
    ("--workload", "pipeline", "--rate", "0.01", "--duration", "10", "--capacity"),   # capacity: nothing to score
], ids=["no-arrival", "all-in-warm-up", "capacity"])
def test_a_run_that_scores_nothing_completes_with_a_note(tmp_path, capsys, flags) -> None:
    assert bench(tmp_path, *flags) == 0
    captured = capsys.readouterr()
    [row] = [line for line in captured.out.splitlines() if line.startswith("fcfs")][:1]
    assert row.split()[3:5] == ["-", "-"]  # ratio to fcfs and attainment: nothing scored
    assert "note: nothing was scored at rate" in captured.err and "Traceback" not in captured.err
    [run] = results(tmp_path)
    assert run["num_scored"] == 0 and run["slo_attainment"] is None
    assert (tmp_path / "out" / "goodput.png").stat().st_size > 0
    if "--capacity" in flags:
        assert "no capacity for fcfs" in captured.err
        assert json.loads((tmp_path / "out" / "results.json").read_text())["capacity"] == {"fcfs": None}

    assert bench(tmp_path, "--workload", "chat", "--rate", "2", "--duration", "20") == 0  # a normal run
    assert results(tmp_path)[0]["num_scored"] > 0 and "note:" not in capsys.readouterr().err


def test_one_arrival_and_a_sweep_with_an_empty_rate(tmp_path, capsys) -> None:
    # Trace arrivals: exactly rate x duration of them.
    assert bench(tmp_path, "--workload", "chat", "--arrivals", "trace", "--rate", "0.1", "--duration", "10",
                 "--warmup", "0", "--records") == 0
    [run] = results(tmp_path)
    assert run["num_calls"] == 1 and run["slo_attainment"] in (0.0, 1.0)
    assert len((tmp_path / "out" / "records.jsonl").read_text().splitlines()) == 1
    capsys.readouterr()

    assert bench(tmp_path, "--workload", "mixed", "--policies", "fcfs,jit", "--sweep", "0.01,2",
                 "--duration", "20") == 0
    out, err = capsys.readouterr()
    assert err.count("note:") == 1 and "rate 0.01" in err
    by_rate = {(r["policy"], r["rate"]): r for r in results(tmp_path)}
    assert by_rate["jit", 0.01]["slo_attainment"] is None and by_rate["jit", 2.0]["slo_attainment"] is not None
    assert "x fcfs" in out


# -- SLO arithmetic past the floats is refused --------------------------------------------------------

def test_an_slo_multiplied_to_infinity_is_refused(tmp_path, capsys) -> None:
    assert bench(tmp_path, "--workload", "mixed", "--rate", "1", "--duration", "10", "--slo-scale", "1e300") == 2
    one_line_error(capsys, "--slo-scale", "at most")
    path = tmp_path / "tight.yaml"
    for slo, tightness in (("{kind: stream, ttft_s: 2.0, tpot_s: 0.1}", "[1.0e+308]"),
                           ("{kind: deadline, deadline_s: 1.0e+300}", "[1.0, 1.0e+10]")):
        path.write_text(f"classes:\n  - kind: single\n    name: a\n    lengths: conv\n    slo: {slo}\n"
                        f"    tightness: {tightness}\n")
        assert bench(tmp_path, "--workload", str(path), "--rate", "1", "--duration", "10") == 2
        one_line_error(capsys, "tight.yaml: classes[0].tightness:", "beyond the range of a float")
    path.write_text("classes:\n  - kind: pipeline\n    name: p\n    app: deep_research\n"
                    "    deadline_per_round_s: 1.0e+307\n")  # x tightness up to 4 x up to 27 rounds
    assert bench(tmp_path, "--workload", str(path), "--rate", "1", "--duration", "10") == 2
    one_line_error(capsys, "tight.yaml: classes[0].tightness: a run of ", "is inf s")

    path.write_text(GOOD)
    assert bench(tmp_path, "--workload", str(path), "--rate", "1", "--duration", "10", "--slo-scale", "1e6") == 0


# -- files: only regular ones, bounded in size and depth ----------------------------------------------

def test_non_regular_files_are_refused_without_blocking(tmp_path, capsys, no_hang) -> None:
    fifo = tmp_path / "traffic.yaml"
    os.mkfifo(fifo)
    assert bench(tmp_path, "--workload", str(fifo), "--rate", "1", "--duration", "10") == 2
    one_line_error(capsys, "traffic.yaml: a FIFO, not a workload file")
    profile = tmp_path / "profile.json"
    os.mkfifo(profile)
    assert bench(tmp_path, "--workload", "chat", "--profile", str(profile), "--duration", "10") == 2
    one_line_error(capsys, "profile.json: a FIFO, not a profile")
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / "results.json")  # a FIFO as an output would block the write
    assert bench(tmp_path, "--workload", "chat", "--duration", "10") == 2
    one_line_error(capsys, "results.json: a FIFO, not a place for results.json")
    spans = tmp_path / "spans.jsonl"
    assert bench(tmp_path, "--workload", "chat", "--duration", "10", "--trace", "/dev/null",
                 "--out", str(tmp_path / "out2")) == 2
    one_line_error(capsys, "/dev/null: a character device, not a place for spans")

    spans_fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(spans_fifo)
    assert main(["trace", "view", str(spans_fifo)]) == 2
    one_line_error(capsys, "fifo.jsonl: a FIFO, not a span file")

    os.unlink(tmp_path / "out" / "results.json")
    fifo.unlink()
    fifo.write_text(GOOD)
    assert bench(tmp_path, "--workload", str(fifo), "--rate", "1", "--duration", "10", "--trace", str(spans)) == 0
    assert main(["trace", "view", str(spans), "--calls"]) == 0


@pytest.mark.parametrize("name, text, fragment", [
    ("big.yaml", "# " + "x" * (1 << 20) + "\n" + GOOD, "big.yaml: 1048686 bytes, more than the 1048576 a workload file"),
    ("deep.json", "[" * 50_000 + "]" * 50_000, "deep.json: nested too deeply (at most 32 levels)"),
    ("deep.yaml", GOOD + "description: " + "[" * 40 + "]" * 40 + "\n",
     "deep.yaml: description[0][0][0][0]"),
    ("indented.yaml", "".join("  " * i + "a:\n" for i in range(600)) + "  " * 600 + "b: 1\n",
     "indented.yaml: nested too deeply"),
    ("laughs.yaml", "a: &a [" + ",".join(["1"] * 50) + "]\n" + "".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 50) + "]\n" for p, c in zip("abc", "bcd"))
     + "classes:\n  - kind: single\n    name: x\n    prompt_tokens: {quantiles: *d}\n    output_tokens: 1\n"
       "    slo: {kind: deadline, deadline_s: 1}\n",
     f"laughs.yaml: more than {MAX_VALUES} values"),
    ("digits.json", '{"classes": [], "name": ' + "1" * 5000 + "}", "digits.json: cannot parse: Exceeds the limit"),
    ("binary.yaml", "\udcff\udcfe classes", "binary.yaml: not UTF-8 text"),
    ("tokens.yaml", GOOD.replace("lengths: conv", "prompt_tokens: 99999999999999999999999\n    output_tokens: 9"),
     "tokens.yaml: classes[0].prompt_tokens: Input should be less than or equal to 10000000"),
    ("context.yaml", GOOD.replace("lengths: conv", "prompt_tokens: 200000\n    output_tokens: 9"),
     "workload context: class chat: prompt (200000 tokens) plus max_tokens (4096) is 204096 tokens, over the"),
    ("calls.yaml", "classes:\n  - kind: pipeline\n    name: p\n    app:\n      stages: [s]\n"
                   "      quantile_levels: [0, 1]\n      stage:\n        s: {parallelism_samples: [100000000], "
                   "loops_samples: [1], prompt_tokens_quantiles: [1, 2], completion_tokens_quantiles: [1, 2]}\n",
     "calls.yaml: classes[0].app.stage.s.parallelism_samples[0]: Input should be less than or equal to 1024"),
    ("key.json", json.dumps({"classes": [{"kind": "single", "name": "a", "lengths": "conv", "slo": {
        "kind": "deadline", "deadline_s": 1}}], "\x1b[31m\u202e": 1}), "key.json: \\x1b[31m\\u202e: unknown field"),
], ids=lambda value: value if isinstance(value, str) and value.endswith((".yaml", ".json")) else "")
def test_huge_deep_and_hostile_workload_files_get_one_line_naming_the_file(tmp_path, capsys, name, text,
                                                                          fragment) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    assert bench(tmp_path, "--workload", str(path), "--rate", "1", "--duration", "10") == 2
    err = one_line_error(capsys, fragment)
    assert "\x1b" not in err and "\u202e" not in err
    path.with_suffix(".yaml").write_text(GOOD)
    assert bench(tmp_path, "--workload", str(path.with_suffix(".yaml")), "--rate", "1", "--duration", "10") == 0


def test_a_file_name_with_control_characters_stays_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "a\nb\x1b[2J.yaml"
    assert bench(tmp_path, "--workload", str(path), "--rate", "1", "--duration", "10") == 2
    one_line_error(capsys, printable(str(path)) + ": workload file not found")


@pytest.mark.parametrize("flags, fragment", [
    (["--decode-weight", "1e308"], "--decode-weight: '1e308' must be at most 1e+06"),
    (["--duration", "1e15", "--rate", "1e-9"], "--duration (1e+15 s) must be at most 1e+07 s"),
    (["--time-scale", "1e9"], "--time-scale: '1e9' must be at most 10"),
    (["--tightness", "1,1e308"], "--tightness: '1e308' must be at most 1e+06"),  # langgraph: x unloaded latency
], ids=["decode-weight", "duration", "time-scale", "tightness"])
def test_flags_that_would_overflow_are_refused(tmp_path, capsys, flags, fragment) -> None:
    assert bench(tmp_path, "--workload", "chat", *flags) == 2
    one_line_error(capsys, fragment)
