"""``jitagent-ray serve``: start the app (:func:`jitagent_ray.app.build_app`) on a Ray cluster and
serve its OpenAI API until Ctrl-C.

::

    jitagent-ray serve --replicas 2 --engine sim --router slo            # a local cluster, port 8000
    jitagent-ray serve --address auto --replicas 8 --engine vllm --model meta-llama/Llama-3.1-8B --replica-gpus 1

The conventions of the ``jitagent`` command hold: a mistake in the flags ends in one line on stderr
(exit code 2), Ctrl-C (or SIGTERM) in one line (exit code 130), after the app is shut down.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence

from jitagent.cli.args import Parser, non_negative_float, positive_float, positive_int
from jitagent.engines.sim import DEFAULT_PROFILE
from jitagent_ray.app import RAY_ROUTER, AppSettings, build_app
from jitagent_ray.ingress import API_ROOT
from jitagent_ray.replica import ENGINES, ReplicaSettings
from jitagent_ray.router import ROUTERS

__all__ = ["main", "build_parser"]

_INTERRUPTED = 130   # 128 + SIGINT, as the jitagent command


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="jitagent-ray",
                    description="jitagent's engines as Ray Serve replicas behind an SLO-aware router.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    serve = commands.add_parser("serve", help="start the app and serve its OpenAI API until Ctrl-C")
    app = serve.add_argument_group("the app")
    app.add_argument("--replicas", type=positive_int, default=2, help="engine replicas (default: 2)")
    app.add_argument("--engine", choices=ENGINES, default="sim",
                     help="sim: the simulated engine in real time; vllm: vLLM with JITScheduler (needs jitagent-vllm)")
    app.add_argument("--router", choices=(*ROUTERS, RAY_ROUTER), default="slo",
                     help="slo: where the call meets its SLO with the most slack, a pipeline run kept together; "
                          "pow2, round-robin, least-loaded; ray: Ray Serve's own (default: slo)")
    app.add_argument("--policy", default="jit", help="each replica's scheduling policy (default: jit)")
    app.add_argument("--model", help="the model (vllm: a folder, a hub name or tiny-random-llama)")
    app.add_argument("--profile", default=DEFAULT_PROFILE,
                     help=f"the simulated engine's profile (default: {DEFAULT_PROFILE})")
    app.add_argument("--time-scale", type=positive_float, default=1.0,
                     help="the simulated engine's wall seconds per modelled second (default: 1)")
    app.add_argument("--stats-period", type=positive_float, default=0.25,
                     help="seconds between the replicas' state reports to the router (default: 0.25)")
    app.add_argument("--replica-cpus", type=non_negative_float, default=1.0,
                     help="CPUs each replica reserves (default: 1)")
    app.add_argument("--replica-gpus", type=non_negative_float, default=0.0,
                     help="GPUs each replica reserves (default: 0)")
    where = serve.add_argument_group("where")
    where.add_argument("--address", help="the Ray cluster to join (auto: the running one); default: start a local one")
    where.add_argument("--host", default="127.0.0.1", help="the HTTP ingress's address (default: 127.0.0.1)")
    where.add_argument("--port", type=positive_int, default=8000, help="the HTTP ingress's port (default: 8000)")
    where.add_argument("--name", default="jitagent", help="the application's name (default: jitagent)")
    return parser


def _settings(args: argparse.Namespace) -> AppSettings:
    replica = ReplicaSettings(engine=args.engine, policy=args.policy, profile=args.profile,
                              time_scale=args.time_scale, model=args.model)
    return AppSettings(replicas=args.replicas, router=args.router, replica=replica, stats_period_s=args.stats_period,
                       replica_actor_options={"num_cpus": args.replica_cpus, "num_gpus": args.replica_gpus})


def serve_app(args: argparse.Namespace) -> None:
    """Start the app and block until interrupted; the app is shut down however this ends."""
    settings = _settings(args)   # a mistake ends here, before a cluster starts
    import ray
    from ray import serve

    ray.init(address=args.address, include_dashboard=False)
    signal.signal(signal.SIGTERM, _interrupt)   # a service manager's stop, as Ctrl-C (after Ray's own handler)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build_app(settings), name=args.name, route_prefix="/")
        replica = settings.replica
        print(f"jitagent-ray: {settings.replicas} {replica.engine} replicas ({replica.policy}) behind the "
              f"{settings.router} router; OpenAI API at http://{args.host}:{args.port}{API_ROOT} "
              f"(from Python: jitagent_ray.connect({args.name!r})); Ctrl-C to stop", flush=True)
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jitagent-ray``; returns the exit code."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        serve_app(args)
    except KeyboardInterrupt:
        print("jitagent-ray serve: interrupted", file=sys.stderr)
        return _INTERRUPTED
    except ValueError as exc:
        print(f"jitagent-ray serve: error: {exc}", file=sys.stderr)
        return 2
    return 0
