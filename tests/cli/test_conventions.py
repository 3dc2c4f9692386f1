"""Conventions every ``jitagent`` subcommand keeps (issue 15, item 7): ``--version`` from the one
source, ``-v`` anywhere raising jitagent's loggers only, progress bars only on a terminal, files
that record the version and command line, Ctrl-C ending in one line and exit code 130 (worker
processes included), and a reader that leaves early (``| head``) ending the command quietly.

The subprocess tests run ``python -m jitagent.cli`` (about 2 s of imports each).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jitagent
from jitagent.cli import build_parser, main
from jitagent.cli.args import verbosity
from jitagent.cli.conventions import show_progress

COMMAND = [sys.executable, "-m", "jitagent.cli"]
TINY_BENCH = ["bench", "--workload", "mixed", "--policies", "fcfs", "--duration", "20", "--jobs", "1"]


def _jitagent(*argv: str, unbuffered: bool = False, **popen: object) -> subprocess.Popen[str]:
    """``jitagent ARGV`` with its stdout block-buffered as a user's is (the tests' environment may set
    PYTHONUNBUFFERED), or ``unbuffered``."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([*COMMAND, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            **popen)


def test_version_is_the_installed_distributions() -> None:
    done = subprocess.run([*COMMAND, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == f"jitagent {jitagent.__version__}\n"
    assert importlib.metadata.version("jitagent-core") == jitagent.__version__  # one source: _version.py


@pytest.mark.parametrize("argv, count", [
    (["-v", "bench"], 1),
    (["bench", "-v"], 1),
    (["bench", "--out", "x", "-vv"], 2),
    (["-v", "bench", "--rate", "3", "--verbose"], 2),
    (["-v", "cost", "-v", "--steps", "3", "-v"], 3),
    (["trace", "-v", "view", "spans.jsonl", "-v"], 2),
    (["-vv", "trace", "plot", "-v", "spans.jsonl"], 3),
    (["calibrate"], 0),
])
def test_verbosity_counts_every_v_wherever_it_stands(argv: list[str], count: int) -> None:
    assert verbosity(build_parser().parse_args(argv)) == count


def test_v_raises_jitagents_loggers_only(tmp_path: Path) -> None:
    done = subprocess.run([*COMMAND, *TINY_BENCH, "--out", str(tmp_path), "-vv"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(line.startswith("INFO jitagent.cli.bench: mixed") for line in lines)
    assert not [line for line in lines if "matplotlib" in line or "PIL" in line]  # plotting logs at DEBUG


def _assert_provenance(path: Path, argv: list[str]) -> None:
    written = json.loads(path.read_text())
    assert written["jitagent_version"] == jitagent.__version__
    assert shlex.split(written["command"]) == ["jitagent", *argv]


def test_no_progress_bar_off_a_terminal_and_results_record_version_and_command(tmp_path: Path, capsys) -> None:
    argv = [*TINY_BENCH, "--out", str(tmp_path / "a b")]   # a space: the command line quoted as a shell would
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "runs" not in err  # captured stderr is no terminal: no tqdm frames
    _assert_provenance(tmp_path / "a b" / "results.json", argv)


def test_cost_json_records_version_and_command(tmp_path: Path) -> None:
    argv = ["cost", "--policies", "fcfs", "--running", "4", "--waiting", "5", "--steps", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    _assert_provenance(tmp_path / "cost.json", argv)


def test_progress_bars_show_on_a_terminal(monkeypatch) -> None:
    primary, secondary = os.openpty()
    with os.fdopen(secondary, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        assert show_progress(no_progress=False)
        assert not show_progress(no_progress=True)
    os.close(primary)


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"  # a zombie ran its course
    except OSError:
        return True


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_ends_the_bench_with_one_line_and_130(tmp_path: Path, jobs: int) -> None:
    """Ctrl-C at a terminal signals the whole process group: the command and its workers. Runs
    that would take minutes are abandoned, the workers ended, and one line says so."""
    child = _jitagent("bench", "--workload", "mixed", "--policies", "fcfs,jit", "--sweep", "2,3",
                      "--duration", "3000", "--jobs", str(jobs), "--out", str(tmp_path), "-v",
                      start_new_session=True)  # its own process group, as a terminal's foreground job
    try:
        assert child.stderr is not None
        started = child.stderr.readline()  # the INFO line logged just before the runs start
        assert "INFO jitagent.cli.bench" in started, started
        deadline = time.monotonic() + 30
        while jobs > 1 and len(_children(child.pid)) < jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(child.pid)
        assert len(workers) >= (jobs if jobs > 1 else 0)
        time.sleep(0.5)  # the runs under way
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=30)  # each run takes a minute: only an abandoned benchmark ends here
    finally:
        if child.poll() is None:  # the test failed: nothing of it stays running
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130
    assert err == "jitagent bench: interrupted\n"
    assert not (tmp_path / "results.json").exists()
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in workers)


@pytest.mark.parametrize("argv, unbuffered", [
    (["--help"], False),
    (["--version"], False),
    (["bench", "--list"], False),
    (["bench", "--list"], True),
    (["trace", "view", "SPANS"], False),
    ([*TINY_BENCH, "--out", "OUT"], False),
])
def test_a_reader_that_left_ends_the_command_quietly(tmp_path: Path, argv: list[str], unbuffered: bool) -> None:
    spans = tmp_path / "spans.jsonl"
    spans.write_text("")  # no spans: the view still prints its summary line
    argv = [str(spans) if arg == "SPANS" else str(tmp_path / "out") if arg == "OUT" else arg for arg in argv]
    child = _jitagent(*argv, unbuffered=unbuffered)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader is gone before the first line: every write meets a broken pipe
    err = child.stderr.read()
    assert child.wait(timeout=120) == 1 and err == ""
    if argv[0] == "bench" and "--list" not in argv:
        assert (tmp_path / "out" / "results.json").exists()  # the files were written before the table


_BLOCK_HTTPX2 = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "httpx2":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Blocked())
import jitagent
assert jitagent.parse_slo({"kind": "deadline", "deadline_s": 1}).deadline_s == 1  # the core needs no extra
from jitagent import JITClient
"""


def test_jitclient_without_the_client_extra_names_the_extra() -> None:
    done = subprocess.run([sys.executable, "-c", _BLOCK_HTTPX2], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == ("ModuleNotFoundError: JITClient needs the 'client' extra (httpx2 is "
                                            "missing): pip install 'jitagent-core[client]'")
    assert "No module named" not in done.stderr
