"""``JITScheduler``: vLLM V1's scheduler, steered each step by a jitagent policy.

vLLM runs it unmodified as its scheduler class (``scheduler_cls="jitagent_vllm.JITScheduler"``, or
``vllm serve --scheduler-cls jitagent_vllm.JITScheduler``). It keeps a
:class:`~jitagent.scheduling.request.RequestState` for every request, read from vLLM's own request
and from the SLO data in ``SamplingParams.extra_args`` (see :mod:`jitagent_vllm.request_args`), and
each step turns the policy's :class:`~jitagent.scheduling.plan.StepPlan` into vLLM's terms before
vLLM's own loop runs:

* **rejected** requests end with an error (finish reason ``error``, stop reason naming why);
* **preempted** requests are preempted as vLLM does it (blocks freed, recomputed later);
* **running order** is the plan's; running requests the plan leaves out sit the step out
  (``next_decode_eligible_step``), keeping their KV cache and their seat;
* **admissions** pass through a gate on the waiting queue (:class:`~jitagent_vllm.gated_queue.GatedQueue`):
  vLLM's loop sees only the admitted requests, in the plan's order;
* the step's **token budget** is what the plan scheduled, so vLLM's greedy loop, walking the same
  order, hands out the same chunks.

vLLM's loop still checks every limit itself. Whatever it could not do (an admission the KV cache
refused) goes back to the policy, and a policy that raises (when it plans a step, or is told of a
request) never stops the engine: a :class:`~jitagent.scheduling.supervisor.PolicySupervisor`, the
same as the simulated engine's, has that step scheduled first-come-first-served by vLLM's own loop,
logs the error once, and restarts the policy (if it cannot, vLLM's own loop schedules from then on).

Nothing a request carries may stop the engine either: a request with bad SLO data, or with a prompt
id outside the vocabulary (which vLLM does not check without a tokenizer, and whose embedding
lookup would end the engine process), ends with an error (stop reason ``invalid_request: ...``)
before the model sees it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.engine import EngineCoreOutput, EngineCoreOutputs, FinishReason
from vllm.v1.outputs import ModelRunnerOutput
from vllm.v1.request import Request
from vllm.v1.request import RequestStatus as VLLMStatus

from jitagent.engines.latency import StepShape, load_profile
from jitagent.scheduling.plan import EngineLimits, SchedulerView, StepPlan
from jitagent.scheduling.policies import Policy, make_policy
from jitagent.scheduling.request import RequestState, RequestStatus
from jitagent.scheduling.supervisor import PolicySupervisor
from jitagent_vllm import _compat
from jitagent_vllm.gated_queue import GatedQueue
from jitagent.scheduling.request_args import parse_request_args
from jitagent_vllm.settings import SchedulerSettings
from jitagent_vllm.step_timer import CPU_PRIOR, StepTimer
from jitagent_vllm.token_ids import check_token_ids

__all__ = ["JITScheduler", "SLO_INFEASIBLE", "INVALID_REQUEST"]

logger = logging.getLogger(__name__)

#: Stop reasons of requests the scheduler ends with an error.
SLO_INFEASIBLE = "slo_infeasible"
INVALID_REQUEST = "invalid_request"


class JITScheduler(Scheduler):
    """vLLM's V1 scheduler with a jitagent policy deciding each step's batch.

    Settings come from ``additional_config["jitagent"]`` (see
    :class:`~jitagent_vllm.settings.SchedulerSettings`); ``policy`` picks ``jit``, ``fcfs``,
    ``edf``, ``ltr`` or ``las``.
    """

    #: The policy's clock; every process on a machine shares the monotonic clock.
    clock = staticmethod(time.monotonic)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = SchedulerSettings.from_additional_config(self.vllm_config.additional_config)
        self.states: dict[str, RequestState] = {}
        # vLLM's own `self.policy` is its queue discipline (FCFS or priority): ours has another name.
        # No last resort: when the policy cannot be restarted, vLLM's own loop schedules.
        self.supervisor = PolicySupervisor(make_policy(self.settings.policy), self.states.values)
        self.limits = EngineLimits(
            token_budget=self.max_num_scheduled_tokens, max_num_seqs=self.max_num_running_reqs,
            block_size=self.block_size, num_blocks=self.kv_cache_manager.block_pool.get_num_free_blocks(),
            max_model_len=self.max_model_len)
        prior = load_profile(self.settings.profile).latency if self.settings.profile else CPU_PRIOR
        self.step_timer = StepTimer(prior, learn=self.settings.learn_step_times, log_path=self.settings.step_log)
        self.waiting = GatedQueue()
        self.num_plan_mismatches = 0
        self._full_budget = self.max_num_scheduled_tokens
        self._errors: list[tuple[Request, str]] = []       # ended with an error; reported at the next output
        self._invalid: list[tuple[Request, str]] = []      # arrived with bad data; ended at the next step
        self._planned: dict[str, int] = {}
        self._admitted: list[Request] = []   # the waiting requests the step's plan admits
        model = self.vllm_config.model_config   # vLLM checks prompt ids itself only with a tokenizer
        self._vocab_size: int | None = model.get_vocab_size() if model.skip_tokenizer_init else None
        logger.info("jitagent scheduler: policy %s, token budget %d, %d seats, %d KV blocks of %d tokens",
                    self.settings.policy, self.limits.token_budget, self.limits.max_num_seqs,
                    self.limits.num_blocks, self.limits.block_size)

    @property
    def slo_policy(self) -> Policy | None:
        """The policy scheduling now (a fresh instance after a failure); ``None``: vLLM's own loop."""
        return self.supervisor.policy

    @property
    def num_fallback_steps(self) -> int:
        """Failures of the policy, each met by vLLM's own scheduling of that step and a restart."""
        return self.supervisor.num_failures

    # -- requests ------------------------------------------------------------------------------

    def add_request(self, request: Request) -> None:
        session = self.requests.get(request.request_id)  # set for a streaming-input session's next chunk
        try:
            self._check_prompt(request)
        except ValueError as exc:  # ended at the next step, before the model sees it
            if session is None:
                super().add_request(request)
            self._refuse(session or request, exc)
            return
        super().add_request(request)
        if session is not None:  # the chunk is vLLM's business
            return
        extra = request.sampling_params.extra_args if request.sampling_params is not None else None
        try:
            args = parse_request_args(extra)
        except ValueError as exc:
            self._refuse(request, exc)
            return
        # vLLM stamps arrival with the wall clock in the caller's process; the policy plans on its own.
        arrival = self.clock() - max(0.0, time.time() - request.arrival_time)
        state = RequestState(request.request_id, arrival, request.num_prompt_tokens,
                             args.declared_max_tokens or request.max_tokens, slo=args.slo,
                             request_class=args.request_class, pipeline=args.pipeline(arrival))
        self.states[request.request_id] = state
        self.supervisor.add_request(state)

    def _check_prompt(self, request: Request) -> None:
        """ValueError unless every prompt id is in the model's vocabulary. vLLM checks this in its
        front end only when it has a tokenizer; without one, a bad id would reach the embedding and
        kill this process."""
        if self._vocab_size is not None and request.prompt_token_ids is not None:
            check_token_ids(request.prompt_token_ids, self._vocab_size)

    def _refuse(self, request: Request, exc: ValueError) -> None:
        logger.warning("request %s refused: %s", request.request_id, exc)
        self._invalid.append((request, f"{INVALID_REQUEST}: {exc}"))

    def finish_requests(self, request_ids: Any, finished_status: VLLMStatus) -> list[Request]:
        finished = super().finish_requests(request_ids, finished_status)
        for request in finished:
            status = RequestStatus.REJECTED if finished_status is VLLMStatus.FINISHED_ERROR else RequestStatus.ABORTED
            self._forget(request.request_id, status)
        return finished

    # -- one step ------------------------------------------------------------------------------

    def schedule(self, *args: Any, **kwargs: Any) -> SchedulerOutput:
        self.step_timer.start()
        self._end_invalid()
        now = self.clock()
        plan = self._plan(now)
        if plan is None:
            self.waiting.open_all()
        else:
            self._apply(plan, now)
        try:
            output = super().schedule(*args, **kwargs)
        finally:
            self.max_num_scheduled_tokens = self._full_budget
            self.waiting.close()
        if plan is not None:
            self._reconcile(output)
        self._observe_scheduled(output, now)
        return output

    def update_from_output(self, scheduler_output: SchedulerOutput,
                           model_runner_output: ModelRunnerOutput) -> dict[int, EngineCoreOutputs]:
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        for client_outputs in outputs.values():
            for out in client_outputs.outputs:
                if out.finish_reason is not None and (state := self.states.get(out.request_id)) is not None:
                    # Progress is read from vLLM's requests each step (_plan); a finished request's
                    # last tokens are counted here, for the length estimator.
                    state.num_generated += len(out.new_token_ids)
                    self._forget(out.request_id, RequestStatus.FINISHED)
        self._report_errors(outputs)
        self.step_timer.finished()
        return outputs

    def shutdown(self) -> None:
        self.step_timer.close()
        super().shutdown()

    # -- plan -----------------------------------------------------------------------------------

    def _plan(self, now: float) -> StepPlan | None:
        """The policy's plan for this step; ``None``: vLLM's own loop schedules it."""
        if self.supervisor.policy is None:
            return None
        running = []
        for request in self.running:
            state = self.states[request.request_id]
            state.num_computed = request.num_computed_tokens
            state.num_generated = request.num_output_tokens
            state.num_blocks = self.limits.blocks_for(request.num_computed_tokens)
            running.append(state)
        view = SchedulerView(now, running, self.limits, self.kv_cache_manager.block_pool.get_num_free_blocks(),
                             self.step_timer.estimate)
        return self.supervisor.schedule(view, lambda plan: plan)

    def _apply(self, plan: StepPlan, now: float) -> None:
        for state in plan.rejected:
            self._errors.extend((r, SLO_INFEASIBLE) for r in self.finish_requests(state.id, VLLMStatus.FINISHED_ERROR))
        for state in plan.preempted:
            request = self.requests[state.id]
            self.running.remove(request)
            _compat.preempt(self, request, now)
            self._on_preempted(state)
        planned = self._planned = {}
        admitted: list[Request] = []
        order: list[Request] = []
        for state, num_tokens in plan.scheduled:
            planned[state.id] = num_tokens
            request = self.requests[state.id]
            (order if state.status is RequestStatus.RUNNING else admitted).append(request)
        sitting_out = [r for r in self.running if r.request_id not in planned]
        for request in sitting_out:
            request.next_decode_eligible_step = self.current_step + 2  # skips the coming step only
        self.running = order + sitting_out
        self.waiting.open(admitted)
        self._admitted = admitted
        self.max_num_scheduled_tokens = sum(planned.values())

    def _reconcile(self, output: SchedulerOutput) -> None:
        """Give the policy back what vLLM did not do as planned."""
        for request in self._admitted:
            # Admitted by the plan, still waiting after vLLM's loop: its budgets ran out first, or it
            # was not ready (a grammar still compiling, say) and vLLM skipped it. It waits again.
            if request.request_id not in output.num_scheduled_tokens and request in self.waiting:
                self.supervisor.requeue(self.states[request.request_id])
        for request_id in output.preempted_req_ids or ():
            state = self.states.get(request_id)
            if state is not None and state.status is RequestStatus.RUNNING:  # vLLM's own preemption
                self._on_preempted(state)
                self.supervisor.requeue(state)
        if output.num_scheduled_tokens != self._planned:
            self.num_plan_mismatches += 1
            logger.debug("step %d ran %s, the plan was %s", self.current_step, output.num_scheduled_tokens,
                         self._planned)

    def _observe_scheduled(self, output: SchedulerOutput, now: float) -> None:
        steps = []
        for request_id, num_tokens in output.num_scheduled_tokens.items():
            request = self.requests[request_id]
            cached = request.num_computed_tokens - num_tokens  # vLLM has already counted this step's tokens
            prefilling = not (num_tokens == 1 and request.num_output_tokens > 0)
            steps.append((cached, num_tokens, prefilling))
            state = self.states.get(request_id)
            if state is not None and state.status is not RequestStatus.RUNNING:
                state.status = RequestStatus.RUNNING
                if state.first_scheduled is None:
                    state.first_scheduled = now
        self.step_timer.scheduled(StepShape.of(steps))

    @staticmethod
    def _on_preempted(state: RequestState) -> None:
        state.status = RequestStatus.PREEMPTED
        state.num_computed = state.num_blocks = 0
        state.num_preemptions += 1

    # -- requests that end here ----------------------------------------------------------------

    def _forget(self, request_id: str, status: RequestStatus) -> None:
        state = self.states.pop(request_id, None)
        if state is not None:
            state.status = status
            self.supervisor.finish_request(state)

    def _end_invalid(self) -> None:
        for request, reason in self._invalid:
            if self.finish_requests(request.request_id, VLLMStatus.FINISHED_ERROR):
                self._errors.append((request, reason))
        self._invalid.clear()

    def _report_errors(self, outputs: dict[int, EngineCoreOutputs]) -> None:
        """Tell each caller whose request ended with an error here, and why (its stop reason)."""
        if not self._errors:
            return
        by_client: dict[int, list[EngineCoreOutput]] = defaultdict(list)
        for request, reason in self._errors:
            by_client[request.client_index].append(EngineCoreOutput(
                request_id=request.request_id, new_token_ids=[], finish_reason=FinishReason.ERROR,
                stop_reason=reason, trace_headers=request.trace_headers))
        self._errors.clear()
        for client, ended in by_client.items():
            if client in outputs:
                outputs[client].outputs.extend(ended)
            else:
                outputs[client] = EngineCoreOutputs(outputs=ended)
