"""Real vLLM engine against the simulator, on the same workload and seed.

1. ``jitagent calibrate``'s probes fit a step-time profile of the engine (tiny-random-llama on this CPU
   by default);
2. each policy serves the workload on the real engine, in real time, SLOs scaled to the engine's
   measured unloaded speed (as ``jitagent bench --engine vllm`` does), every step logged;
3. the simulator, with the calibrated profile (which holds the engine's limits), serves the same workload in
   virtual time; and again with a profile refitted to the steps the real runs logged (how much of the
   error is the step-time model's).

Prints, per policy, service goodput, SLO attainment, mean TTFT and mean end-to-end latency, real and
simulated, with the simulator's relative error; writes ``fidelity.json`` and the profiles to ``--out``.
The machine should be otherwise idle: the real runs are timed on the wall clock.

    python benchmarks/vllm_fidelity.py --workload mixed --rate 2.5 --duration 240 --policies fcfs,jit
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from jitagent.bench.live import serve_live
from jitagent.bench.runner import simulate
from jitagent.bench.workloads import build_workload
from jitagent.engines.latency import FittedModel
from jitagent.engines.sim import SimConfig
from jitagent.scheduling.goodput import GoodputSummary
from jitagent.scheduling.policies import make_policy
from jitagent_vllm import VLLMEngine, VLLMEngineConfig
from jitagent_vllm.bench import LIVE_DRAIN_S
from jitagent_vllm.calibrate import calibrate
from jitagent_vllm.replay import ReplayEngine, measure_slo_scale
from jitagent_vllm.step_timer import read_step_log

METRICS = ("service_goodput", "slo_attainment", "mean_ttft_s", "mean_e2e_s")


def figures(summary: GoodputSummary) -> dict[str, float | None]:
    return {"service_goodput": summary.service_goodput, "slo_attainment": summary.slo_attainment,
            "mean_ttft_s": summary.ttft_s.mean, "mean_e2e_s": summary.e2e_s.mean}


def error(sim: float | None, real: float | None) -> float | None:
    return None if sim is None or not real else (sim - real) / real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-random-llama")
    parser.add_argument("--workload", default="mixed")
    parser.add_argument("--policies", default="fcfs,jit")
    parser.add_argument("--rate", type=float, default=2.5)
    parser.add_argument("--duration", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-out/vllm-fidelity"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    engine_config = VLLMEngineConfig(model=args.model)

    calibration = calibrate(engine_config)
    probe_profile = args.out / "calibrated-profile.json"
    probe_profile.write_text(calibration.profile.to_json())
    print(f"calibrated on {len(calibration.samples)} probe steps: {calibration.summary()}")

    results: dict[str, Any] = {"config": vars(args) | {"out": str(args.out)}, "calibration": calibration.summary(),
                               "policies": {}}
    base = build_workload(args.workload, rate=args.rate, duration=args.duration, seed=args.seed)
    scale = None
    run_steps = []
    real: dict[str, GoodputSummary] = {}
    for policy in args.policies.split(","):
        log = args.out / f"steps-{policy}.jsonl"
        log.unlink(missing_ok=True)
        with VLLMEngine(dataclasses.replace(engine_config, policy=policy, step_log=str(log),
                                            profile=str(probe_profile))) as engine:
            if scale is None:
                scale = engine.run(measure_slo_scale(engine))
                print(f"SLO scale {scale.factor:.3f} ({scale.to_dict()})")
            workload = base.with_slo_scale(scale.factor)
            outcome = engine.run(serve_live(workload, ReplayEngine(engine), policy=policy, rate=args.rate,
                                            drain_s=LIVE_DRAIN_S))
        real[policy] = outcome.summary
        run_steps += read_step_log(log)
        print(f"{policy}: real run done, goodput {outcome.summary.service_goodput:.0f} tok/s, "
              f"attainment {outcome.summary.slo_attainment:.1%}")

    refit_profile = args.out / "refitted-profile.json"
    refit_profile.write_text(dataclasses.replace(calibration.profile, name=f"{calibration.profile.name}-refit",
                                                 latency=FittedModel.fit(run_steps)).to_json())
    assert scale is not None
    workload = base.with_slo_scale(scale.factor)
    print(f"\n{'policy':8} {'metric':16} {'real':>10} {'sim':>10} {'error':>8} {'sim (refit)':>12} {'error':>8}")
    for policy, summary in real.items():
        sims = [simulate(workload, make_policy(policy), SimConfig(profile=str(path)),
                         rate=args.rate, drain_s=LIVE_DRAIN_S).summary for path in (probe_profile, refit_profile)]
        row = {"real": figures(summary), "sim": figures(sims[0]), "sim_refit": figures(sims[1])}
        row["error"] = {m: error(row["sim"][m], row["real"][m]) for m in METRICS}
        row["error_refit"] = {m: error(row["sim_refit"][m], row["real"][m]) for m in METRICS}
        results["policies"][policy] = row
        for m in METRICS:
            cells = [row["real"][m], row["sim"][m], row["error"][m], row["sim_refit"][m], row["error_refit"][m]]
            print(f"{policy:8} {m:16} {cells[0]:>10.3f} {cells[1]:>10.3f} {cells[2]:>+8.1%} {cells[3]:>12.3f} "
                  f"{cells[4]:>+8.1%}")
    results["slo_scale"] = scale.to_dict()
    (args.out / "fidelity.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote fidelity.json and the profiles to {args.out}/")


if __name__ == "__main__":
    main()
