"""OpenTelemetry traces and metrics of how each LLM call fared against its deadline.

Each call a ``JITClient`` serves is a ``chat {model}`` / ``text_completion {model}`` span
(:mod:`jitagent.telemetry.calls`; GenAI semantic conventions, INTERNAL, a child of the caller's
current span) with ``jitagent.*`` attributes: SLO, deadline, slack at the start and at the end,
queue time, time sat out, preemptions, output-length estimate, SLO met, policy, request class; the
engine's moments (admitted, first token, preempted) are its events.

Metrics: ``gen_ai.server.time_to_first_token``, ``gen_ai.server.time_per_output_token``,
``gen_ai.server.request.duration``, the ``jitagent.slack`` histogram and the ``jitagent.goodput``
counter, by policy and request class.

Only ``opentelemetry-api`` is needed; spans and metrics go to the providers passed to
``JITClient(tracer_provider=..., meter_provider=...)``, else to the global ones, and without a
configured provider nothing is computed. Prompt and completion text are recorded only with
``trace_content=True`` or ``JITAGENT_TRACE_CONTENT=1``.
"""

from jitagent.telemetry.providers import CONTENT_ENV, Telemetry
from jitagent.telemetry.stats import GenerationStats

__all__ = ["CONTENT_ENV", "GenerationStats", "Telemetry"]
