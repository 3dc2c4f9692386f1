"""The deep-research agent of ``deep_research.py`` (from ``jitagent_langgraph.apps``), traced with
OpenTelemetry: a span for every run, stage and LLM call, and each run's slack timeline, with no
tracing backend.

The spans go through the OpenTelemetry SDK (``pip install 'jitagent-core[otel]'``) to a JSON-lines file;
the same tracer provider goes to the ``JITClient`` and to ``jit_slo``, so each LLM call is a child
of the stage (node instance) that made it, ``Send`` fan-out included. Metrics go to an in-memory
reader and are summed up at the end. Run:
``python examples/traced_research.py [--deadline 4] [--runs 2] [--out traced-out]``, then
``jitagent trace view traced-out/spans.jsonl`` or open ``traced-out/timeline.png``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from jitagent_langgraph import jit_slo
from jitagent_langgraph.apps import build_deep_research
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from jitagent.client import JITClient
from jitagent.telemetry import build_timelines, format_timelines, jsonl_tracer_provider, plot_timelines, read_spans


def print_metrics(reader: InMemoryMetricReader) -> None:
    """The slack histogram (by level and stage) and the goodput counter, summed up."""
    data = reader.get_metrics_data()
    for metric in (m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics):
        if metric.name not in ("jitagent.slack", "jitagent.goodput"):
            continue
        for point in metric.data.data_points:
            where = f"{point.attributes['jitagent.level']} {point.attributes.get('jitagent.request_class', '')}"
            if metric.name == "jitagent.slack":
                print(f"slack  {where:<18} n={point.count:<3} min {point.min:+.3f} s  mean {point.sum / point.count:+.3f} s")
            else:
                print(f"goodput {where:<17} {point.value} tokens within their SLO")


async def main(deadline_s: float, runs: int, time_scale: float, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    with open(out / "spans.jsonl", "w") as spans:
        tracing = jsonl_tracer_provider(spans, "traced-research")
        client = JITClient(policy="jit", time_scale=time_scale, tracer_provider=tracing, meter_provider=meters)
        try:
            graph = jit_slo(build_deep_research(client.chat_model()), deadline_s=deadline_s,
                            tracer_provider=tracing, meter_provider=meters)
            for _ in range(runs):
                await graph.ainvoke({"topic": "just-in-time LLM serving", "rounds": 2})
        finally:
            await client.close()
            tracing.shutdown()
    timelines = build_timelines(read_spans(out / "spans.jsonl"))
    print(format_timelines(timelines, limit=runs, width=32))
    print()
    print_metrics(reader)
    plot_timelines(timelines, out / "timeline.png")
    print(f"\nwrote {out / 'spans.jsonl'} and {out / 'timeline.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline", type=float, default=4.0, help="end-to-end deadline per run (s)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--time-scale", type=float, default=0.05, help="wall seconds per modelled second")
    parser.add_argument("--out", type=Path, default=Path("traced-out"), help="where spans and the plot go")
    args = parser.parse_args()
    asyncio.run(main(args.deadline, args.runs, args.time_scale, args.out))
