"""``jitagent bench``: every policy at every rate and seed on one workload, side by side.

Runs on the simulated engine in virtual time, or (``--engine vllm``) a real vLLM engine in real
time, or (``--base-url URL``) a server that is already running, in real time, or (``--workload
langgraph``) runs of real LangGraph graphs on the simulated engine in real time. Prints the table;
writes ``results.json``, ``goodput.png``, optionally ``records.jsonl`` to ``--out`` and with
``--trace FILE`` the runs' spans as JSON lines.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jitagent._version import DISTRIBUTION
from jitagent.cli import addons
from jitagent.cli.args import (add_command, at_most, list_of, name_list, non_negative_float, positive_float,
                               positive_int, seed_list)
from jitagent.cli.conventions import show_progress
from jitagent.inputs import check_output, open_input
from jitagent.plugins import WorkloadPlugin

if TYPE_CHECKING:
    from jitagent.bench.suite import BenchConfig
    from jitagent.evaluation.goodput import RequestRecord

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)

_MAX_FACTOR = 1e6       # --slo-scale, --decode-weight, --tightness: far beyond use, far from overflowing a float
_MAX_TIME_SCALE = 10.0  # --time-scale: wall seconds per modelled second (a run's sleeps grow with it)
_MAX_PROFILE_BYTES = 1 << 20   # a fitted profile is about 2 KB
_MAX_REPLICAS = 4096   # --replicas: far beyond a deployment, far from exhausting memory with empty cores
#: Routers on several replicas unless --routers says: what Ray Serve gives by default (pow2) against the
#: SLO-aware one, as the default policies set the engine's default (fcfs) against jit.
_DEFAULT_ROUTERS = ("pow2", "slo")


def add_parser(commands: Any) -> None:
    """The ``bench`` subcommand and its flags, on the ``jitagent`` command's subparsers."""
    bench = add_command(commands, "bench", run, help="compare scheduling policies on a workload",
                        description="Run a workload under each policy on the simulated engine and report service "
                                    "goodput, SLO attainment and latency side by side.")
    bench.add_argument("--list", action="store_true", help="list workloads, profiles and policies, then exit")
    bench.add_argument("--workload", default="mixed",
                       help="built-in workload name, a workload file (.yaml/.json), or langgraph (runs of the "
                            "example LangGraph graphs, needs jitagent-langgraph)")
    bench.add_argument("--graphs", type=name_list,
                       help="with --workload langgraph: the graphs runs are drawn from (default: all of them)")
    bench.add_argument("--tightness", type=list_of(at_most(positive_float, _MAX_FACTOR)),
                       help="with --workload langgraph: a run's deadline is one of these times its graph's "
                            "unloaded latency (default: 1.5,2,3)")
    bench.add_argument("--time-scale", type=at_most(positive_float, _MAX_TIME_SCALE),
                       help="with --workload langgraph: wall seconds per modelled second (default: 0.1)")
    bench.add_argument("--engine", default="sim", choices=["sim", "vllm"],
                       help="the simulated engine in virtual time (default), or a real vLLM engine in real time "
                            "(needs jitagent-vllm)")
    bench.add_argument("--base-url", metavar="URL",
                       help="benchmark a running OpenAI-compatible server instead, such as vllm serve with "
                            "jitagent_vllm.JITScheduler (http://host:port/v1), in real time; its API key is read "
                            "from OPENAI_API_KEY; --policies names the one policy the server runs (default: server)")
    bench.add_argument("--model", default=None,
                       help="with --engine vllm: model folder, hub name or built-in name (default: tiny-random-llama); "
                            "with --base-url: the served model (default: the first the server lists)")
    bench.add_argument("--slo-scale", type=at_most(positive_float, _MAX_FACTOR),
                       help="multiply every SLO and tool gap by this (default: 1; with --engine vllm, measured "
                            "from the engine's unloaded speed, see docs/vllm.md)")
    bench.add_argument("--profile", default=None,
                       help="hardware profile name or JSON path (default: llama-3.1-8b-a100); with --engine vllm, "
                            "the step-time profile the scheduler starts from")
    bench.add_argument("--preset", default=None, choices=["vllm", "jitserve"],
                       help="engine settings: vLLM's defaults for the GPU, or the JITServe artifact's (32 seqs)")
    bench.add_argument("--token-budget", type=positive_int, help="max tokens per step (default: vLLM's for the GPU)")
    bench.add_argument("--max-num-seqs", type=positive_int, help="max running requests (default: vLLM's for the GPU)")
    bench.add_argument("--policies", type=name_list, default=("fcfs", "edf", "ltr", "las", "jit"),
                       help="comma-separated policies (default: fcfs,edf,ltr,las,jit); on replicas, each runs "
                            "behind each of --routers, or name a pair ROUTER/POLICY (e.g. pow2/fcfs,slo/jit)")
    bench.add_argument("--replicas", type=at_most(positive_int, _MAX_REPLICAS), default=1,
                       help="simulated engines, each running the policy, behind a router (default: 1); "
                            "--rate is the arrival rate they share")
    bench.add_argument("--routers", "--router", type=name_list,
                       help="with --replicas: comma-separated routers, each run with each policy (default: "
                            f"{','.join(_DEFAULT_ROUTERS)}: Ray Serve's default against the SLO-aware one)")
    bench.add_argument("--rate", type=positive_float, default=2.0, help="arrivals per second (default: 2)")
    bench.add_argument("--sweep", type=list_of(positive_float), help="comma-separated rates, instead of --rate")
    bench.add_argument("--duration", type=positive_float, default=600.0, help="arrival window in seconds (default: 600)")
    bench.add_argument("--seed", type=seed_list, default=(0,), help="seed, or comma-separated seeds (default: 0)")
    bench.add_argument("--arrivals", choices=["poisson", "trace"], default="poisson",
                       help="Poisson arrivals or the trace's own timestamps rescaled (default: poisson)")
    bench.add_argument("--decode-weight", type=at_most(positive_float, _MAX_FACTOR), default=1.0,
                       help="weight of an output token against a prompt token in goodput (default: 1; 8 as JITServe)")
    bench.add_argument("--warmup", type=non_negative_float, help="seconds not scored at the start (default: 5%%, max 60)")
    bench.add_argument("--capacity", action="store_true", help="also search each policy's capacity (rate at >= 90%% attainment)")
    bench.add_argument("--records", action="store_true", help="also write records.jsonl, one line per request")
    bench.add_argument("--trace", type=Path, metavar="FILE",
                       help="also write OpenTelemetry spans of every run, stage and call to FILE as JSON lines "
                            "(needs the otel extra)")
    bench.add_argument("--jobs", type=positive_int, help="worker processes (default: one per core)")
    bench.add_argument("--no-progress", action="store_true",
                       help="no progress bar (there is none either when stderr is not a terminal)")
    bench.add_argument("--out", type=Path, default=Path("bench-out"), help="output directory (default: bench-out)")


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


def _print_list() -> None:
    from jitagent.bench.workloads import describe_workloads
    from jitagent.engines.latency import list_profiles
    from jitagent.routing import describe_routers
    from jitagent.scheduling.policies import describe_policies

    workloads = [*describe_workloads(), *addons.workloads()]
    for title, items in (("workloads", workloads), ("profiles", list_profiles()),
                         ("policies", describe_policies()), ("routers", describe_routers())):
        print(f"{title}:")
        width = max(len(name) for name, _ in items)
        for name, text in items:
            print(f"  {name.ljust(width)}  {text}")


def _graph_bench(args: argparse.Namespace) -> WorkloadPlugin | None:
    """The graph workload's plugin for ``--workload langgraph`` (checking its flags), else ``None``."""
    graph_flags = (args.graphs, args.tightness, args.time_scale)
    if args.workload != addons.GRAPHS:
        if any(flag is not None for flag in graph_flags):
            raise ValueError("--graphs, --tightness and --time-scale go with --workload langgraph")
        return None
    if args.engine != "sim" or args.base_url is not None:
        raise ValueError("--workload langgraph runs on the simulated engine only")
    return addons.workload(addons.GRAPHS)


def _run_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The runs' names: each policy behind each router (``ROUTER/POLICY``) when routers are asked
    for or there are several replicas, a pair as given; ValueError for an unknown name or for
    routers without the simulated engine in virtual time."""
    from jitagent.bench.suite import routed
    from jitagent.routing import make_router

    routers = args.routers or (_DEFAULT_ROUTERS if args.replicas > 1 else ())
    names = tuple(dict.fromkeys(
        name for policy in args.policies
        for name in ([policy] if routed(policy)[0] is not None or not routers else
                     [f"{router}/{policy}" for router in routers])))
    for name in names:
        router, _ = routed(name)
        if router is not None:
            make_router(router)   # unknown names fail here, before any work
    if any(routed(name)[0] is not None for name in names) and (args.engine != "sim" or args.workload == addons.GRAPHS):
        raise ValueError("--replicas and routers run on the simulated engine in virtual time only")
    return names


def _remote_policy(args: argparse.Namespace) -> str | None:
    """With ``--base-url``: the name the results give the server's policy (checking the flags that
    go with it), else ``None``."""
    if args.base_url is None:
        return None
    if args.engine != "sim" or args.capacity or args.replicas > 1 or args.routers:
        raise ValueError("--base-url benchmarks one running server: it goes without --engine, --capacity, "
                         "--replicas and --routers")
    if not args.base_url.startswith(("http://", "https://")):
        raise ValueError(f"--base-url must be an http:// or https:// URL, got {args.base_url!r}")
    if importlib.util.find_spec("httpx2") is None:
        raise ValueError(f"--base-url needs the 'client' extra: pip install '{DISTRIBUTION}[client]'")
    return args.policies[0] if len(args.policies) == 1 else "server"


def run(args: argparse.Namespace, about: dict[str, Any]) -> None:
    """``jitagent bench`` (``about``: the version and command line, recorded in ``results.json``)."""
    if args.list:
        _print_list()
        return
    from jitagent.bench.plots import plot_results
    from jitagent.bench.report import format_capacity, format_class_table, format_table
    from jitagent.bench.suite import BenchConfig, routed, run_bench
    from jitagent.bench.workloads import build_workload
    from jitagent.engines.sim import DEFAULT_PROFILE, SimConfig
    from jitagent.scheduling.policies import make_policy

    graph_bench = _graph_bench(args)
    _check_paths(args)
    names = _run_names(args)
    for name in names:  # unknown names fail here, before any work
        if graph_bench is not None:
            graph_bench.check_policy(name)  # a policy, maybe with +jit_slo or +plain
        else:
            make_policy(routed(name)[1])
    remote = _remote_policy(args)
    live = args.engine == "vllm"
    sim = SimConfig(profile=DEFAULT_PROFILE if live else args.profile or DEFAULT_PROFILE, preset=args.preset,
                    token_budget=args.token_budget, max_num_seqs=args.max_num_seqs)
    sim.resolve()
    if live:
        vllm = addons.engine(addons.VLLM)
        engine_config, run_vllm_bench = vllm.settings, vllm.run_bench
        if args.capacity:
            raise ValueError("--capacity searches many rates: it runs on the simulated engine only")
    rates = args.sweep or (args.rate,)
    if graph_bench is not None:
        given = {"graphs": args.graphs, "tightness": args.tightness, "time_scale": args.time_scale}
        graphs = graph_bench.options(**{key: value for key, value in given.items() if value is not None})
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

    config = BenchConfig(workload=args.workload, policies=(remote,) if remote else names, rates=tuple(rates),
                         seeds=args.seed,
                         duration=args.duration, sim=sim, arrivals=args.arrivals, decode_weight=args.decode_weight,
                         warmup=args.warmup, capacity=args.capacity,
                         keep_records=args.records or args.trace is not None, slo_scale=args.slo_scale,
                         replicas=args.replicas)
    args.out.mkdir(parents=True, exist_ok=True)
    progress = show_progress(args.no_progress)
    logger.info("%s: %d policies x %d rates x %d seeds on %d replicas, writing to %s", args.workload, len(names),
                len(rates), len(args.seed), args.replicas, args.out)
    results: dict[str, object] = {}
    if remote:
        from jitagent.bench.remote import run_remote_bench

        result, args.model = run_remote_bench(config, args.base_url, model=args.model,
                                              api_key=os.environ.get("OPENAI_API_KEY"), progress=progress)
        results["engine"] = {"kind": "remote", "base_url": args.base_url, "model": args.model,
                             "slo_scale": {"factor": result.config.slo_scale}}
    elif live:
        args.model = args.model or "tiny-random-llama"
        engine = engine_config(model=args.model, profile=args.profile, max_num_seqs=args.max_num_seqs,
                               max_num_batched_tokens=args.token_budget)
        result, scale = run_vllm_bench(config, engine, progress=progress)
        results["engine"] = {"kind": "vllm", "model": args.model,
                             "slo_scale": scale.to_dict() if scale is not None else {"factor": args.slo_scale}}
        if scale is not None:
            print(f"SLOs x {scale.factor:.3f}: unloaded TTFT {scale.ttft_s * 1e3:.0f} ms and TPOT "
                  f"{scale.tpot_s * 1e3:.1f} ms here, {scale.reference_ttft_s * 1e3:.0f} ms and "
                  f"{scale.reference_tpot_s * 1e3:.1f} ms on {DEFAULT_PROFILE}\n")
    elif graph_bench is not None:
        result, extra = graph_bench.run(config, graphs, progress=progress)
        results.update(extra)
    else:
        result = run_bench(config, jobs=args.jobs, progress=progress)

    # The files first: a reader that leaves early (| head) must not cost them.
    (args.out / "results.json").write_text(json.dumps({**about, **result.to_dict(), **results}, indent=1) + "\n")
    written = ["results.json"]
    if args.records:
        with open(args.out / "records.jsonl", "w") as f:
            for record in result.records:
                f.write(json.dumps(record.to_json()) + "\n")
        written.append("records.jsonl")
    replicas = f", {args.replicas} replicas" if args.replicas > 1 else ""
    plot_results(result.runs, args.out / "goodput.png",
                 f"{args.workload} on {args.model if remote else 'vLLM, ' + args.model if live else sim.profile}{replicas}")
    written.append("goodput.png")
    if args.trace is not None:
        spec = sim.resolve()[0]
        spans = _write_trace(args.trace, result.records, spec.model.name if spec.model is not None else spec.name)

    baseline = next((name for name in names if routed(name)[1] == "fcfs"), "fcfs")
    print(format_table(result.runs, baseline=baseline))
    print()
    print(format_class_table(result.runs))
    if result.capacity is not None:
        print()
        print(format_capacity(result.capacity, baseline=baseline, target=config.capacity_target,
                              replicas=args.replicas))
    _note_nothing_scored(result.runs, result.capacity, config)
    print(f"\nwall time {result.wall_s:.1f} s; wrote {', '.join(written)} to {args.out}/")
    if args.trace is not None:
        print(f"wrote {spans} spans to {args.trace} (see them with: jitagent trace view {args.trace})")
