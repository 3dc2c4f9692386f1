"""Pictures of a benchmark: service goodput and SLO attainment against load, one line per policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jitagent.inputs import plot_label

__all__ = ["plot_results"]


def plot_results(runs: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Write a PNG with two panels (goodput, attainment) against arrival rate; mean ± sd over seeds.

    With a single rate the panels are bar charts, one bar per policy. A run that scored nothing
    (attainment ``None``) leaves a gap.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np

    policies = list(dict.fromkeys(r["policy"] for r in runs))
    rates = sorted({r["rate"] for r in runs})
    panels = [("service_goodput", "service goodput (tokens/s)", 1.0),
              ("slo_attainment", "SLO attainment (%)", 100.0)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (key, label, scale) in zip(axes, panels):
        for i, policy in enumerate(policies):
            means, sds = [], []
            for rate in rates:
                values = [scale * r[key] for r in runs
                          if r["policy"] == policy and r["rate"] == rate and r[key] is not None]
                means.append(np.mean(values) if values else np.nan)
                sds.append(np.std(values) if values else 0.0)
            if len(rates) == 1:
                ax.bar(i, means[0], yerr=sds[0], label=plot_label(policy), capsize=4)
            else:
                ax.errorbar(rates, means, yerr=sds, marker="o", capsize=3, label=plot_label(policy))
        if len(rates) == 1:
            ax.set_xticks(range(len(policies)), [plot_label(p) for p in policies])
            ax.set_xlabel(f"policy (rate {rates[0]:g} req/s)")
        else:
            ax.set_xlabel("arrival rate (requests or runs per second)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].axhline(90, color="grey", linestyle=":", linewidth=1)
    axes[0].legend()
    fig.suptitle(plot_label(title))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
