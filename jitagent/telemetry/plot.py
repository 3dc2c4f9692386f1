"""Slack timelines as a picture: one panel per run, one bar per span (run, stages, calls)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jitagent.inputs import plot_label
from jitagent.telemetry import names
from jitagent.telemetry.timeline import MAX_INDENT, Row, Timeline

__all__ = ["plot_timelines"]

_COLOURS = {True: "tab:green", False: "tab:red", None: "tab:grey"}
_MARKERS = {names.EVENT_FIRST_TOKEN: ("o", "first token"), names.EVENT_PREEMPTED: ("x", "preempted"),
            names.EVENT_ADMITTED: (">", "admitted")}
MAX_ROWS = 60   # spans drawn per timeline; the rest are counted in a last row


def plot_timelines(timelines: Sequence[Timeline], path: Path) -> Path:
    """Write a PNG of ``timelines``: each span a bar from its start to its end (green: met its
    deadline, red: missed, grey: none), its deadline a black tick, its slack at the end beside it,
    and the engine's moments (admission, first token, preemption) as markers. A timeline of more
    than :data:`MAX_ROWS` spans shows its first ones and says how many more there are."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    if not timelines:
        raise ValueError("no timeline to plot")
    heights = [0.8 + 0.28 * min(len(t.rows), MAX_ROWS + 1) for t in timelines]
    fig, axes = plt.subplots(len(timelines), 1, figsize=(11, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    seen: set[str] = set()
    for ax, timeline in zip(axes[:, 0], timelines):
        rows = _drawn_rows(timeline.rows)
        for y, row in enumerate(rows):
            ax.barh(y, max(row.end - row.start, 1e-4), left=row.start, height=0.6, color=_COLOURS[row.met],
                    alpha=0.85)
            if row.deadline is not None:
                ax.plot([row.deadline] * 2, [y - 0.4, y + 0.4], color="black", linewidth=1.5)
            if row.slack_end is not None:
                ax.annotate(f"{row.slack_end:+.2f}s", (max(row.end, row.deadline or row.end), y),
                            xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
            for name, at in row.events:
                if name in _MARKERS:
                    marker, label = _MARKERS[name]
                    ax.plot(at, y, marker, color="black", markersize=4,
                            label=label if label not in seen else None, fillstyle="none")
                    seen.add(label)
        ax.set_yticks(range(len(rows)), [plot_label("· " * min(r.depth, MAX_INDENT) + r.label) for r in rows],
                      fontsize=8)  # dots: depth
        ax.invert_yaxis()
        ax.set_xlim(0, timeline.horizon * 1.12 or 1.0)
        ax.set_title(f"{plot_label(timeline.title)}: " + {True: "met", False: "MISSED", None: "no deadline"}[timeline.met],
                     fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds from the run's start (black tick: deadline; label: slack at the end)")
    if seen:
        axes[0, 0].legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _drawn_rows(rows: Sequence[Row]) -> Sequence[Row]:
    """The first :data:`MAX_ROWS` rows, and one more counting the others, drawn as a plain bar."""
    if len(rows) <= MAX_ROWS:
        return rows
    last = rows[MAX_ROWS - 1]
    more = Row(0, f"... {len(rows) - MAX_ROWS} more spans", last.start, last.start, None, None, None, None, ())
    return [*rows[:MAX_ROWS], more]
