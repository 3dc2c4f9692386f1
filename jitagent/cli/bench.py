"""The ``jitagent`` command.

``jitagent bench`` runs workloads through the simulated engine (or, with ``--engine vllm``, a real
vLLM engine; with ``--workload langgraph``, runs of real LangGraph graphs on the simulated engine in
real time) under several policies and reports service goodput side by side (table on stdout;
``results.json``, a PNG and optionally ``records.jsonl`` in ``--out``; with ``--trace FILE`` the
runs' spans as JSON lines). ``jitagent calibrate`` fits a step-time profile to a real vLLM engine.
``jitagent trace view|plot FILE`` shows per-run slack timelines from such a file. Mistakes in
flags or files end in one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from jitagent.bench.inputs import check_output, open_input, printable

if TYPE_CHECKING:
    from jitagent.bench.suite import BenchConfig
    from jitagent.scheduling.goodput import RequestRecord

__all__ = ["main"]

_GRAPHS = "langgraph"   # the workload of real LangGraph graphs (jitagent-langgraph)
_Number = TypeVar("_Number", int, float)
_MAX_FACTOR = 1e6       # --slo-scale, --decode-weight, --tightness: far beyond use, far from overflowing a float
_MAX_TIME_SCALE = 10.0  # --time-scale: wall seconds per modelled second (a run's sleeps grow with it)
_MAX_WIDTH = 1000       # jitagent trace view --width
_MAX_PROFILE_BYTES = 1 << 20   # a fitted profile is about 2 KB
_MAX_COST_RUNNING = 16_384       # jitagent cost: sequences one engine seats (vLLM's largest max_num_seqs is 1024)
_MAX_COST_WAITING = 1_000_000    # ... requests queued (each is built and held in memory)
_MAX_COST_STEPS = 100_000        # ... steps timed


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 1")
    return int(text)


def _at_most(parse: Callable[[str], _Number], most: _Number) -> Callable[[str], _Number]:
    """``parse``, refusing values above ``most``: a flag that multiplies (goodput, SLOs, time) must
    not carry its product past what a float holds, nor a width past what a terminal shows."""
    def bounded(text: str) -> _Number:
        value = parse(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {most:g}")
        return value
    return bounded


def _list_of(parse: Callable[[str], float]) -> Callable[[str], tuple[float, ...]]:
    """A comma-separated list, each item read by ``parse``."""
    def parse_list(text: str) -> tuple[float, ...]:
        return tuple(parse(part) for part in text.split(",") if part.strip())
    return parse_list


def _seed_list(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} must be a seed (a whole number >= 0) or a comma list of seeds")
    return tuple(int(p) for p in parts)


def _count_list(most: int) -> Callable[[str], tuple[int, ...]]:
    """A comma-separated list of whole numbers from 1 to ``most``."""
    count = _at_most(_positive_int, most)

    def parse_list(text: str) -> tuple[int, ...]:
        counts = tuple(count(p.strip()) for p in text.split(",") if p.strip())
        if not counts:
            raise argparse.ArgumentTypeError("needs at least one count")
        return counts
    return parse_list


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names:
        raise argparse.ArgumentTypeError("needs at least one name")
    return names


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jitagent", description="SLO-aware LLM serving: benchmarks and tools.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    bench = commands.add_parser("bench", help="compare scheduling policies on a workload",
                                description="Run a workload under each policy on the simulated engine and "
                                            "report service goodput, SLO attainment and latency side by side.")
    bench.add_argument("--list", action="store_true", help="list workloads, profiles and policies, then exit")
    bench.add_argument("--workload", default="mixed",
                       help="built-in workload name, a workload file (.yaml/.json), or langgraph (runs of the "
                            "example LangGraph graphs, needs jitagent-langgraph)")
    bench.add_argument("--graphs", type=_name_list,
                       help="with --workload langgraph: the graphs runs are drawn from (default: all of them)")
    bench.add_argument("--tightness", type=_list_of(_at_most(_positive_float, _MAX_FACTOR)),
                       help="with --workload langgraph: a run's deadline is one of these times its graph's "
                            "unloaded latency (default: 1.5,2,3)")
    bench.add_argument("--time-scale", type=_at_most(_positive_float, _MAX_TIME_SCALE),
                       help="with --workload langgraph: wall seconds per modelled second (default: 0.1)")
    bench.add_argument("--engine", default="sim", choices=["sim", "vllm"],
                       help="the simulated engine in virtual time (default), or a real vLLM engine in real time "
                            "(needs jitagent-vllm)")
    bench.add_argument("--model", default="tiny-random-llama",
                       help="with --engine vllm: model folder, hub name or built-in name (default: tiny-random-llama)")
    bench.add_argument("--slo-scale", type=_at_most(_positive_float, _MAX_FACTOR),
                       help="multiply every SLO and tool gap by this (default: 1; with --engine vllm, measured "
                            "from the engine's unloaded speed, see docs/vllm.md)")
    bench.add_argument("--profile", default=None,
                       help="hardware profile name or JSON path (default: llama-3.1-8b-a100); with --engine vllm, "
                            "the step-time profile the scheduler starts from")
    bench.add_argument("--preset", default=None, choices=["vllm", "jitserve"],
                       help="engine settings: vLLM's defaults for the GPU, or the JITServe artifact's (32 seqs)")
    bench.add_argument("--token-budget", type=_positive_int, help="max tokens per step (default: vLLM's for the GPU)")
    bench.add_argument("--max-num-seqs", type=_positive_int, help="max running requests (default: vLLM's for the GPU)")
    bench.add_argument("--policies", type=_name_list, default=("fcfs", "edf", "ltr", "las", "jit"),
                       help="comma-separated policies (default: fcfs,edf,ltr,las,jit)")
    bench.add_argument("--rate", type=_positive_float, default=2.0, help="arrivals per second (default: 2)")
    bench.add_argument("--sweep", type=_list_of(_positive_float), help="comma-separated rates, instead of --rate")
    bench.add_argument("--duration", type=_positive_float, default=600.0, help="arrival window in seconds (default: 600)")
    bench.add_argument("--seed", type=_seed_list, default=(0,), help="seed, or comma-separated seeds (default: 0)")
    bench.add_argument("--arrivals", choices=["poisson", "trace"], default="poisson",
                       help="Poisson arrivals or the trace's own timestamps rescaled (default: poisson)")
    bench.add_argument("--decode-weight", type=_at_most(_positive_float, _MAX_FACTOR), default=1.0,
                       help="weight of an output token against a prompt token in goodput (default: 1; 8 as JITServe)")
    bench.add_argument("--warmup", type=_non_negative_float, help="seconds not scored at the start (default: 5%%, max 60)")
    bench.add_argument("--capacity", action="store_true", help="also search each policy's capacity (rate at >= 90%% attainment)")
    bench.add_argument("--records", action="store_true", help="also write records.jsonl, one line per request")
    bench.add_argument("--trace", type=Path, metavar="FILE",
                       help="also write OpenTelemetry spans of every run, stage and call to FILE as JSON lines "
                            "(needs the otel extra)")
    bench.add_argument("--jobs", type=_positive_int, help="worker processes (default: one per core)")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument("--out", type=Path, default=Path("bench-out"), help="output directory (default: bench-out)")

    cost = commands.add_parser("cost", help="time each policy's scheduling decisions under heavy load",
                               description="Time every schedule() call of each policy with RUNNING requests "
                                           "decoding and WAITING queued, over STEPS steps (frames included), "
                                           "against the modelled step time.")
    cost.add_argument("--policies", type=_name_list, default=("fcfs", "jit"), help="default: fcfs,jit")
    cost.add_argument("--running", type=_count_list(_MAX_COST_RUNNING), default=(256,),
                      help="running requests, or a comma-separated list of counts (default: 256)")
    cost.add_argument("--waiting", type=_count_list(_MAX_COST_WAITING), default=(2000,),
                      help="waiting requests, or a comma-separated list of counts (default: 2000)")
    cost.add_argument("--steps", type=_at_most(_positive_int, _MAX_COST_STEPS), default=400,
                      help="steps timed (default: 400)")
    cost.add_argument("--repeats", type=_at_most(_positive_int, 100), default=1,
                      help="times every load is measured, the policies taking turns; timings pooled (default: 1)")
    cost.add_argument("--profile", default=None, help="hardware profile (default: llama-3.1-8b-a100)")
    cost.add_argument("--out", type=Path, default=Path("bench-out"), help="output directory (default: bench-out)")

    calibrate = commands.add_parser("calibrate", help="fit a step-time profile to a real vLLM engine",
                                    description="Run probe requests on a vLLM engine with the JIT scheduler, time "
                                                "every step, and write the fitted step-time profile (the JSON "
                                                "--profile reads). Needs jitagent-vllm.")
    calibrate.add_argument("--model", default="tiny-random-llama",
                           help="model folder, hub name or built-in name (default: tiny-random-llama)")
    calibrate.add_argument("--rounds", type=_positive_int, default=2, help="times the probe set runs (default: 2)")
    calibrate.add_argument("--name", help="the profile's name (default: MODEL-cpu)")
    calibrate.add_argument("--out", type=Path, default=Path("profile.json"),
                           help="profile JSON to write (default: profile.json)")

    trace = commands.add_parser("trace", help="per-run slack timelines from a file of spans",
                                description="Show each run's spans (run, stages, calls) with their deadlines and "
                                            "slack, from spans as JSON lines (jitagent bench --trace, or "
                                            "jitagent.telemetry.jsonl_tracer_provider).")
    views = trace.add_subparsers(dest="view", required=True, parser_class=_Parser)
    view = views.add_parser("view", help="timelines as text tables with bars")
    plot = views.add_parser("plot", help="timelines as a PNG")
    for sub in (view, plot):
        sub.add_argument("file", type=Path, help="spans, one JSON object per line")
        sub.add_argument("--run", help="only the run with this id (jitagent.pipeline.run_id)")
        sub.add_argument("--missed", action="store_true", help="only runs that missed their deadline")
        sub.add_argument("--calls", action="store_true", help="also calls made outside any run")
        sub.add_argument("--limit", type=_positive_int, default=5, help="timelines shown (default: 5)")
    view.add_argument("--width", type=_at_most(_positive_int, _MAX_WIDTH), default=40,
                      help=f"bar width in characters (default: 40, at most {_MAX_WIDTH})")
    plot.add_argument("--out", type=Path, default=Path("timeline.png"), help="PNG to write (default: timeline.png)")
    return parser


def _cost(args: argparse.Namespace) -> None:
    from jitagent.bench.cost import measure_growth, write_growth
    from jitagent.bench.report import format_cost
    from jitagent.engines.sim import DEFAULT_PROFILE
    from jitagent.scheduling.policies import make_policy

    for name in args.policies:
        make_policy(name)
    check_output(args.out / "cost.json", "cost.json")
    check_output(args.out / "cost.png", "a picture")
    results = measure_growth(args.policies, running=args.running, waiting=args.waiting, steps=args.steps,
                             repeats=args.repeats, profile=args.profile or DEFAULT_PROFILE)
    print(format_cost(results))
    write_growth(results, args.out)
    print(f"\nwrote cost.json and cost.png to {args.out}/")


def _trace(args: argparse.Namespace) -> None:
    from jitagent.telemetry import build_timelines, format_timelines, plot_timelines, read_spans, select_timelines

    if args.view == "plot":
        check_output(args.out, "a picture")
    timelines = select_timelines(build_timelines(read_spans(args.file)), run=args.run, missed=args.missed,
                                 calls=args.calls)
    if args.view == "view":
        print(format_timelines(timelines, args.limit, args.width))
        return
    if not timelines:
        raise ValueError(f"{printable(str(args.file))}: no timeline matches")
    plot_timelines(timelines[:args.limit], args.out)
    print(f"wrote {args.out} ({min(len(timelines), args.limit)} of {len(timelines)} timelines)")


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work: a window longer than the simulator's clock resolves
    (``MAX_DURATION_S``), a profile that is not a regular file of a profile's size, and outputs that
    would land on something other than a regular file (a FIFO would block)."""
    from jitagent.bench.workloads import MAX_DURATION_S
    from jitagent.engines.latency import list_profiles

    if args.duration > MAX_DURATION_S:
        raise ValueError(f"--duration ({args.duration:g} s) must be at most {MAX_DURATION_S:g} s")
    if args.profile is not None and args.profile not in dict(list_profiles()) and os.path.lexists(args.profile):
        open_input(args.profile, "profile", _MAX_PROFILE_BYTES).close()
    outputs = ["results.json", "goodput.png", *(["records.jsonl"] if args.records else [])]
    for name in outputs:
        check_output(args.out / name, name)
    if args.trace is not None:
        check_output(args.trace, "spans")


def _note_nothing_scored(runs: list[dict[str, Any]], capacity: dict[str, float | None] | None,
                         config: BenchConfig) -> None:
    """One line on stderr per rate and seed whose runs scored no request (their attainment is
    shown as ``-``), and per policy whose capacity search found nothing to score."""
    from jitagent.bench.runner import default_warmup

    warmup = default_warmup(config.duration) if config.warmup is None else config.warmup
    empty = sorted({(run["rate"], run["seed"]) for run in runs if run["num_scored"] == 0})
    for rate, seed in empty:
        print(f"jitagent bench: note: nothing was scored at rate {rate:g}, seed {seed}: no request arrived between "
              f"the warm-up's end ({warmup:g} s) and the window's end ({config.duration:g} s); raise --rate or "
              "--duration", file=sys.stderr)
    for policy, rate in (capacity or {}).items():
        if rate is None:
            print(f"jitagent bench: note: no capacity for {policy}: a rate it probed scored nothing in "
                  f"{config.duration:g} s; raise --duration", file=sys.stderr)


def _write_trace(path: Path, records: list[RequestRecord], model: str) -> int:
    """The spans of the benchmark's records, as JSON lines in ``path``; the number written."""
    from jitagent.telemetry import jsonl_tracer_provider, trace_records

    with open(path, "w") as out:
        provider = jsonl_tracer_provider(out, "jitagent-bench")
        try:
            return trace_records(records, provider.get_tracer("jitagent.bench"), model)
        finally:
            provider.shutdown()


def _vllm() -> ModuleType:
    try:
        import jitagent_vllm
    except ImportError as exc:
        raise ValueError(f"the vLLM engine needs jitagent-vllm and vLLM ({exc}); install them as the README says") \
            from None
    return jitagent_vllm


def _calibrate(args: argparse.Namespace) -> None:
    _vllm()
    from jitagent_vllm.calibrate import calibrate
    from jitagent_vllm.engine import VLLMEngineConfig

    check_output(args.out, "a profile")  # before the probes, which take minutes

    result = calibrate(VLLMEngineConfig(model=args.model), name=args.name, rounds=args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(result.profile.to_json())
    fit = result.summary()
    print(f"fitted {fit['steps']:.0f} steps: median error {fit['median_relative_error']:.1%}, "
          f"90th percentile {fit['p90_relative_error']:.1%}")
    print(f"coefficients: {result.profile.latency}")
    print(f"wrote {args.out} (use it with: jitagent bench --profile {args.out})")


def _print_list() -> None:
    from jitagent.bench.workloads import describe_workloads
    from jitagent.engines.latency import list_profiles
    from jitagent.scheduling.policies import describe_policies

    graphs = "runs of real LangGraph graphs in real time (jitagent-langgraph): deep_research, map_reduce"
    workloads = [*describe_workloads(), (_GRAPHS, graphs)]
    for title, items in (("workloads", workloads), ("profiles", list_profiles()),
                         ("policies", describe_policies())):
        print(f"{title}:")
        width = max(len(name) for name, _ in items)
        for name, text in items:
            print(f"  {name.ljust(width)}  {text}")


def _graph_bench(args: argparse.Namespace) -> ModuleType | None:
    """The graph benchmark's module for ``--workload langgraph`` (checking its flags), else ``None``."""
    graph_flags = (args.graphs, args.tightness, args.time_scale)
    if args.workload != _GRAPHS:
        if any(flag is not None for flag in graph_flags):
            raise ValueError("--graphs, --tightness and --time-scale go with --workload langgraph")
        return None
    if args.engine != "sim":
        raise ValueError("--workload langgraph runs on the simulated engine only")
    try:
        import jitagent_langgraph.bench as graph_bench
    except ImportError as exc:
        raise ValueError(f"--workload langgraph needs jitagent-langgraph ({exc}); "
                         "install it with: pip install -e integrations/langgraph") from None
    return graph_bench


def _bench(args: argparse.Namespace) -> None:
    from jitagent.bench.plots import plot_results
    from jitagent.bench.report import format_capacity, format_class_table, format_table
    from jitagent.bench.suite import BenchConfig, run_bench
    from jitagent.bench.workloads import build_workload
    from jitagent.engines.sim import DEFAULT_PROFILE, SimConfig
    from jitagent.scheduling.policies import make_policy

    graph_bench = _graph_bench(args)
    _check_paths(args)
    for name in args.policies:  # unknown names fail here, before any work
        if graph_bench is not None:
            graph_bench.parse_side(name)  # a policy, maybe with +jit_slo or +plain
        else:
            make_policy(name)
    live = args.engine == "vllm"
    sim = SimConfig(profile=DEFAULT_PROFILE if live else args.profile or DEFAULT_PROFILE, preset=args.preset,
                    token_budget=args.token_budget, max_num_seqs=args.max_num_seqs)
    sim.resolve()
    if live:
        _vllm()
        if args.capacity:
            raise ValueError("--capacity searches many rates: it runs on the simulated engine only")
    rates = args.sweep or (args.rate,)
    if graph_bench is not None:
        given = {"graphs": args.graphs, "tightness": args.tightness, "time_scale": args.time_scale}
        graphs = graph_bench.GraphBenchOptions(**{key: value for key, value in given.items() if value is not None})
        graphs.apps()  # unknown graph names fail here
    else:
        # Build one workload up front so that a bad file or name fails fast, with its own message.
        build_workload(args.workload, rate=rates[0], duration=min(args.duration, 1.0), seed=args.seed[0],
                       arrivals=args.arrivals).with_slo_scale(args.slo_scale or 1.0)
    if args.warmup is not None and args.warmup >= args.duration:
        raise ValueError(f"--warmup ({args.warmup:g} s) must be shorter than --duration ({args.duration:g} s)")
    if args.trace is not None:
        from jitagent.telemetry.export import require_sdk

        require_sdk()  # before the work, not after it

    config = BenchConfig(workload=args.workload, policies=args.policies, rates=tuple(rates), seeds=args.seed,
                         duration=args.duration, sim=sim, arrivals=args.arrivals, decode_weight=args.decode_weight,
                         warmup=args.warmup, capacity=args.capacity,
                         keep_records=args.records or args.trace is not None, slo_scale=args.slo_scale)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}
    if live:
        from jitagent_vllm.bench import run_vllm_bench
        from jitagent_vllm.engine import VLLMEngineConfig

        engine = VLLMEngineConfig(model=args.model, profile=args.profile, max_num_seqs=args.max_num_seqs,
                                  max_num_batched_tokens=args.token_budget)
        result, scale = run_vllm_bench(config, engine, progress=not args.no_progress)
        results["engine"] = {"kind": "vllm", "model": args.model,
                             "slo_scale": scale.to_dict() if scale is not None else {"factor": args.slo_scale}}
        if scale is not None:
            print(f"SLOs x {scale.factor:.3f}: unloaded TTFT {scale.ttft_s * 1e3:.0f} ms and TPOT "
                  f"{scale.tpot_s * 1e3:.1f} ms here, {scale.reference_ttft_s * 1e3:.0f} ms and "
                  f"{scale.reference_tpot_s * 1e3:.1f} ms on {DEFAULT_PROFILE}\n")
    elif graph_bench is not None:
        result, extra = graph_bench.run_graph_bench(config, graphs, progress=not args.no_progress)
        results.update(extra)
    else:
        result = run_bench(config, jobs=args.jobs, progress=not args.no_progress)

    print(format_table(result.runs))
    print()
    print(format_class_table(result.runs))
    if result.capacity is not None:
        print()
        print(format_capacity(result.capacity, target=config.capacity_target))
    _note_nothing_scored(result.runs, result.capacity, config)
    (args.out / "results.json").write_text(json.dumps({**result.to_dict(), **results}, indent=1) + "\n")
    written = ["results.json"]
    if args.records:
        with open(args.out / "records.jsonl", "w") as f:
            for record in result.records:
                f.write(json.dumps(record.to_json()) + "\n")
        written.append("records.jsonl")
    plot_results(result.runs, args.out / "goodput.png",
                 f"{args.workload} on {'vLLM, ' + args.model if live else sim.profile}")
    written.append("goodput.png")
    print(f"\nwall time {result.wall_s:.1f} s; wrote {', '.join(written)} to {args.out}/")
    if args.trace is not None:
        spec = sim.resolve()[0]
        count = _write_trace(args.trace, result.records, spec.model.name if spec.model is not None else spec.name)
        print(f"wrote {count} spans to {args.trace} (see them with: jitagent trace view {args.trace})")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jitagent`` command; returns the exit code."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    from jitagent.telemetry.export import SDKMissingError

    try:
        if args.command == "cost":
            _cost(args)
        elif args.command == "trace":
            _trace(args)
        elif args.command == "calibrate":
            _calibrate(args)
        elif args.list:
            _print_list()
        else:
            _bench(args)
    except BrokenPipeError:  # the reader left (| head): stop quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError, SDKMissingError) as exc:
        print(f"jitagent {args.command}: error: {printable(str(exc))}", file=sys.stderr)  # one line, always
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
