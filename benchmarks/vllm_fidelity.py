"""Real vLLM engine against the simulator, on the same workload and seed.

For each policy (tiny-random-llama on this CPU by default), every step logged:

1. ``jitagent calibrate``'s probes run (``--probe-rounds``) on an engine of their own; then a fresh engine
   serves the workload in real time, SLOs scaled to the engine's measured unloaded speed (as
   ``jitagent bench --engine vllm`` does; measured once, after the first probes), and runs the probes
   again;
2. a step-time profile is fitted to the probe steps on both sides of the run: a shared machine's speed
   drifts by tens of percent within minutes (measured: a profile calibrated two minutes before a run
   was 12-37% fast against that run's steps), so the probes bracket the run they stand for;
3. the simulator, with that profile (which holds the engine's limits), serves the same workload in
   virtual time; and again with a profile refitted to the run's own steps (how much of the error is
   the step-time model's).

Prints, per policy, service goodput, SLO attainment, mean TTFT and mean end-to-end latency, real and
simulated, with the simulator's relative error; writes ``fidelity.json``, the profiles, the step logs
(``steps-POLICY.jsonl``) and every request, real and simulated (``records-POLICY-{real,sim}.jsonl``), to
``--out``. The machine should be otherwise idle: the real runs are timed on the wall clock.

    python benchmarks/vllm_fidelity.py --workload mixed --rate 2.5 --duration 240 --policies fcfs,jit
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from jitagent.bench.live import serve_live
from jitagent.bench.runner import RunOutcome, simulate
from jitagent.bench.workloads import Workload, build_workload
from jitagent.engines.latency import FittedModel, StepShape
from jitagent.engines.sim import SimConfig
from jitagent.scheduling.goodput import GoodputSummary, RequestRecord
from jitagent.scheduling.policies import make_policy
from jitagent_vllm import VLLMEngine, VLLMEngineConfig
from jitagent_vllm.bench import LIVE_DRAIN_S
from jitagent_vllm.calibrate import Calibration, fit_profile, run_probes
from jitagent_vllm.replay import ReplayEngine, SLOScale, measure_slo_scale
from jitagent_vllm.step_timer import read_step_log

METRICS = ("service_goodput", "slo_attainment", "mean_ttft_s", "mean_e2e_s")


@dataclasses.dataclass
class RealRun:
    """One policy on the real engine: the run, the probes' profile around it, and the run's own steps."""

    outcome: RunOutcome
    calibration: Calibration
    run_steps: list[tuple[StepShape, float]]

    def slowdown(self) -> float:
        """The run's measured step time over what the probes' profile predicts for the same steps:
        how far the machine's speed moved between the probes and the run (1.0: not at all)."""
        latency = self.calibration.profile.latency
        return sum(seconds for _, seconds in self.run_steps) / sum(latency.step_time(s) for s, _ in self.run_steps)


def figures(summary: GoodputSummary) -> dict[str, float | None]:
    return {"service_goodput": summary.service_goodput, "slo_attainment": summary.slo_attainment,
            "mean_ttft_s": summary.ttft_s.mean, "mean_e2e_s": summary.e2e_s.mean}


def error(sim: float | None, real: float | None) -> float | None:
    return None if sim is None or not real else (sim - real) / real


def write_records(path: Path, records: list[RequestRecord]) -> None:
    """One JSON line per request, as ``jitagent bench --records`` writes them: to compare runs request by request."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record.to_json()) + "\n" for record in records)


def serve_real(config: VLLMEngineConfig, base: Workload, scale: SLOScale | None, args: argparse.Namespace,
               ) -> tuple[RealRun, SLOScale]:
    """Probes on an engine of their own, the workload on a fresh engine, probes again on that one.

    The run gets an engine that has served nothing, as the simulator's starts: a JIT policy learns
    output lengths from whatever it serves, probes included. The first probes' profile is its
    step-time prior (it refits online from there)."""
    name = f"{Path(config.model).name}-cpu-{config.policy}"
    before_log, log = args.out / f"steps-{config.policy}-before.jsonl", Path(config.step_log or "")
    for path in (before_log, log):
        path.unlink(missing_ok=True)
    with VLLMEngine(dataclasses.replace(config, step_log=str(before_log))) as engine:
        engine.run(run_probes(engine, args.probe_rounds))
        if scale is None:
            scale = engine.run(measure_slo_scale(engine))
            print(f"SLO scale {scale.factor:.3f} ({scale.to_dict()})")
        prior = args.out / f"prior-profile-{config.policy}.json"
        prior.write_text(fit_profile(read_step_log(before_log), engine, name).profile.to_json())
    with VLLMEngine(dataclasses.replace(config, profile=str(prior))) as engine:
        started = time.perf_counter()
        outcome = engine.run(serve_live(base.with_slo_scale(scale.factor), ReplayEngine(engine),
                                        policy=config.policy, rate=args.rate, drain_s=LIVE_DRAIN_S))
        ended = time.perf_counter()
        engine.run(run_probes(engine, args.probe_rounds))
        calibration = fit_profile(read_step_log(before_log) + read_step_log(log, since=ended), engine, name)
    return RealRun(outcome, calibration, read_step_log(log, since=started, until=ended)), scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-random-llama")
    parser.add_argument("--workload", default="mixed")
    parser.add_argument("--policies", default="fcfs,jit")
    parser.add_argument("--rate", type=float, default=2.5)
    parser.add_argument("--duration", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-rounds", type=int, default=1, help="probe sets before and after each run")
    parser.add_argument("--out", type=Path, default=Path("bench-out/vllm-fidelity"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)

    base = build_workload(args.workload, rate=args.rate, duration=args.duration, seed=args.seed)
    scale = None
    runs: dict[str, RealRun] = {}
    for policy in args.policies.split(","):
        config = VLLMEngineConfig(model=args.model, policy=policy, step_log=str(args.out / f"steps-{policy}.jsonl"))
        runs[policy], scale = serve_real(config, base, scale, args)
        summary = runs[policy].outcome.summary
        write_records(args.out / f"records-{policy}-real.jsonl", runs[policy].outcome.records)
        print(f"{policy}: real run done, goodput {summary.service_goodput:.0f} tok/s, "
              f"attainment {summary.slo_attainment:.1%}; probes: {runs[policy].calibration.summary()}")
    assert scale is not None
    workload = base.with_slo_scale(scale.factor)

    results: dict[str, Any] = {"config": vars(args) | {"out": str(args.out)}, "slo_scale": scale.to_dict(),
                               "policies": {}}
    print(f"\n{'policy':8} {'metric':16} {'real':>10} {'sim':>10} {'error':>8} {'sim (refit)':>12} {'error':>8}")
    for policy, run in runs.items():
        probe_profile = args.out / f"calibrated-profile-{policy}.json"
        probe_profile.write_text(run.calibration.profile.to_json())
        refit_profile = args.out / f"refitted-profile-{policy}.json"
        refit_profile.write_text(dataclasses.replace(run.calibration.profile, name=f"{run.calibration.profile.name}-refit",
                                                     latency=FittedModel.fit(run.run_steps)).to_json())
        sims = [simulate(workload, make_policy(policy), SimConfig(profile=str(path)),
                         rate=args.rate, drain_s=LIVE_DRAIN_S) for path in (probe_profile, refit_profile)]
        write_records(args.out / f"records-{policy}-sim.jsonl", sims[0].records)
        row = {"real": figures(run.outcome.summary), "sim": figures(sims[0].summary),
               "sim_refit": figures(sims[1].summary), "calibration": run.calibration.summary(),
               "run_steps_over_profile": run.slowdown()}
        row["error"] = {m: error(row["sim"][m], row["real"][m]) for m in METRICS}
        row["error_refit"] = {m: error(row["sim_refit"][m], row["real"][m]) for m in METRICS}
        results["policies"][policy] = row
        for m in METRICS:
            cells = [row["real"][m], row["sim"][m], row["error"][m], row["sim_refit"][m], row["error_refit"][m]]
            print(f"{policy:8} {m:16} {cells[0]:>10.3f} {cells[1]:>10.3f} {cells[2]:>+8.1%} {cells[3]:>12.3f} "
                  f"{cells[4]:>+8.1%}")
        print(f"{policy:8} {'run steps / profile':16} {row['run_steps_over_profile']:>10.3f}")
    (args.out / "fidelity.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote fidelity.json, profiles, step logs and records to {args.out}/")


if __name__ == "__main__":
    main()
