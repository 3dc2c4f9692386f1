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
   virtual time (``sim``: what the simulator predicts); then twice more, to tell the simulator's own
   error from the machine's: ``sim_refit`` on a profile refitted to the run's own steps (the step
   costs the run had, at its mean speed), and ``sim_replay`` on that profile with the machine's speed
   replayed window by window (``--speed-window`` seconds, a
   :class:`~jitagent.engines.speed_trace.SpeedTrace` measured from the run's steps) and the policy
   planning on a step-time model it learns from the simulated steps, as the real scheduler learns
   from the real ones: the run's machine as it ran, everything else simulated.

Prints, per policy, service goodput, SLO attainment, mean TTFT and mean end-to-end latency, real and
simulated, with the simulator's relative error; writes ``fidelity.json``, the profiles, the speed
traces, the step logs (``steps-POLICY.jsonl``) and every request, real and simulated
(``records-POLICY-{real,sim,sim-refit,sim-replay}.jsonl``), to ``--out``. The machine should be
otherwise idle: the real runs are timed on the wall clock.

    python benchmarks/vllm_fidelity.py --workload mixed --rate 2.5 --duration 240 --policies fcfs,jit

``--resimulate DIR`` simulates again against the real runs saved in ``DIR`` (seconds, not the
quarter of an hour of real runs): for working on the simulator.
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
from jitagent.bench.runner import default_warmup, simulate
from jitagent.bench.workloads import Workload, build_workload
from jitagent.engines.latency import FittedModel, StepShape, load_profile
from jitagent.engines.sim import SimConfig
from jitagent.engines.speed_trace import SpeedTrace
from jitagent.evaluation.goodput import GoodputSummary, RequestRecord, Window, summarize
from jitagent.scheduling.policies import make_policy
from jitagent_vllm import VLLMEngine, VLLMEngineConfig
from jitagent_vllm.bench import LIVE_DRAIN_S
from jitagent_vllm.calibrate import Calibration, fit_profile, run_probes
from jitagent_vllm.slo_scale import SLOScale, measure_slo_scale
from jitagent_vllm.step_timer import read_step_log, read_timed_steps

METRICS = ("service_goodput", "slo_attainment", "mean_ttft_s", "mean_e2e_s")
SIMULATIONS = ("sim", "sim_refit", "sim_replay")


@dataclasses.dataclass
class RealRun:
    """One policy on the real engine: its requests, the probes' profile around it, and its own steps
    (``(start, shape, seconds)``, start in seconds since the run began)."""

    records: list[RequestRecord]
    calibration: Calibration
    run_steps: list[tuple[float, StepShape, float]]
    window: tuple[float, float]   # the run's start and end on the step log's clock

    def summary(self, duration: float) -> GoodputSummary:
        return summarize(self.records, Window(warmup=default_warmup(duration), end=duration))

    def slowdown(self) -> float:
        """The run's measured step time over what the probes' profile predicts for the same steps:
        how far the machine's speed moved between the probes and the run (1.0: not at all)."""
        latency = self.calibration.profile.latency
        return sum(seconds for _, _, seconds in self.run_steps) / sum(latency.step_time(s) for _, s, _ in self.run_steps)

    @classmethod
    def load(cls, folder: Path, policy: str, window: tuple[float, float]) -> RealRun:
        """A run saved by this script in ``folder``."""
        ended = window[1]
        with open(folder / f"records-{policy}-real.jsonl", encoding="utf-8") as lines:
            records = [RequestRecord.from_json(json.loads(line)) for line in lines]
        log = folder / f"steps-{policy}.jsonl"
        probes = read_step_log(folder / f"steps-{policy}-before.jsonl") + read_step_log(log, since=ended)
        calibration = Calibration(load_profile(folder / f"calibrated-profile-{policy}.json"), probes)
        return cls(records, calibration, _run_steps(log, window), window)


def _run_steps(log: Path, window: tuple[float, float]) -> list[tuple[float, StepShape, float]]:
    started, ended = window
    return [(start - started, shape, seconds) for start, shape, seconds in read_timed_steps(log, since=started, until=ended)]


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
        started = time.perf_counter()   # the driver's clock starts 0.2 s later: nothing at the trace's scale
        outcome = engine.run(serve_live(base.with_slo_scale(scale.factor), engine,
                                        policy=config.policy, rate=args.rate, drain_s=LIVE_DRAIN_S))
        ended = time.perf_counter()
        engine.run(run_probes(engine, args.probe_rounds))
        calibration = fit_profile(read_step_log(before_log) + read_step_log(log, since=ended), engine, name)
    write_records(args.out / f"records-{config.policy}-real.jsonl", outcome.records)
    return RealRun(outcome.records, calibration, _run_steps(log, (started, ended)), (started, ended)), scale


def real_runs(args: argparse.Namespace, base: Workload, saved: dict[str, Any] | None) -> tuple[dict[str, RealRun], SLOScale]:
    """Each policy's run on the real engine, made now or read back from ``saved`` (``--resimulate``'s
    ``fidelity.json``)."""
    if saved is not None:
        scale = SLOScale(**{k: v for k, v in saved["slo_scale"].items() if k != "factor"})
        return {policy: RealRun.load(args.resimulate, policy, tuple(row["run_window"]))
                for policy, row in saved["policies"].items() if policy in args.policies.split(",")}, scale
    scale = None
    runs: dict[str, RealRun] = {}
    for policy in args.policies.split(","):
        config = VLLMEngineConfig(model=args.model, policy=policy, step_log=str(args.out / f"steps-{policy}.jsonl"))
        runs[policy], scale = serve_real(config, base, scale, args)
        summary = runs[policy].summary(args.duration)
        print(f"{policy}: real run done, goodput {summary.service_goodput:.0f} tok/s, "
              f"attainment {summary.slo_attainment:.1%}; probes: {runs[policy].calibration.summary()}")
    assert scale is not None
    return runs, scale


def simulations(policy: str, run: RealRun, workload: Workload, args: argparse.Namespace) -> dict[str, GoodputSummary]:
    """The simulator on the probes' profile, on the run's own step costs, and on the run's machine as it ran."""
    probe_profile = args.out / f"calibrated-profile-{policy}.json"
    probe_profile.write_text(run.calibration.profile.to_json())
    refitted = dataclasses.replace(run.calibration.profile, name=f"{run.calibration.profile.name}-refit",
                                   latency=FittedModel.fit([(shape, seconds) for _, shape, seconds in run.run_steps]))
    refit_profile = args.out / f"refitted-profile-{policy}.json"
    refit_profile.write_text(refitted.to_json())
    speed_trace = args.out / f"speed-trace-{policy}.json"
    speed_trace.write_text(SpeedTrace.measure(run.run_steps, refitted.latency, args.speed_window).to_json())
    configs = {"sim": SimConfig(profile=str(probe_profile)),
               "sim_refit": SimConfig(profile=str(refit_profile)),
               "sim_replay": SimConfig(profile=str(refit_profile), speed_trace=str(speed_trace), learn_step_times=True)}
    summaries = {}
    for name, config in configs.items():
        outcome = simulate(workload, make_policy(policy), config, rate=args.rate, drain_s=LIVE_DRAIN_S)
        write_records(args.out / f"records-{policy}-{name.replace('_', '-')}.jsonl", outcome.records)
        summaries[name] = outcome.summary
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-random-llama")
    parser.add_argument("--workload", default="mixed")
    parser.add_argument("--policies", default="fcfs,jit")
    parser.add_argument("--rate", type=float, default=2.5)
    parser.add_argument("--duration", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-rounds", type=int, default=1, help="probe sets before and after each run")
    parser.add_argument("--speed-window", type=float, default=15.0, help="seconds per window of the speed trace")
    parser.add_argument("--resimulate", type=Path, help="a folder this script wrote: simulate its real runs again")
    parser.add_argument("--out", type=Path, default=Path("bench-out/vllm-fidelity"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    saved = None
    if args.resimulate is not None:  # the real runs' settings, not the defaults
        saved = json.loads((args.resimulate / "fidelity.json").read_text())
        for key in ("model", "workload", "rate", "duration", "seed"):
            setattr(args, key, saved["config"][key])

    base = build_workload(args.workload, rate=args.rate, duration=args.duration, seed=args.seed)
    runs, scale = real_runs(args, base, saved)
    workload = base.with_slo_scale(scale.factor)

    results: dict[str, Any] = {"config": vars(args) | {"out": str(args.out), "resimulate": str(args.resimulate)},
                               "slo_scale": scale.to_dict(), "policies": {}}
    print(f"\n{'policy':8} {'metric':16} {'real':>10} " + " ".join(f"{name:>10} {'error':>8}" for name in SIMULATIONS))
    for policy, run in runs.items():
        sims = simulations(policy, run, workload, args)
        row: dict[str, Any] = {"real": figures(run.summary(args.duration))}
        row |= {name: figures(summary) for name, summary in sims.items()}
        row["error"] = {name: {m: error(row[name][m], row["real"][m]) for m in METRICS} for name in SIMULATIONS}
        row |= {"calibration": run.calibration.summary(), "run_steps_over_profile": run.slowdown(),
                "run_window": list(run.window)}
        results["policies"][policy] = row
        for m in METRICS:
            cells = " ".join(f"{row[name][m]:>10.3f} {row['error'][name][m]:>+8.1%}" for name in SIMULATIONS)
            print(f"{policy:8} {m:16} {row['real'][m]:>10.3f} {cells}")
        print(f"{policy:8} {'run steps / profile':16} {row['run_steps_over_profile']:>10.3f}")
    (args.out / "fidelity.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote fidelity.json, profiles, speed traces, step logs and records to {args.out}/")


if __name__ == "__main__":
    main()
