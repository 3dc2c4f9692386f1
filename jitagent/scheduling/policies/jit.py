"""JIT: serve each request just enough, just in time, so that the most tokens arrive within their SLO.

What a step costs is mostly prefill compute, and with every token worth the same, goodput is lost in
one way: work spent on a request that then misses its SLO. So JIT plans in two layers.

**Admission (once per frame of steps, and for newcomers in between).** Waiting requests are taken in
order of their *first deadline* (a stream's first-token due time, a deadline request's deadline, a
pipeline call's stage deadline) and each is checked against the prefill work already committed ahead
of it: it is *feasible* when its first token, and for deadline kinds its last token at a
conservative estimate of its output length, can still make it. Feasible requests are admitted in
that order; the others drop to best effort, ordered by the goodput they can still earn per second of
serving (margin goodput) with an ageing term, and get only what is left over, or are rejected at once
when their caller asked for that.

**Each step.** Running requests decode first. A stream ahead of its token schedule sits the step out
(keeping its seat and KV cache) while its next token can still wait a step; every other running
request decodes. Prefill chunks then fill the token budget in admission order, but no more than keeps
the step short enough for every stream in the batch to deliver its next token on time. KV memory is
reserved for a newcomer's expected output, so admissions do not cause preemption churn; when memory
runs out all the same, best-effort requests are preempted first, then the latest-deadline ones.

Output lengths are survival-conditioned quantiles learned online per request class (see
:mod:`jitagent.scheduling.estimator`): conservative at first, tightening as tokens arrive. The calls
of a pipeline run share their stage deadline, and so their place in the order; a run's calls are
admitted together, and feasibility is judged against the run's deadline as well as the stage's.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from jitagent.scheduling.estimator import OutputLengthEstimator
from jitagent.scheduling.plan import PlanBuilder, SchedulerView, StepPlan
from jitagent.scheduling.policies.base import Policy
from jitagent.scheduling.request import RequestState, RequestStatus
from jitagent.slo import StreamSLO

__all__ = ["JITConfig", "JIT", "Oracle"]


@dataclass(frozen=True)
class JITConfig:
    """Knobs of the JIT policy; the defaults are what the benchmark favours.

    Args:
        quantile: how conservative output-length estimates are (0.9: nine in ten requests are shorter).
        refine: condition estimates on the tokens generated so far; False keeps the estimate made at
            arrival (an ablation).
        estimate: ``"quantile"`` or ``"mean"`` output lengths (the latter an ablation).
        skip: streams ahead of schedule sit steps out.
        grouping: feasible-first admission and step-length control; False admits by margin goodput
            alone and fills the budget like vLLM (an ablation).
        frame_steps: steps between full re-rankings of the waiting requests.
        skip_slack_steps: a stream sits out only while its next token could wait this many of the
            longest steps (a full token budget of prefill).
        prefill_efficiency: share of GPU time prefill gets when the engine is saturated.
        ageing_s: a best-effort request's priority doubles for each this many seconds it waits.
        min_prefill_chunk: the step-length limit never holds prefill below this many tokens.
        step_margin: share of a step-length limit kept free, for errors in the step-time estimate.
        decode_weight: weight of an output token in goodput (as the benchmark's ``--decode-weight``).
    """

    quantile: float = 0.9
    refine: bool = True
    estimate: Literal["quantile", "mean"] = "quantile"
    skip: bool = True
    grouping: bool = True
    frame_steps: int = 16
    skip_slack_steps: float = 2.0
    prefill_efficiency: float = 0.85
    ageing_s: float = 30.0
    min_prefill_chunk: int = 64
    step_margin: float = 0.1
    decode_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        if self.estimate not in ("quantile", "mean"):
            raise ValueError(f"estimate must be 'quantile' or 'mean', got {self.estimate!r}")
        if self.frame_steps < 1 or self.min_prefill_chunk < 1:
            raise ValueError("frame_steps and min_prefill_chunk must be at least 1")
        if not 0 <= self.step_margin < 1:
            raise ValueError(f"step_margin must be in [0, 1), got {self.step_margin}")
        for name in ("skip_slack_steps", "prefill_efficiency", "ageing_s", "decode_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


_BEST_EFFORT = math.inf  # admission rank of requests that cannot meet their SLO


class JIT(Policy):
    """Just-in-time, SLO-aware scheduling with imprecise, refined request information."""

    name = "jit"

    def __init__(self, config: JITConfig | None = None, estimator: OutputLengthEstimator | None = None) -> None:
        self.config = config or JITConfig()
        self.estimator = estimator or OutputLengthEstimator()
        self._waiting: dict[RequestState, None] = {}     # insertion-ordered set
        self._admission: list[RequestState] = []          # feasible, in first-deadline order
        self._admission_keys: list[float] = []
        self._best_effort: list[RequestState] = []        # by margin goodput, best last (popped)
        self._newcomers: list[RequestState] = []
        self._steps_to_frame = 0
        self._last_now: float | None = None
        self._step_time = 0.0     # recent step duration (EMA of the engine clock's steps)
        self._token_time = 0.0    # seconds of compute per prefill token, at full budget
        self._full_step_time = 0.0  # a step that fills the token budget with prefill: the longest likely

    # -- lifecycle ------------------------------------------------------------------------------

    def add_request(self, req: RequestState) -> None:
        self._waiting[req] = None
        self._newcomers.append(req)

    def finish_request(self, req: RequestState) -> None:
        self._waiting.pop(req, None)
        if req.status is RequestStatus.FINISHED:
            self.estimator.observe(req.request_class, req.num_generated)

    # -- estimates ------------------------------------------------------------------------------

    def remaining_output(self, req: RequestState) -> float:
        """Output tokens ``req`` is expected to still generate (conservatively)."""
        cfg = self.config
        generated = req.num_generated if cfg.refine else 0
        if cfg.estimate == "mean":
            total = self.estimator.mean(req.request_class, generated, req.max_tokens)
        else:
            total = self.estimator.quantile(req.request_class, cfg.quantile, generated, req.max_tokens)
        return max(1.0, total - req.num_generated)

    def _prefill_left(self, req: RequestState) -> int:
        left = req.num_uncomputed
        return left if left > 1 or req.num_generated == 0 else 0

    def _first_deadline(self, req: RequestState) -> float:
        """The due time that admission must beat: next token of a stream, else the (stage) deadline."""
        return req.next_due()

    def _completion_ok(self, req: RequestState, first_token_at: float) -> bool:
        """Would ``req`` meet its SLO if its next token came at ``first_token_at`` and it then ran every step?"""
        slo = req.slo
        if slo is None:
            return True
        if isinstance(slo, StreamSLO):
            return first_token_at <= req.next_due()
        finish = first_token_at + (self.remaining_output(req) - 1) * self._step_time
        if req.pipeline is not None and finish > req.pipeline.run_deadline:
            return False
        return finish <= req.deadline

    def margin_goodput(self, req: RequestState, now: float) -> float:
        """Goodput ``req`` can still earn per second of GPU time, if served from now on."""
        w = self.config.decode_weight
        prefill = self._prefill_left(req)
        remaining = self.remaining_output(req)
        cost = prefill * self._token_time + remaining * self._step_time / 64 + 1e-6
        slo = req.slo
        if isinstance(slo, StreamSLO):
            first = now + prefill * self._token_time + self._step_time
            late = first - req.next_due()
            if late <= 0:
                value = (req.prompt_len if req.num_generated == 0 else 0) + w * remaining
            elif slo.tpot_s > self._step_time:
                value = w * max(0.0, remaining - late / (slo.tpot_s - self._step_time))
            else:
                value = 0.0
        elif slo is None:
            value = w * remaining
        else:
            first = now + prefill * self._token_time + self._step_time
            value = (req.prompt_len + w * (req.num_generated + remaining)) if self._completion_ok(req, first) else 0.0
        return value / cost

    # -- one step -------------------------------------------------------------------------------

    def schedule(self, view: SchedulerView) -> StepPlan:
        now = view.now
        self._observe_clock(view)
        if self._steps_to_frame <= 0:
            self._rank_waiting(view)
        else:
            self._place_newcomers(view)
        self._steps_to_frame -= 1

        plan = PlanBuilder(view)
        running = list(view.running)
        decoding = [r for r in running if r.num_uncomputed == 1 and r.num_generated > 0]
        prefilling = [r for r in running if not (r.num_uncomputed == 1 and r.num_generated > 0)]

        # 1. Decodes: everyone not comfortably ahead of schedule. The step may last no longer than the
        #    shortest time to a scheduled stream's next due token, nor than the pace a deadline request
        #    needs to finish its (conservatively estimated) output in time.
        step_limit = math.inf
        decode_floor = view.step_time(0, len(decoding), sum(r.num_computed for r in decoding))
        skip_slack = self.config.skip_slack_steps * self._full_step_time
        sitting_out: list[RequestState] = []
        for req in sorted(decoding, key=self._first_deadline):
            due = self._first_deadline(req)
            if self.config.skip and isinstance(req.slo, StreamSLO) and due - now > skip_slack:
                # Just in time: it can wait, and the step is shorter without it; but this step must end
                # early enough for its token to come in the next one.
                sitting_out.append(req)
                step_limit = min(step_limit, due - now - self._full_step_time)
                continue
            if not self._run_or_preempt(plan, req, 1, running):
                continue
            if isinstance(req.slo, StreamSLO):
                if due > now:
                    step_limit = min(step_limit, due - now)
            elif req.slo is not None:
                step_limit = min(step_limit, self._required_pace(req, now, decode_floor))
        prefill_cap = self._prefill_cap(view, plan, step_limit) if self.config.grouping else plan.token_budget

        # 2. Prefill chunks: running prefills first (committed work), then admissions.
        for req in sorted(prefilling, key=self._first_deadline):
            if prefill_cap <= 0:
                break
            if req.status is not RequestStatus.RUNNING or plan.is_scheduled(req):
                continue
            chunk = min(req.num_uncomputed, prefill_cap, plan.token_budget)
            if chunk > 0 and self._run_or_preempt(plan, req, chunk, running):
                prefill_cap -= chunk
        self._admit(plan, view, prefill_cap)
        if not plan.num_scheduled:  # nothing else wants the GPU: sitting out would only idle it
            for req in sitting_out:
                self._run_or_preempt(plan, req, 1, running)
        return plan.build()

    def _run_or_preempt(self, plan: PlanBuilder, req: RequestState, n: int, running: list[RequestState]) -> bool:
        """Schedule running ``req``; if KV memory is short, preempt the least valuable others first."""
        if req.status is not RequestStatus.RUNNING:
            return False  # preempted earlier in this plan
        while not plan.schedule(req, n):
            victims = [r for r in running if r is not req and r.status is RequestStatus.RUNNING
                       and not plan.is_preempted(r)]
            if not victims or plan.token_budget < n:
                return False
            victim = max(victims, key=self._eviction_rank)
            if self._eviction_rank(victim) < self._eviction_rank(req):
                return False  # nobody less valuable to make room
            plan.preempt(victim)
            self._requeue(victim)
        return True

    def _required_pace(self, req: RequestState, now: float, floor: float) -> float:
        """The longest step a deadline request can afford: time left over its remaining tokens.

        A pipeline call paces for its stage deadline when it can, else for the run's; a request
        that cannot finish even at the fastest pace (``floor``) sets no limit: it is best effort."""
        remaining = self.remaining_output(req)
        for deadline in (req.deadline, req.pipeline.run_deadline if req.pipeline is not None else None):
            if deadline is not None:
                pace = (deadline - now) / remaining
                if pace >= floor:
                    return pace
        return math.inf

    def _eviction_rank(self, req: RequestState) -> tuple[bool, float]:
        """Higher is evicted first: best-effort requests, then the latest deadline."""
        return (not self._completion_ok(req, self._last_now or 0.0), self._first_deadline(req))

    def _prefill_cap(self, view: SchedulerView, plan: PlanBuilder, step_limit: float) -> int:
        """Most prefill tokens this step can take and still end within ``step_limit``."""
        budget = plan.token_budget
        if math.isinf(step_limit):
            return budget
        step_limit *= 1.0 - self.config.step_margin  # the view's step estimate is approximate
        decodes = view.limits.token_budget - budget
        context = sum(r.num_computed for r in view.running)
        if view.step_time(budget, decodes, context) <= step_limit:
            return budget
        lo, hi = 0, budget
        while hi - lo > 16:
            mid = (lo + hi) // 2
            if view.step_time(mid, decodes, context) <= step_limit:
                lo = mid
            else:
                hi = mid
        return max(lo, self.config.min_prefill_chunk)

    # -- admission ------------------------------------------------------------------------------

    def _admit(self, plan: PlanBuilder, view: SchedulerView, prefill_cap: int) -> None:
        now = view.now
        kept: list[RequestState] = []
        kept_keys: list[float] = []
        index = 0
        queue, keys = self._admission, self._admission_keys
        while index < len(queue):
            req = queue[index]
            index += 1
            if req.status.is_done or req not in self._waiting:
                continue
            if prefill_cap <= 0 or plan.seats <= 0:
                kept.append(req)
                kept_keys.append(keys[index - 1])
                continue
            if not self._completion_ok(req, now + self._prefill_left(req) * self._token_time + self._step_time):
                self._demote(req, now)
                continue
            chunk = min(req.num_uncomputed, prefill_cap, plan.token_budget)
            if chunk > 0 and self._fits_with_reserve(plan, req) and plan.schedule(req, chunk):
                del self._waiting[req]
                prefill_cap -= chunk
            else:
                kept.append(req)
                kept_keys.append(keys[index - 1])
        self._admission, self._admission_keys = kept, kept_keys
        # Leftovers go to best effort, best margin first.
        while self._best_effort and prefill_cap > 0 and plan.seats > 0:
            req = self._best_effort[-1]
            if req.status.is_done or req not in self._waiting:
                self._best_effort.pop()
                continue
            chunk = min(req.num_uncomputed, prefill_cap, plan.token_budget)
            if chunk <= 0 or not self._fits_with_reserve(plan, req) or not plan.schedule(req, chunk):
                break
            self._best_effort.pop()
            del self._waiting[req]
            prefill_cap -= chunk

    def _fits_with_reserve(self, plan: PlanBuilder, req: RequestState) -> bool:
        """Admit only with room for the prompt and the expected output, so that growth does not preempt."""
        tokens = req.num_tokens + self.remaining_output(req)
        return plan.limits.blocks_for(int(tokens)) <= plan.free_blocks

    def _rank_waiting(self, view: SchedulerView) -> None:
        """Full re-ranking: feasible requests in first-deadline order against the committed backlog."""
        self._steps_to_frame = self.config.frame_steps
        self._newcomers.clear()
        now = view.now
        candidates = [r for r in self._waiting if not r.status.is_done]
        candidates.sort(key=self._first_deadline)
        backlog = sum(self._prefill_left(r) for r in view.running)
        clock = now + backlog * self._token_time
        admission, keys, best_effort = [], [], []
        for req in candidates:
            first = clock + self._prefill_left(req) * self._token_time + self._step_time
            if self._completion_ok(req, first) or not self.config.grouping:
                admission.append(req)
                keys.append(self._first_deadline(req))
                clock += self._prefill_left(req) * self._token_time
            else:
                best_effort.append(req)
        if not self.config.grouping:  # ablation: one order, by margin goodput
            admission.sort(key=lambda r: -self._aged_margin(r, now))
            keys = list(range(len(admission)))
        self._admission, self._admission_keys = admission, [float(k) for k in keys]
        best_effort.sort(key=lambda r: self._aged_margin(r, now))
        self._best_effort = best_effort

    def _place_newcomers(self, view: SchedulerView) -> None:
        """Between frames, slot each newcomer into the admission order by its first deadline."""
        for req in self._newcomers:
            key = self._first_deadline(req)
            at = bisect.bisect_right(self._admission_keys, key) if self.config.grouping else len(self._admission)
            self._admission.insert(at, req)
            self._admission_keys.insert(at, key if self.config.grouping else math.inf)
        self._newcomers.clear()

    def _demote(self, req: RequestState, now: float) -> None:
        margin = self._aged_margin(req, now)
        keys = [self._aged_margin(r, now) for r in self._best_effort]
        self._best_effort.insert(bisect.bisect_left(keys, margin), req)

    def _requeue(self, req: RequestState) -> None:
        self._waiting[req] = None
        self._newcomers.append(req)

    def _aged_margin(self, req: RequestState, now: float) -> float:
        return self.margin_goodput(req, now) * (1.0 + max(0.0, now - req.arrival) / self.config.ageing_s)

    def _observe_clock(self, view: SchedulerView) -> None:
        if self._token_time == 0.0:
            budget = view.limits.token_budget
            self._full_step_time = view.step_time(budget, 0, 0)
            self._token_time = self._full_step_time / budget / self.config.prefill_efficiency
            self._step_time = view.step_time(0, 1, 0)
        if self._last_now is not None and view.now > self._last_now:
            self._step_time += 0.1 * (view.now - self._last_now - self._step_time)
        self._last_now = view.now


class Oracle(JIT):
    """JIT told each request's true output length: the upper bound on what better estimates can buy."""

    name = "oracle"

    def __init__(self, config: JITConfig | None = None) -> None:
        super().__init__(config)
        self._true_length: dict[RequestState, int] = {}

    def reveal_output_len(self, req: RequestState, output_len: int) -> None:
        """Called by a simulated engine, which knows how long each request will run."""
        self._true_length[req] = output_len

    def finish_request(self, req: RequestState) -> None:
        super().finish_request(req)
        self._true_length.pop(req, None)

    def remaining_output(self, req: RequestState) -> float:
        true = self._true_length.get(req)
        return super().remaining_output(req) if true is None else max(1.0, true - req.num_generated)


def jit_variant(**overrides: object) -> Callable[[], JIT]:
    """A factory of JIT policies with some config fields changed (for ablations)."""
    config = replace(JITConfig(), **overrides)  # type: ignore[arg-type]
    return lambda: JIT(config)
