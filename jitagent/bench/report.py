"""Tables of benchmark results: policies side by side, per rate, mean ± spread over seeds."""

from __future__ import annotations

import math
import statistics
from typing import Any

__all__ = ["format_table", "format_class_table", "format_capacity", "format_cost"]


def _groups(runs: list[dict[str, Any]]) -> dict[tuple[float, str], list[dict[str, Any]]]:
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["rate"], run["policy"]), []).append(run)
    return groups


def _mean_sd(values: list[float | None]) -> tuple[float, float]:
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return math.nan, math.nan
    return statistics.fmean(present), statistics.pstdev(present) if len(present) > 1 else 0.0


def _cell(values: list[float | None], fmt: str, show_sd: bool) -> str:
    mean, sd = _mean_sd(values)
    if math.isnan(mean):
        return "-"
    return f"{mean:{fmt}}±{sd:{fmt}}" if show_sd else f"{mean:{fmt}}"


def _percent_cell(shares: list[float | None], show_sd: bool) -> str:
    """Shares in [0, 1] as a percentage; ``-`` where nothing was scored (``None``)."""
    cell = _cell([None if share is None else 100 * share for share in shares], ".1f", show_sd)
    return cell if cell == "-" else cell + "%"


def _render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def format_table(runs: list[dict[str, Any]], baseline: str = "fcfs") -> str:
    """The main table: one row per (rate, policy), the service-goodput ratio to ``baseline``."""
    groups = _groups(runs)
    show_sd = any(len(g) > 1 for g in groups.values())
    header = ["policy", "rate", "goodput tok/s", f"x {baseline}", "attainment", "req/s met",
              "TTFT p90 s", "TPOT p90 s", "preempt"]
    rows = []
    for (rate, policy), group in sorted(groups.items(), key=lambda kv: kv[0][0]):
        base = groups.get((rate, baseline))
        ratio = "-"
        if base is not None:
            base_mean, _ = _mean_sd([r["service_goodput"] for r in base])
            mean, _ = _mean_sd([r["service_goodput"] for r in group])
            ratio = f"{mean / base_mean:.2f}" if base_mean > 0 else "-"
        rows.append([
            policy, f"{rate:g}",
            _cell([r["service_goodput"] for r in group], ".0f", show_sd),
            ratio,
            _percent_cell([r["slo_attainment"] for r in group], show_sd),
            _cell([r["request_goodput"] for r in group], ".2f", show_sd),
            _cell([r["ttft_s"]["p90"] for r in group], ".2f", False),
            _cell([r["tpot_s"]["p90"] for r in group], ".3f", False),
            _cell([r["preemptions"] for r in group], ".0f", False),
        ])
    return _render(header, rows)


def _family(score_class: str) -> str:
    """``pipeline:deep_research`` belongs to ``pipeline``; other classes stand alone."""
    return score_class.split(":", 1)[0]


def _family_attainment(run: dict[str, Any], family: str) -> float | None:
    met = scored = 0
    for cls, figures in run["by_class"].items():
        if _family(cls) == family:
            met += figures["num_met"]
            scored += figures["num_scored"]
    return met / scored if scored else None


def format_class_table(runs: list[dict[str, Any]]) -> str:
    """SLO attainment of each request class (pipeline apps together), per (rate, policy)."""
    families = sorted({_family(c) for run in runs for c in run["by_class"]})
    groups = _groups(runs)
    rows = []
    for (rate, policy), group in sorted(groups.items(), key=lambda kv: kv[0][0]):
        cells = [_percent_cell([_family_attainment(r, f) for r in group], False) for f in families]
        rows.append([policy, f"{rate:g}", *cells])
    return _render(["policy", "rate", *(f"{f} attained" for f in families)], rows)


def format_capacity(capacity: dict[str, float | None], baseline: str = "fcfs", target: float = 0.9,
                    replicas: int = 1) -> str:
    """Capacity per policy (``-`` where the search had nothing to score), per replica when there
    are several, and the GPUs it saves against ``baseline`` (1 - base / policy)."""
    header = ["policy", f"capacity (req/s at >= {target:.0%})", *(["per replica"] if replicas > 1 else []),
              "resource saving"]
    base = capacity.get(baseline)
    rows = []
    for policy, rate in capacity.items():
        saving = f"{1 - base / rate:.0%}" if base and rate else "-"
        per_replica = ["-" if rate is None else f"{rate / replicas:.3g}"] if replicas > 1 else []
        rows.append([policy, "-" if rate is None else f"{rate:.3g}", *per_replica, saving])
    return _render(header, rows)


def format_cost(results: list[Any]) -> str:
    """Decision-time table of :func:`jitagent.bench.cost.measure_decision_cost` results."""
    header = ["policy", "running", "waiting", "median ms", "p90 ms", "p99 ms", "mean ms", "CPU p99 ms", "CPU mean ms",
              "step ms", "mean/step"]
    rows = [[r.policy, str(r.running), str(r.waiting), f"{r.median_ms:.3f}", f"{r.p90_ms:.3f}", f"{r.p99_ms:.3f}",
             f"{r.mean_ms:.3f}", f"{r.cpu_p99_ms:.3f}", f"{r.cpu_mean_ms:.3f}", f"{r.mean_step_ms:.1f}",
             f"{r.amortised_share:.2%}"] for r in results]
    return _render(header, rows)
