"""JIT: serve each request just enough, just in time, so that the most tokens arrive within their SLO.

What a step costs is mostly prefill compute, and with every token worth the same, goodput is lost in
one way: work spent on a request that then misses its SLO. So JIT plans in two layers.

**Admission (once per frame of steps, and for newcomers in between).** Waiting requests are taken in
order of their *first deadline* (a stream's first-token due time, a deadline request's deadline, a
pipeline call's stage deadline) and each is checked against the prefill work already committed ahead
of it: it is *feasible* when its first token, and for deadline kinds its last token at a
conservative estimate of its output length, can still make it. Feasible requests are admitted in
that order. A deadline request that would make it only at its median length is *probable*: admitted
after the feasible ones, with what they leave. The others drop to best effort, ordered by the goodput
they can still earn per second of serving (margin goodput) with an ageing term, and get only what is
left over, or are rejected at once when their caller asked for that.

**Each step.** Running requests decode first. With ``skip`` on, a stream ahead of its token
schedule sits the step out (keeping its seat and KV cache) while its next token can still wait a
step, unless seats are what feasible newcomers are waiting for. Prefill chunks then fill the token
budget in admission order (running prefills first, by due time), but no more than keeps the step
short enough for every stream in the batch to deliver its next token on time, where that cut leaves
prefill at least half its rate, and for every running deadline request due before the request
prefilling to stay on pace, as far as its slack allows (a request due sooner prefills first, as
earliest-deadline-first would serve it). KV memory is reserved for a newcomer's expected output, so admissions do not cause preemption churn; when memory
runs out all the same, best-effort requests are preempted first, then the latest-deadline ones.

Output lengths are survival-conditioned quantiles learned online per request class (see
:mod:`jitagent.scheduling.estimator`): conservative at first, tightening as tokens arrive. The calls
of a pipeline run share their stage deadline, and so sit together in the admission order;
feasibility is judged against the run's deadline as well as the stage's.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from jitagent.scheduling.estimator import OutputLengthEstimator
from jitagent.scheduling.feasibility import completion_due, finish_slack, first_token_at, prefill_left
from jitagent.scheduling.plan import PlanBuilder, SchedulerView, StepPlan
from jitagent.scheduling.policies.base import Policy
from jitagent.scheduling.policies.waiting import Entry, WaitingIndex
from jitagent.scheduling.request import RequestState, RequestStatus
from jitagent.slo import StreamSLO

__all__ = ["JITConfig", "JIT", "Oracle"]


@dataclass(frozen=True)
class JITConfig:
    """Knobs of the JIT policy; the defaults are what the benchmark favours.

    Args:
        quantile: how conservative the output-length estimates behind admission are (0.99: 99 in 100
            requests of the class that got this far were shorter). Admitting only what surely fits is
            what the benchmark rewards: work spent on a request that misses is lost.
        pace_quantile: the estimate that sets how fast a running deadline request must go; a
            median suffices because it is refined every token and the pace tightens as needed.
        refine: condition estimates on the tokens generated so far; False keeps the estimate made at
            arrival (an ablation).
        estimate: ``"quantile"`` or ``"mean"`` output lengths (the latter an ablation).
        skip: streams ahead of schedule sit steps out (just-in-time decoding). Off by default: it saves
            little step time (a decode adds little to a step), and it spends the slack that absorbs a
            real engine's delivery jitter (docs/benchmarks.md, "Ablations" and "The vLLM engine").
        grouping: feasible-first admission and step-length control; False admits by margin goodput
            alone and fills the budget like vLLM (an ablation).
        frame_steps: steps between full re-rankings of the waiting requests.
        refresh_tokens: a running request's length estimate is refreshed every this many tokens.
        skip_slack_steps: a stream sits out only while its next token could wait this many of the
            longest steps (a full token budget of prefill).
        prefill_efficiency: share of GPU time prefill gets when the engine is saturated.
        ageing_s: a best-effort request's priority grows by its own size every this many seconds.
        max_wait_s: a best-effort request still waiting after this long is refused (the engine ends
            it with an error), so that under sustained overload no caller waits forever and no
            capacity goes to work that can no longer count.
        min_prefill_chunk: the step-length limit never holds prefill below this many tokens.
        step_margin: share of a step-length limit kept free, for errors in the step-time estimate.
        decode_weight: weight of an output token in goodput (as the benchmark's ``--decode-weight``).
        stream_pace: which streams' next tokens limit a step's length (and so its prefill):
            ``"always"`` every stream's with slack; ``"reachable"`` only where a step of decodes alone
            would deliver it in time (else the cut buys nothing); ``"efficient"`` (default) only where
            the cut step still prefills at half the full step's rate; ``"never"``. Where decodes are
            dear against prefill (the CPU profile: a step of decodes alone is near a stream's TPOT),
            cutting every step for the next token starves newcomers' prefill (the robustness
            benchmark measures it: ablations ``jit-stream-pace-always``, ``jit-stream-pace-reachable``).
        probable: what becomes of a deadline request feasible at ``pace_quantile`` but not at
            ``quantile``. ``"tier"`` (default): admitted after every feasible request and before best
            effort, in first-deadline order, so conservative admission still protects the sure
            requests but a long-tailed class no longer waits behind every stream catching up;
            ``"value"``: best effort, ranked at ``pace_quantile`` times its value (the chance it meets
            its SLO at least that) rather than at 0; ``"off"``: best effort at value 0, as before.
        max_late_s: a best-effort request still waiting this long after its first deadline, with
            nothing left to earn (its deadline, or its pipeline run's, passed; a stream that can no
            longer catch up with its schedule), is refused at the next frame unless that step has
            room to serve it (None: only ``max_wait_s`` bounds its wait). 0 by default: once serving it cannot count, its caller
            gets the refusal (429 ``slo_infeasible``) rather than a late answer minutes later. The
            past-due front of the queue is swept a little every step (a frame's slice spread over
            its steps), so that a long late queue stalls no step; a refusal may take some frames.
        deadline_pace: whose prefill a running deadline request's pace holds back. ``"later"``
            (default): only that of requests due after it; a request due sooner prefills first, as
            earliest-deadline-first would serve it (holding its prefill back to keep a later
            deadline's pace traded the sooner request for the later one: at light load a chat's first
            token, or a pipeline run's sibling calls, missed for a tool call that had time). ``"all"``:
            everyone's (an ablation, ``jit-deadline-pace-all``).
        deadline_slack: how long a step a running deadline request lets others' prefill make.
            ``"spend"`` (default): as long as its slack allows, the rest of its output (at the pace
            quantile) coming at the recent step time; once it is behind that pace, its even pace
            (time left over tokens left). ``"spread"``: always its even pace, which shares its slack
            out over every token left (an ablation, ``jit-deadline-slack-spread``): a step then
            rarely holds a prompt's prefill, and at moderate load the calls waiting behind it missed
            while the request it protected had time to spare.
    """

    quantile: float = 0.99
    pace_quantile: float = 0.5
    refine: bool = True
    estimate: Literal["quantile", "mean"] = "quantile"
    skip: bool = False
    grouping: bool = True
    frame_steps: int = 64
    refresh_tokens: int = 16
    skip_slack_steps: float = 2.0
    prefill_efficiency: float = 0.85
    ageing_s: float = 30.0
    max_wait_s: float = 600.0
    min_prefill_chunk: int = 64
    step_margin: float = 0.1
    decode_weight: float = 1.0
    stream_pace: Literal["always", "reachable", "efficient", "never"] = "efficient"
    probable: Literal["tier", "value", "off"] = "tier"
    max_late_s: float | None = 0.0
    deadline_pace: Literal["later", "all"] = "later"
    deadline_slack: Literal["spend", "spread"] = "spend"

    def __post_init__(self) -> None:
        for name in ("quantile", "pace_quantile"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.estimate not in ("quantile", "mean"):
            raise ValueError(f"estimate must be 'quantile' or 'mean', got {self.estimate!r}")
        if self.deadline_pace not in ("later", "all"):
            raise ValueError(f"deadline_pace must be 'later' or 'all', got {self.deadline_pace!r}")
        if self.deadline_slack not in ("spend", "spread"):
            raise ValueError(f"deadline_slack must be 'spend' or 'spread', got {self.deadline_slack!r}")
        if self.probable not in ("tier", "value", "off"):
            raise ValueError(f"probable must be 'tier', 'value' or 'off', got {self.probable!r}")
        if self.stream_pace not in _PACE_FLOOR:
            raise ValueError(f"stream_pace must be one of {', '.join(_PACE_FLOOR)}; got {self.stream_pace!r}")
        if self.max_late_s is not None and not (isinstance(self.max_late_s, (int, float)) and self.max_late_s >= 0):
            raise ValueError(f"max_late_s must be None or at least 0, got {self.max_late_s}")
        for name in ("frame_steps", "refresh_tokens", "min_prefill_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.step_margin < 1:
            raise ValueError(f"step_margin must be in [0, 1), got {self.step_margin}")
        for name in ("skip_slack_steps", "prefill_efficiency", "ageing_s", "max_wait_s", "decode_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


#: The least slack of a stream's next token that limits the step, by ``stream_pace``, given the
#: shortest step (decodes alone) and the longest (decodes and a full budget of prefill). A step cut to
#: the harmonic mean of the two still prefills at half the full step's rate (with step time linear
#: in prefill tokens: rate(C) = C / (short + C p) >= rate(budget) / 2 solves to that step length).
_PACE_FLOOR: dict[str, Callable[[float, float], float]] = {
    "always": lambda short, full: 0.0,
    "reachable": lambda short, full: short,
    "efficient": lambda short, full: 2 * short * full / (short + full),
    "never": lambda short, full: math.inf,
}


class _Estimate:
    """A request's cached output-length estimates (totals, not remainders) and when they were made."""

    __slots__ = ("admission", "pace", "generated", "frame")

    def __init__(self, admission: float, pace: float, generated: int, frame: int) -> None:
        self.admission = admission
        self.pace = pace
        self.generated = generated
        self.frame = frame


class _Sweep:
    """A frame's feasibility sweep of the waiting requests, done a slice at a time.

    Everything it decides is decided as at the frame's start: it counts the requests waiting then
    (entries with a sequence number below ``first_new_seq``; the entries are the index's own list,
    which newcomers join in place), and the clock, step time and token time are the frame's.
    Newcomers whose first deadline is not yet behind the sweep wait in ``pending`` (by first
    deadline, then arrival) and join the admission order where a sweep done all at once would have
    put them."""

    __slots__ = ("entries", "pos", "clock", "now", "token_time", "step_time", "first_new_seq", "left", "pending",
                 "placed", "chunk")

    def __init__(self, entries: list[Entry], clock: float, now: float, token_time: float, step_time: float,
                 first_new_seq: int, chunk: int) -> None:
        self.entries = entries
        self.pos = 0
        self.clock = clock
        self.now = now
        self.token_time = token_time
        self.step_time = step_time
        self.first_new_seq = first_new_seq
        self.left: dict[RequestState, int] = {}   # waiting at the frame's start, ended since: still swept
        self.pending: list[Entry] = []            # (first deadline, order of placement, newcomer)
        self.placed = 0
        self.chunk = chunk

    def next_key(self) -> float:
        """First deadline of the next entry to sweep (entries come in first-deadline order)."""
        return self.entries[self.pos][0] if self.pos < len(self.entries) else math.inf


class _PrefillRoom:
    """The prefill tokens a step may still take, by how soon the request taking them is due.

    Anyone's prefill keeps the step within ``step_limit`` (the streams' next tokens); a running
    deadline request's pace (``paced``: its due time and the longest step it affords) limits only the
    prefill of requests due after it. Limits are on the step's whole prefill: ``used`` counts what
    has been taken, and each limit's cap is worked out once, on first need."""

    __slots__ = ("_cap_of", "_dues", "_limits", "_caps", "used")

    def __init__(self, cap_of: Callable[[float], int], step_limit: float, paced: list[tuple[float, float]]) -> None:
        paced.sort()
        self._cap_of = cap_of
        self._dues = [due for due, _ in paced]
        # _limits[i]: the tightest limit on a request due after the first i paced requests (and before the next).
        self._limits = list(itertools.accumulate((pace for _, pace in paced), min, initial=step_limit))
        self._caps: dict[float, int] = {}
        self.used = 0

    def for_key(self, due: float) -> int:
        """Prefill tokens a request due at ``due`` may still take this step."""
        limit = self._limits[bisect.bisect_left(self._dues, due)]
        cap = self._caps.get(limit)
        if cap is None:
            cap = self._caps[limit] = self._cap_of(limit)
        return cap - self.used

    @property
    def left(self) -> int:
        """Prefill tokens the most urgent request could still take."""
        return self.for_key(-math.inf)


class JIT(Policy):
    """Just-in-time, SLO-aware scheduling with imprecise, refined request information."""

    name = "jit"

    def __init__(self, config: JITConfig | None = None, estimator: OutputLengthEstimator | None = None) -> None:
        self.config = config or JITConfig()
        self.estimator = estimator or OutputLengthEstimator()
        self._waiting = WaitingIndex()
        self._admission: list[RequestState] = []         # feasible, in first-deadline order
        self._admission_keys: list[float] = []
        self._probable: list[RequestState] = []          # feasible at the pace quantile only, by first deadline
        self._probable_keys: list[float] = []
        self._sweep: _Sweep | None = None                # this frame's, while unfinished
        self._best_effort: list[RequestState] = []       # by aged margin goodput, best last...
        self._best_effort_keys: list[float] | None = []  # ...once sorted; None until needed
        self._demoted: list[RequestState] = []           # joins best effort when it is sorted
        self._newcomers: list[RequestState] = []
        self._to_reject: list[RequestState] = []
        self._frame = 0
        self._steps_to_frame = 0
        self._class_estimates: dict[tuple[str, int], tuple[float, float]] = {}  # this frame's, at 0 tokens
        self._eviction_order: list[RequestState] | None = None   # this step's, ranked on first need
        self._eviction_ranks: dict[RequestState, tuple[bool, float]] = {}
        self._now = 0.0
        self._last_now: float | None = None
        self._step_time = 0.0       # recent step duration (EMA of the engine clock)
        self._token_time = 0.0      # GPU seconds per prefill token when prefill fills the budget
        self._full_step_time = 0.0  # a step that fills the token budget with prefill: the longest likely

    # -- lifecycle ------------------------------------------------------------------------------

    def fresh(self) -> JIT:
        return type(self)(self.config)  # a new estimator: the failed instance's state is not trusted

    def add_request(self, req: RequestState) -> None:
        slo = req.slo
        deadline_kind = slo is not None and not isinstance(slo, StreamSLO)
        refined = deadline_kind and self.config.refine and req.num_generated > 0
        at = self._waiting.add(req, req.next_due(), timed=slo is not None, refined=refined,
                               class_key=(req.request_class, req.max_tokens) if deadline_kind and not refined else None,
                               refusable=self._wants_rejection(req))
        sweep = self._sweep
        if sweep is not None and at <= sweep.pos:
            sweep.pos += 1  # keep the sweep's place in the entries (it skips newcomers anyway)
        self._newcomers.append(req)

    def finish_request(self, req: RequestState) -> None:
        self._forget(req)
        if req.status is RequestStatus.FINISHED:
            self.estimator.observe(req.request_class, req.num_generated)
        if not self._waiting and (self._admission or self._probable or self._best_effort or self._demoted
                                  or self._newcomers or self._to_reject or self._sweep is not None):
            self._drop_queues()

    def _forget(self, req: RequestState) -> None:
        """``req`` waits no more (admitted, refused or ended)."""
        seq = self._waiting.discard(req)
        sweep = self._sweep
        if seq is not None and sweep is not None and seq < sweep.first_new_seq:
            sweep.left[req] = seq  # it waited when the frame started: its sweep counts it still

    def _drop_queues(self) -> None:
        """Nothing waits: the orders of waiting requests hold only ended or admitted ones, which
        they would skip when next read. Dropped now, so that an engine gone idle keeps none."""
        self._waiting.clear()
        self._admission, self._admission_keys = [], []
        self._probable, self._probable_keys = [], []
        self._sweep = None
        self._best_effort, self._best_effort_keys = [], []
        self._demoted = []
        self._newcomers.clear()
        self._to_reject.clear()
        self._eviction_ranks = {}

    # -- estimates ------------------------------------------------------------------------------

    def output_estimate(self, req: RequestState) -> float:
        """The conservative estimate ``req`` is admitted on."""
        return self.estimate_total(req, self.config.quantile)

    def estimate_total(self, req: RequestState, quantile: float) -> float:
        """Total output length of ``req`` at ``quantile`` (or the mean), given what it generated."""
        generated = req.num_generated if self.config.refine else 0
        return self._total(req.request_class, max_tokens=req.max_tokens, quantile=quantile, generated=generated)

    def _total(self, request_class: str, max_tokens: int, quantile: float, generated: int) -> float:
        if self.config.estimate == "mean":
            return self.estimator.mean(request_class, generated, max_tokens)
        return self.estimator.quantile(request_class, quantile, generated, max_tokens)

    def _totals(self, request_class: str, max_tokens: int, generated: int) -> tuple[float, float]:
        """Total output lengths at the admission and the pace quantile of a request of this class
        that has generated ``generated`` tokens (without the ``refine`` switch: the caller's).
        :meth:`_total` at both, in one call: every running request with a deadline comes here every
        ``refresh_tokens`` tokens."""
        cfg = self.config
        if cfg.estimate == "mean":
            mean = self.estimator.mean(request_class, generated, max_tokens)
            return mean, mean
        return self.estimator.quantiles(request_class, (cfg.quantile, cfg.pace_quantile),  # type: ignore[return-value]
                                        generated, max_tokens)

    def remaining_output(self, req: RequestState, pace: bool = False) -> float:
        """Output tokens ``req`` is expected to still generate: conservatively for admission, at the
        pace quantile when ``pace``. Estimates are refreshed every ``refresh_tokens`` tokens and every
        frame, and shared by the requests of a class that have not started."""
        generated = req.num_generated
        if generated == 0 or not self.config.refine:  # the class's estimate, made once a frame
            totals = (self._class_estimates.get((req.request_class, req.max_tokens))
                      or self._class_estimate(req.request_class, req.max_tokens))
            return max(1.0, totals[pace] - generated)
        est = req.policy_data
        if est is None:
            est = req.policy_data = _Estimate(*self._totals(req.request_class, req.max_tokens, generated),
                                              generated, self._frame)
        elif (est.frame != self._frame or generated >= est.generated + self.config.refresh_tokens
                or generated >= est.pace):  # outlived its estimate: it must be refined now
            est.admission, est.pace = self._totals(req.request_class, req.max_tokens, generated)
            est.generated, est.frame = generated, self._frame
        return max(1.0, (est.pace if pace else est.admission) - generated)

    def _class_estimate(self, request_class: str, max_tokens: int) -> tuple[float, float]:
        totals = self._class_estimates[request_class, max_tokens] = self._totals(request_class, max_tokens, 0)
        return totals

    _prefill_left = staticmethod(prefill_left)

    def _first_token_at(self, req: RequestState, start: float) -> float:
        """When ``req``'s next token comes if its remaining prefill starts at ``start``."""
        return first_token_at(start, self._prefill_left(req), self._token_time, self._step_time)

    def _completion_ok(self, req: RequestState, first_token: float, pace: bool = False) -> bool:
        """Would ``req`` meet its SLO (and a pipeline call its stage deadline) if its next token came
        at ``first_token`` and it then ran every step? Its length at the admission quantile, or
        at the pace quantile when ``pace``."""
        slo = req.slo
        if slo is None:
            return True
        if isinstance(slo, StreamSLO):
            return first_token <= req.next_due()
        return finish_slack(first_token, self.remaining_output(req, pace), self._step_time, completion_due(req)) >= 0

    def margin_goodput(self, req: RequestState, now: float) -> float:
        """Goodput ``req`` can still earn per second of GPU time, if served from now on."""
        w = self.config.decode_weight
        prefill = self._prefill_left(req)
        remaining = self.remaining_output(req)
        # A decode shares its step with the rest of the batch: charge it a share of a step.
        cost = prefill * self._token_time + remaining * self._step_time / 64 + 1e-6
        first = self._first_token_at(req, now)
        slo = req.slo
        if isinstance(slo, StreamSLO):
            late = first - req.next_due()
            if late <= 0:
                value = (req.prompt_len if req.num_generated == 0 else 0) + w * remaining
            elif slo.tpot_s > self._step_time:  # it catches up with its schedule, and earns the rest
                value = w * max(0.0, remaining - late / (slo.tpot_s - self._step_time))
            else:
                value = 0.0
        elif slo is None:
            value = w * remaining
        elif self._completion_ok(req, first):
            value = req.prompt_len + w * (req.num_generated + remaining)
        elif self.config.probable == "value" and self._completion_ok(req, first, pace=True):
            value = (req.prompt_len + w * (req.num_generated + remaining)) * self.config.pace_quantile
        else:
            value = 0.0
        return value / cost

    def _nothing_to_earn(self, req: RequestState, now: float) -> bool:
        """``req``, waiting, can earn nothing more: a pipeline call's run deadline has passed (a call
        late for its stage may still finish its run in time), else its margin goodput is 0."""
        if req.pipeline is not None:
            return now > req.pipeline.run_deadline
        return self.margin_goodput(req, now) <= 0.0

    # -- one step -------------------------------------------------------------------------------

    def schedule(self, view: SchedulerView) -> StepPlan:
        now = self._now = view.now
        self._observe_clock(view)
        if self._steps_to_frame <= 0:
            self._rank_waiting(view)
        else:
            self._place_newcomers(view)
        self._steps_to_frame -= 1
        if self._sweep is not None and self.config.max_late_s is not None:
            # Who is max_late_s past due waits at the front: the sweep's slice spread over the frame's
            # steps, so that a long late queue adds a little to every step rather than a lot to one.
            self._advance(-(-self._sweep.chunk // self.config.frame_steps), view.now - self.config.max_late_s)

        plan = PlanBuilder(view)
        self._eviction_order = None
        running = view.running
        decoding: list[RequestState] = []
        prefilling: list[RequestState] = []
        context = decode_context = 0
        for req in running:
            computed = req.num_computed
            context += computed
            if req.num_generated and req.prompt_len + req.num_generated - computed == 1:
                decoding.append(req)
                decode_context += computed
            else:
                prefilling.append(req)

        # 1. Decodes: everyone not comfortably ahead of schedule. The step may last no longer than the
        #    shortest time to a scheduled stream's next due token, nor than the pace a deadline request
        #    needs to finish its output (estimated at the pace quantile) in time.
        step_limit = math.inf
        paced: list[tuple[float, float]] = []   # (due, pace) of deadline requests: limits on later prefill
        pace_all = self.config.deadline_pace == "all"
        decode_floor = view.step_time(0, len(decoding), decode_context)
        # A stream's next token limits the step only where the cut is worth its prefill (see stream_pace).
        pace_floor = _PACE_FLOOR[self.config.stream_pace](
            decode_floor, view.step_time(view.limits.token_budget - len(decoding), len(decoding), decode_context))
        skip_slack = self.config.skip_slack_steps * self._full_step_time
        full_step = self._full_step_time
        # Sitting out keeps the seat: when seats are what feasible newcomers wait for, streams run
        # every step instead, to finish and free their seats sooner.
        seats_wanted = len(running) >= view.limits.max_num_seqs
        if self.config.skip and seats_wanted and not self._admission:
            self._advance_to_admission()
        skip = self.config.skip and not (seats_wanted and self._admission)
        sitting_out: list[RequestState] = []
        schedule_decode = plan.schedule_decode
        for req in decoding:
            slo = req.slo
            if slo.__class__ is StreamSLO:
                # The next token's due time (StreamSLO.token_due, inlined: this loop runs per request per step).
                slack = req.arrival + slo.ttft_s + req.num_generated * slo.tpot_s - now
                if skip and slack > skip_slack:
                    # Just in time: it can wait, and the step is shorter without it; but this step
                    # must end early enough for its token to come in the next one.
                    sitting_out.append(req)
                    if slack - full_step < step_limit:
                        step_limit = slack - full_step
                    continue
                if (schedule_decode(req) or self._run_or_preempt(plan, req, 1)) and pace_floor < slack < step_limit:
                    step_limit = slack
            elif schedule_decode(req) or self._run_or_preempt(plan, req, 1):
                if slo is not None:
                    pace, due = self._required_pace(req, now, decode_floor)
                    if pace_all:
                        step_limit = min(step_limit, pace)
                    elif pace < math.inf:
                        paced.append((due, pace))
        budget = plan.token_budget
        if self.config.grouping:
            room = _PrefillRoom(lambda limit: self._prefill_cap(view, budget, limit, context), step_limit, paced)
        else:
            room = _PrefillRoom(lambda limit: budget, math.inf, [])

        # 2. Prefill chunks: running prefills first (committed work), then admissions.
        prefilling.sort(key=RequestState.next_due)
        self._prefill_running(plan, prefilling, room)
        self._admit(plan, room)
        for req in self._to_reject:
            if req in self._waiting and req.status is not RequestStatus.RUNNING:
                self._forget(req)
                plan.reject(req)
        self._to_reject.clear()
        if not plan.num_scheduled:  # nothing else wants the GPU: sitting out would only idle it
            for req in sitting_out:
                self._run_or_preempt(plan, req, 1)
        if self._sweep is not None and plan.seats > 0:  # seats left: admissions will read the order
            self._advance(self._sweep.chunk)
        return plan.build()

    def _prefill_running(self, plan: PlanBuilder, requests: list[RequestState], room: _PrefillRoom) -> None:
        """Give each running request in turn (by next due time) its next prefill chunk."""
        for req in requests:
            cap = room.for_key(req.next_due())
            if cap <= 0:
                break   # nor is there room for those due after it
            chunk = min(req.num_uncomputed, cap, plan.token_budget)
            if chunk > 0 and (plan.schedule(req, chunk) or self._run_or_preempt(plan, req, chunk)):
                room.used += chunk

    def _run_or_preempt(self, plan: PlanBuilder, req: RequestState, n: int) -> bool:
        """Schedule running ``req``, preempting less valuable running requests if KV memory is short."""
        if req.status is not RequestStatus.RUNNING or plan.is_preempted(req):
            return False
        while not plan.schedule(req, n):
            if plan.token_budget < n:
                return False
            if self._eviction_order is None:  # ranks cannot change within a step: rank once
                ranks = self._eviction_ranks = {r: self._eviction_rank(r) for r in plan.running}
                self._eviction_order = sorted(plan.running, key=ranks.__getitem__, reverse=True)  # stable
            ranks = self._eviction_ranks
            victim = next((r for r in self._eviction_order if r is not req and not plan.is_preempted(r)), None)
            if victim is None or ranks[victim] < ranks[req]:
                return False  # nobody less valuable to make room
            plan.preempt(victim)
            self.requeue(victim)
        return True

    def _eviction_rank(self, req: RequestState) -> tuple[bool, float]:
        """Higher is evicted first: best-effort requests, then the latest deadline."""
        return (not self._completion_ok(req, self._now), req.next_due())

    def _required_pace(self, req: RequestState, now: float, floor: float) -> tuple[float, float]:
        """The longest step a deadline request can afford, and the deadline it paces for (see
        ``deadline_slack``).

        A pipeline call paces for its stage deadline when it can, else for the run's; a request that
        cannot finish even at the fastest pace (``floor``) sets no limit (``inf``): it is best effort."""
        est, generated = req.policy_data, req.num_generated
        if est is not None and est.frame == self._frame and est.generated + self.config.refresh_tokens > generated \
                and est.pace > generated:  # remaining_output's cache, read inline: this runs per decode per step
            remaining = est.pace - generated
            if remaining < 1.0:
                remaining = 1.0
        else:
            remaining = self.remaining_output(req, pace=True)
        for due in (req.deadline,) if req.pipeline is None else (req.deadline, req.pipeline.run_deadline):
            pace = (due - now) / remaining
            if pace >= floor:
                if self.config.deadline_slack == "spend":  # what its slack allows this step, if more
                    pace = max(pace, due - now - (remaining - 1.0) * self._step_time)
                return pace, due
        return math.inf, math.inf

    def _prefill_cap(self, view: SchedulerView, budget: int, step_limit: float, context: int) -> int:
        """Most prefill tokens (of ``budget``, what the decodes left) this step can take and still end
        within ``step_limit``."""
        if math.isinf(step_limit):
            return budget
        step_limit *= 1.0 - self.config.step_margin  # the view's step estimate is approximate
        decodes = view.limits.token_budget - budget
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

    def _admit(self, plan: PlanBuilder, room: _PrefillRoom) -> None:
        """Admit feasible requests in first-deadline order, then probable ones, then best effort
        (which, due nowhere, prefills only within every limit), while capacity lasts."""
        self._admission, self._admission_keys = self._admit_in_order(
            plan, self._admission, self._admission_keys, room, pace=False)
        if self._probable and room.left > 0 and plan.seats > 0:
            self._probable, self._probable_keys = self._admit_in_order(
                plan, self._probable, self._probable_keys, room, pace=True)

        prefill_cap = room.for_key(math.inf)
        if ((self._best_effort or self._demoted) and prefill_cap > 0 and plan.seats > 0
                and self._best_effort_keys is None):
            self._sort_best_effort()
        best_effort = self._best_effort
        while best_effort and prefill_cap > 0 and plan.seats > 0:
            req = best_effort[-1]
            if req in self._waiting:
                admitted = self._try_admit(plan, req, prefill_cap)
                if not admitted:
                    break
                prefill_cap -= admitted
                room.used += admitted
            best_effort.pop()
            self._best_effort_keys.pop()  # type: ignore[union-attr]

    def _admit_in_order(self, plan: PlanBuilder, queue: list[RequestState], keys: list[float], room: _PrefillRoom,
                        pace: bool) -> tuple[list[RequestState], list[float]]:
        """Admit from ``queue`` (first-deadline order, keys alongside) while capacity lasts: the
        admission order (reading on into the frame's sweep as needed), or with ``pace`` the probable
        tier. A request no longer feasible (at the pace quantile with ``pace``) leaves for the tier
        below. Returns the queue and keys left."""
        now = self._now
        kept: list[RequestState] = []
        kept_keys: list[float] = []
        index = 0
        while plan.seats > 0 and room.left > 0:
            if index == len(queue):
                if pace or self._sweep is None:
                    break
                self._advance_to_admission()  # the frame's sweep has not got this far yet (queue grows)
                continue
            req, key = queue[index], keys[index]
            prefill_cap = room.for_key(key)
            if prefill_cap <= 0:
                break  # no room left for it, nor for those due after it
            index += 1
            if req not in self._waiting:
                continue  # admitted, finished or aborted since it was queued
            first = self._first_token_at(req, now)
            if not self._completion_ok(req, first, pace):
                if not pace and self.config.probable == "tier" and self._completion_ok(req, first, pace=True):
                    at = bisect.bisect_right(self._probable_keys, key)
                    self._probable.insert(at, req)
                    self._probable_keys.insert(at, key)
                else:
                    self._demote(req, now)
                continue
            admitted = self._try_admit(plan, req, prefill_cap)
            if admitted:
                room.used += admitted
            else:
                kept.append(req)
                kept_keys.append(key)
        if not index:
            return queue, keys
        return kept + queue[index:], kept_keys + keys[index:]

    def _sort_best_effort(self) -> None:
        """Order best effort by aged margin goodput. Done lazily: under overload the leftover
        capacity it waits for seldom comes, and scoring every request each frame would be waste."""
        if self._sweep is not None:
            self._advance(len(self._sweep.entries))
        now = self._now
        aged = sorted((self._aged_margin(r, now), i, r) for i, r in enumerate(self._best_effort + self._demoted))
        self._demoted = []
        self._best_effort = [r for _, _, r in aged]
        self._best_effort_keys = [k for k, _, _ in aged]

    def _try_admit(self, plan: PlanBuilder, req: RequestState, prefill_cap: int) -> int:
        """Admit waiting ``req`` with its first prefill chunk: the chunk's size, or 0 when it does not
        fit. KV memory must hold the prompt and the expected output, so that growth does not preempt."""
        chunk = min(req.num_uncomputed, prefill_cap, plan.token_budget)
        reserve = plan.limits.blocks_for(int(req.num_tokens + self.remaining_output(req)))
        if reserve > plan.free_blocks or not plan.schedule(req, chunk):
            return 0
        self._forget(req)
        return chunk

    def _rank_waiting(self, view: SchedulerView) -> None:
        """A frame's full re-ranking: feasible requests in first-deadline order against the prefill
        work committed ahead of each; the rest to best effort by aged margin goodput.

        The sweep that decides this (:meth:`_advance`) runs on the frame's inputs, as far as it is
        read: the requests that may have to be refused (all at this step, as a sweep done at once
        would refuse them), the admission order as far as admissions and newcomers reach into it,
        and, on steps that leave seats free, a slice more, so that it is done within half a frame.
        While every seat is taken nothing is admitted, and the queue is not read at all."""
        self._frame += 1
        self._steps_to_frame = self.config.frame_steps
        self._class_estimates.clear()
        self._newcomers.clear()
        now = self._now
        clock = now + sum(self._prefill_left(r) for r in view.running) * self._token_time
        self._admission, self._admission_keys = [], []
        self._probable, self._probable_keys = [], []
        self._best_effort, self._best_effort_keys, self._demoted = [], None, []
        self._end_sweep()
        if not self.config.grouping:  # ablation: one order, by margin goodput alone
            ranked = self._waiting.ordered()
            self._admission = sorted((req for _, req in ranked), key=lambda r: -self._aged_margin(r, now))
            self._admission_keys = [float(i) for i in range(len(ranked))]
            return
        # What the sweep reads of the estimator, read now: the frame's estimates are the frame start's.
        for request_class, max_tokens in self._waiting.class_keys():
            self._class_estimate(request_class, max_tokens)
        for req in self._waiting.refined():
            self.remaining_output(req)
        entries = self._waiting.entries
        chunk = -(-len(entries) // max(1, self.config.frame_steps // 2))
        self._sweep = _Sweep(entries, clock, now, self._token_time, self._step_time, self._waiting.next_seq, chunk)
        self._waiting.held = True
        oldest = self._waiting.oldest_arrival()
        if oldest is not None and now - oldest > self.config.max_wait_s:
            self._advance(len(entries))  # some may have waited too long: they are refused this step
        else:
            through = self._waiting.last_refusable_key()
            if through is not None:  # who asked to be refused is refused at this step, however deep
                self._advance(len(entries), through)

    def _advance(self, count: int, through: float = math.inf) -> None:
        """Sweep up to ``count`` more of the frame's entries, none with a first deadline after ``through``:
        a feasible request joins the admission order and moves the clock on by its prefill; the rest
        go to best effort, or are refused when their caller asked for that or they waited too long."""
        sweep = self._sweep
        assert sweep is not None
        entries, pos, clock, first_new = sweep.entries, sweep.pos, sweep.clock, sweep.first_new_seq
        end = min(len(entries), pos + count)
        live, left, pending = self._waiting.live, sweep.left, sweep.pending
        token_time, step_time, now, max_wait = sweep.token_time, sweep.step_time, sweep.now, self.config.max_wait_s
        admission, keys = self._admission, self._admission_keys
        # A class's estimate read inline where remaining_output is this class's own (not the oracle's).
        class_totals = self._class_estimates if type(self).remaining_output is JIT.remaining_output else None
        refine, probable = self.config.refine, self.config.probable == "tier"
        max_late = math.inf if self.config.max_late_s is None else self.config.max_late_s
        while pos < end:
            key, seq, req = entries[pos]
            if key > through:
                break
            pos += 1
            if seq >= first_new or (live.get(req) != seq and left.get(req) != seq):
                continue  # not waiting when the frame started
            if pending and pending[0][0] < key:
                self._join_admission(bisect.bisect_left(pending, (key,)))
            # _prefill_left and _completion_ok, inlined (this runs once per waiting request a frame).
            generated = req.num_generated
            prefill = req.prompt_len + generated - req.num_computed
            prefill = (prefill if prefill > 1 or generated == 0 else 0) * token_time
            first = clock + prefill + step_time
            slo = req.slo
            likely = False  # feasible at the pace quantile (deadline kinds, with ``probable``)
            if slo is None:
                ok = True
            elif isinstance(slo, StreamSLO):
                ok = first <= key  # the entry's key is its next token's due time
            else:
                if class_totals is not None and (generated == 0 or not refine):
                    totals = class_totals[req.request_class, req.max_tokens]
                    remaining, pace_remaining = max(1.0, totals[0] - generated), max(1.0, totals[1] - generated)
                else:
                    remaining = self.remaining_output(req)
                    pace_remaining = self.remaining_output(req, pace=True) if probable else remaining
                finish = first + (remaining - 1) * step_time
                deadline = req.deadline if req.pipeline is None else min(req.deadline, req.pipeline.run_deadline)
                ok = finish <= deadline
                likely = probable and not ok and first + (pace_remaining - 1) * step_time <= deadline
            if ok:
                admission.append(req)
                keys.append(key)
                clock += prefill
            elif likely:
                self._probable.append(req)  # the sweep goes in first-deadline order
                self._probable_keys.append(key)
            elif self._wants_rejection(req) or now - req.arrival > max_wait:
                self._to_reject.append(req)
            else:
                self._best_effort.append(req)
                if now - key > max_late and self._nothing_to_earn(req, now):
                    # Past due with nothing left to earn: served if this step has room for it (it
                    # displaces nobody), refused rather than kept waiting if not (see max_late_s).
                    self._to_reject.append(req)
        sweep.pos, sweep.clock = pos, clock
        if pos == len(entries):
            self._join_admission(len(pending))
            self._end_sweep()
        elif pending:
            self._join_admission(bisect.bisect_left(pending, (sweep.next_key(),)))

    def _end_sweep(self) -> None:
        self._sweep = None
        self._waiting.held = False
        self._waiting.tidy()

    def _join_admission(self, count: int) -> None:
        """The first ``count`` pending newcomers join the end of the admission order."""
        pending = self._sweep.pending  # type: ignore[union-attr]
        for key, _, req in pending[:count]:
            self._admission.append(req)
            self._admission_keys.append(key)
        del pending[:count]

    def _advance_to_admission(self) -> None:
        """Sweep until the admission order grows or the sweep is done."""
        before = len(self._admission)
        while self._sweep is not None and len(self._admission) == before:
            self._advance(64)

    def _place_newcomers(self, view: SchedulerView) -> None:
        """Between frames, slot each newcomer into the admission order by its first deadline (or, while
        the frame's sweep has not reached that deadline, into its pending newcomers)."""
        for req in self._newcomers:
            key = req.next_due() if self.config.grouping else math.inf
            sweep = self._sweep
            if self._wants_rejection(req):
                if sweep is not None:  # its place in the whole order decides: sweep that far now
                    self._advance(len(sweep.entries), key)
                    sweep = self._sweep
                at = bisect.bisect_right(self._admission_keys, key)
                if not self._completion_ok(req, self._first_token_estimate(view, at, req)):
                    self._to_reject.append(req)  # "at once": its caller is waiting for the answer
                    continue
            if sweep is not None and key >= sweep.next_key():
                bisect.insort(sweep.pending, (key, sweep.placed, req))
                sweep.placed += 1
                continue
            at = bisect.bisect_right(self._admission_keys, key)
            self._admission.insert(at, req)
            self._admission_keys.insert(at, key)
        self._newcomers.clear()

    def _first_token_estimate(self, view: SchedulerView, position: int, req: RequestState) -> float:
        """When ``req`` would get its first token behind the running prefills and the admission
        queue's first ``position`` requests."""
        ahead = sum(self._prefill_left(r) for r in view.running)
        ahead += sum(self._prefill_left(r) for r in self._admission[:position])
        return self._first_token_at(req, view.now + ahead * self._token_time)

    def _wants_rejection(self, req: RequestState) -> bool:
        """Its caller asked to be refused rather than served late, and no work has been spent on it
        (a request refused for waiting too long may have been preempted: see ``max_wait_s``)."""
        return (req.slo is not None and req.slo.on_infeasible == "reject"
                and req.status is RequestStatus.WAITING)

    def _demote(self, req: RequestState, now: float) -> None:
        if self._wants_rejection(req):
            self._to_reject.append(req)
            return
        if self._best_effort_keys is None:
            self._demoted.append(req)  # sorted with the rest when needed
            return
        key = self._aged_margin(req, now)
        at = bisect.bisect_left(self._best_effort_keys, key)
        self._best_effort.insert(at, req)
        self._best_effort_keys.insert(at, key)

    def _aged_margin(self, req: RequestState, now: float) -> float:
        """Best-effort order: margin goodput, growing by its own size every ``ageing_s`` of waiting,
        so that an older request overtakes a more valuable newer one in time."""
        return self.margin_goodput(req, now) * (1.0 + max(0.0, now - req.arrival) / self.config.ageing_s)

    def _observe_clock(self, view: SchedulerView) -> None:
        if self._steps_to_frame <= 0:  # once a frame: the engine's step-time model may be learning
            budget = view.limits.token_budget
            self._full_step_time = view.step_time(budget, 0, 0)
            self._token_time = self._full_step_time / budget / self.config.prefill_efficiency
            if self._step_time == 0.0:
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

    def remaining_output(self, req: RequestState, pace: bool = False) -> float:
        true = self._true_length.get(req)
        return super().remaining_output(req, pace) if true is None else max(1.0, true - req.num_generated)


def jit_variant(**overrides: object) -> Callable[[], JIT]:
    """A factory of JIT policies with some config fields changed (for ablations)."""
    config = replace(JITConfig(), **overrides)  # type: ignore[arg-type]
    return lambda: JIT(config)
