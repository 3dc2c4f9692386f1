"""What jitagent's spans, events, attributes and metrics are called.

The OpenTelemetry GenAI semantic conventions name the model calls, the workflow and the agents
(nodes), and the latency metrics; slack, deadlines and scheduling have no standard names, so they
carry a ``jitagent.`` prefix. Times in attributes are seconds; ``jitagent.deadline`` is a Unix
time, comparable with the span's own timestamps.
"""

from __future__ import annotations

__all__ = [
    "PROVIDER", "OPERATION", "PROVIDER_NAME", "REQUEST_MODEL", "REQUEST_MAX_TOKENS", "REQUEST_SEED",
    "RESPONSE_MODEL", "RESPONSE_ID", "FINISH_REASONS", "INPUT_TOKENS", "OUTPUT_TOKENS", "TIME_TO_FIRST_CHUNK",
    "INPUT_MESSAGES", "OUTPUT_MESSAGES", "WORKFLOW_NAME", "AGENT_NAME", "ERROR_TYPE",
    "SLO_KIND", "SLO_TTFT", "SLO_TPOT", "SLO_DEADLINE", "SLO_ON_INFEASIBLE", "SLO_MET", "DEADLINE",
    "SLACK_START", "SLACK_END", "ESTIMATED_OUTPUT_TOKENS", "QUEUE", "SAT_OUT", "PREEMPTIONS", "POLICY",
    "REQUEST_CLASS", "RUN_ID", "STAGE", "STAGE_STEP", "STAGE_VISIT", "STAGE_EXPECTED", "STAGE_LLM_CALLS",
    "STAGE_TOKENS", "RUN_COMPLETED", "LEVEL", "EVENT_ADMITTED", "EVENT_FIRST_TOKEN", "EVENT_PREEMPTED",
    "METRIC_TTFT", "METRIC_TPOT", "METRIC_DURATION", "METRIC_SLACK", "METRIC_LATENESS", "METRIC_GOODPUT",
    "INSTRUMENTATION_SCOPE",
]

INSTRUMENTATION_SCOPE = "jitagent"
PROVIDER = "jitagent"   # gen_ai.provider.name of the calls jitagent serves

# -- GenAI semantic conventions ---------------------------------------------------------------------
OPERATION = "gen_ai.operation.name"            # chat, text_completion, invoke_workflow, invoke_agent
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_SEED = "gen_ai.request.seed"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"   # streamed calls
INPUT_MESSAGES = "gen_ai.input.messages"       # only with content tracing on
OUTPUT_MESSAGES = "gen_ai.output.messages"     # only with content tracing on
WORKFLOW_NAME = "gen_ai.workflow.name"
AGENT_NAME = "gen_ai.agent.name"
ERROR_TYPE = "error.type"

# -- jitagent ---------------------------------------------------------------------------------------
SLO_KIND = "jitagent.slo.kind"                 # stream, deadline, pipeline
SLO_TTFT = "jitagent.slo.ttft_s"
SLO_TPOT = "jitagent.slo.tpot_s"
SLO_DEADLINE = "jitagent.slo.deadline_s"
SLO_ON_INFEASIBLE = "jitagent.slo.on_infeasible"
SLO_MET = "jitagent.slo.met"
DEADLINE = "jitagent.deadline"                 # Unix time the span's work was due by
SLACK_START = "jitagent.slack.start_s"         # deadline minus start: the time it had
SLACK_END = "jitagent.slack.end_s"             # deadline minus end (negative: late)
ESTIMATED_OUTPUT_TOKENS = "jitagent.output_tokens.estimated"
QUEUE = "jitagent.queue_s"
SAT_OUT = "jitagent.sat_out_s"
PREEMPTIONS = "jitagent.preemptions"
POLICY = "jitagent.policy"
REQUEST_CLASS = "jitagent.request_class"
RUN_ID = "jitagent.pipeline.run_id"
STAGE = "jitagent.pipeline.stage"
STAGE_STEP = "jitagent.stage.step"
STAGE_VISIT = "jitagent.stage.visit"
STAGE_EXPECTED = "jitagent.stage.expected_s"
STAGE_LLM_CALLS = "jitagent.stage.llm_calls"
STAGE_TOKENS = "jitagent.stage.tokens"
RUN_COMPLETED = "jitagent.run.completed"
LEVEL = "jitagent.level"                       # metrics: call, stage or run

EVENT_ADMITTED = "jitagent.admitted"           # the call first ran
EVENT_FIRST_TOKEN = "jitagent.first_token"
EVENT_PREEMPTED = "jitagent.preempted"

METRIC_TTFT = "gen_ai.server.time_to_first_token"
METRIC_TPOT = "gen_ai.server.time_per_output_token"
METRIC_DURATION = "gen_ai.server.request.duration"
METRIC_SLACK = "jitagent.slack"                # met: deadline minus finish (>= 0)
METRIC_LATENESS = "jitagent.lateness"          # missed: finish minus deadline (> 0)
METRIC_GOODPUT = "jitagent.goodput"
