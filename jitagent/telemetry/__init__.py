"""OpenTelemetry traces and metrics of how each run, stage and LLM call fared against its deadline.

Spans (GenAI semantic conventions, all INTERNAL, plus ``jitagent.*`` attributes: SLO, deadline,
slack at the start and at the end, queue time, time sat out, preemptions, output-length estimate,
SLO met, policy, request class):

* ``invoke_workflow {graph}``: a ``jit_slo`` run (:mod:`jitagent_langgraph.telemetry`);
* ``invoke_agent {node}``: each node instance of the run, a stage with its own deadline;
* ``chat {model}`` / ``text_completion {model}``: each call a ``JITClient`` serves
  (:mod:`jitagent.telemetry.calls`), a child of the caller's current span, with the engine's
  moments (admitted, first token, preempted) as events.

Metrics: ``gen_ai.server.time_to_first_token``, ``gen_ai.server.time_per_output_token``,
``gen_ai.server.request.duration``, the ``jitagent.slack`` (met) and ``jitagent.lateness`` (missed)
histograms and the ``jitagent.goodput`` counter, by policy and request class.

Only ``opentelemetry-api`` is needed; spans and metrics go to the providers passed to
``JITClient(tracer_provider=..., meter_provider=...)`` and ``jit_slo(...)``, else to the global
ones, and without a configured provider nothing is computed. Prompt and completion text are
recorded only with ``trace_content=True`` or ``JITAGENT_TRACE_CONTENT=1``. Writing spans to a file
(:func:`jsonl_tracer_provider`, ``jitagent bench --trace``) needs the SDK (the ``otel`` extra);
:mod:`jitagent.telemetry.timeline` and :mod:`jitagent.telemetry.plot` show a run's slack from
its spans (``jitagent trace view|plot``).
"""

from jitagent.telemetry.bench import trace_records
from jitagent.telemetry.export import SDKMissingError, jsonl_tracer_provider
from jitagent.telemetry.plot import plot_timelines
from jitagent.telemetry.providers import CONTENT_ENV, Telemetry
from jitagent.telemetry.stats import GenerationStats
from jitagent.telemetry.timeline import (
    Timeline,
    build_timelines,
    format_timeline,
    format_timelines,
    read_spans,
    select_timelines,
    spans_from_sdk,
)

__all__ = [
    "CONTENT_ENV",
    "GenerationStats",
    "SDKMissingError",
    "Telemetry",
    "Timeline",
    "build_timelines",
    "format_timeline",
    "format_timelines",
    "jsonl_tracer_provider",
    "plot_timelines",
    "read_spans",
    "select_timelines",
    "spans_from_sdk",
    "trace_records",
]
