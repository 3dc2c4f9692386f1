"""``jitagent calibrate``: a step-time profile fitted to a real vLLM engine (needs jitagent-vllm)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jitagent.cli import addons
from jitagent.cli.args import add_command, positive_int
from jitagent.inputs import check_output

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """The ``calibrate`` subcommand and its flags, on the ``jitagent`` command's subparsers."""
    calibrate = add_command(commands, "calibrate", run, help="fit a step-time profile to a real vLLM engine",
                            description="Run probe requests on a vLLM engine with the JIT scheduler, time every "
                                        "step, and write the fitted step-time profile (the JSON --profile reads). "
                                        "Needs jitagent-vllm.")
    calibrate.add_argument("--model", default="tiny-random-llama",
                           help="model folder, hub name or built-in name (default: tiny-random-llama)")
    calibrate.add_argument("--rounds", type=positive_int, default=2, help="times the probe set runs (default: 2)")
    calibrate.add_argument("--name", help="the profile's name (default: MODEL-cpu)")
    calibrate.add_argument("--out", type=Path, default=Path("profile.json"),
                           help="profile JSON to write (default: profile.json)")


def run(args: argparse.Namespace, about: dict[str, Any]) -> None:
    """``jitagent calibrate`` (a profile's schema has no room for ``about``: it is not recorded)."""
    vllm = addons.engine(addons.VLLM)
    calibrate, engine_config = vllm.calibrate, vllm.settings
    check_output(args.out, "a profile")  # before the probes, which take minutes

    result = calibrate(engine_config(model=args.model), name=args.name, rounds=args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(result.profile.to_json())
    fit = result.summary()
    print(f"fitted {fit['steps']:.0f} steps: median error {fit['median_relative_error']:.1%}, "
          f"90th percentile {fit['p90_relative_error']:.1%}")
    print(f"coefficients: {result.profile.latency}")
    print(f"wrote {args.out} (use it with: jitagent bench --profile {args.out})")
