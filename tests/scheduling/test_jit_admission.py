"""JIT's conservatism only where it protects someone (issue 17): stream pacing that can succeed,
deadline pacing that holds back only later requests' prefill and only as far as the slack needs, a
probable tier between the sure requests and best effort, and a bounded wait past the deadline."""

import pytest
from scenario import a100_step_time, make_request, make_view

from jitagent.scheduling.estimator import OutputLengthEstimator
from jitagent.scheduling.policies import ABLATIONS, JIT, JITConfig, make_policy
from jitagent.slo import DeadlineSLO, StreamSLO


def tokens_of(plan, id):
    return next((n for r, n in plan.scheduled if r.id == id), 0)


def stream_due_in(slack: float, now: float = 10.0):
    """A running stream whose next token is due ``slack`` seconds from ``now``."""
    generated = 20
    tpot = 0.1
    ttft = now + slack - generated * tpot
    return make_request("stream", prompt=64, running=True, generated=generated, max_tokens=1000,
                        slo=StreamSLO(ttft_s=ttft, tpot_s=tpot))


def newcomer_prefill(stream_pace: str, slack: float) -> int:
    """Prefill tokens a long-prompt newcomer gets in a step beside a stream due in ``slack`` s."""
    policy = JIT(JITConfig(stream_pace=stream_pace))
    policy.add_request(make_request("new", prompt=4000, arrival=10.0, slo=StreamSLO(ttft_s=30.0, tpot_s=0.1)))
    plan = policy.schedule(make_view([stream_due_in(slack)], now=10.0, token_budget=2048, num_blocks=10_000))
    return tokens_of(plan, "new")


def test_a_stream_whose_next_token_cannot_be_on_time_does_not_hold_back_prefill():
    decode_only = a100_step_time(0, 1, 84)
    hopeless = decode_only / 2  # not even a step of decodes alone delivers it in time
    assert newcomer_prefill("always", hopeless) == 64           # the step is cut for nothing
    assert newcomer_prefill("reachable", hopeless) == 2047      # all the budget the decode left
    assert newcomer_prefill("never", hopeless) == 2047


def test_a_stream_whose_next_token_can_be_on_time_still_holds_back_prefill_when_reachable():
    reachable = a100_step_time(256, 1, 84) * 1.2  # a short step delivers it, a full one would not
    assert reachable < a100_step_time(2048, 1, 84)
    assert 64 <= newcomer_prefill("reachable", reachable) < 2047
    assert newcomer_prefill("reachable", reachable) == newcomer_prefill("always", reachable)
    assert newcomer_prefill("never", reachable) == 2047


def test_efficient_pacing_cuts_a_step_only_where_it_keeps_half_the_prefill_rate():
    short, full = a100_step_time(0, 1, 83), a100_step_time(2047, 1, 83)
    half_rate = 2 * short * full / (short + full)  # the step length that prefills at half the full rate
    dear, cheap = (short + half_rate) / 2, (half_rate + full) / 2
    assert newcomer_prefill("reachable", dear) < 2047 and newcomer_prefill("efficient", dear) == 2047
    assert newcomer_prefill("efficient", cheap) == newcomer_prefill("reachable", cheap) < 2047


def paced_newcomer_prefill(newcomer_ttft: float, pace: float, slack_steps: float = 0.0, **config) -> int:
    """Prefill tokens a 1,000-token-prompt stream arriving now (first token due in ``newcomer_ttft`` s)
    gets in a step beside a running deadline request whose even pace (time left over tokens left) is
    ``pace`` s a token, plus ``slack_steps`` of the recent step time to spare."""
    now = 10.0
    policy = JIT(JITConfig(**config))
    probe = make_request("probe", prompt=64, running=True, generated=20, max_tokens=30)
    left = policy.remaining_output(probe, pace=True)
    recent_step = a100_step_time(0, 1, 0)   # a fresh policy's recent step time
    due_in = left * pace + slack_steps * recent_step
    paced = make_request("paced", prompt=64, running=True, generated=20, max_tokens=30,
                         slo=DeadlineSLO(deadline_s=now + due_in))
    policy.add_request(make_request("new", prompt=1000, arrival=now, slo=StreamSLO(ttft_s=newcomer_ttft, tpot_s=1.0)))
    plan = policy.schedule(make_view([paced], now=now, token_budget=2048, num_blocks=10_000))
    assert tokens_of(plan, "paced") == 1
    return tokens_of(plan, "new")


def test_a_deadline_request_holds_back_only_the_prefill_of_requests_due_after_it():
    pace = (a100_step_time(0, 1, 84) + a100_step_time(1000, 1, 84)) / 2   # a full 1,000-token step is too long
    paced_due = pace * 10   # (at most 10 tokens left)
    sooner, later = paced_due / 2, 30.0
    spread = {"deadline_slack": "spread"}
    assert paced_newcomer_prefill(sooner, pace, **spread) == 1000
    assert 64 <= paced_newcomer_prefill(later, pace, **spread) < 1000
    assert 64 <= paced_newcomer_prefill(sooner, pace, deadline_pace="all", **spread) < 1000
    assert paced_newcomer_prefill(later, pace, **spread) == paced_newcomer_prefill(later, pace, deadline_pace="all",
                                                                                    **spread)


def test_a_deadline_request_lets_a_step_spend_its_slack_not_only_its_even_share():
    pace = (a100_step_time(0, 1, 84) + a100_step_time(1000, 1, 84)) / 2
    full_step = a100_step_time(1000, 1, 84)
    assert 64 <= paced_newcomer_prefill(30.0, pace, deadline_slack="spread") < 1000
    # With a full step's time to spare against the recent step time, the step may be a full one.
    assert paced_newcomer_prefill(30.0, pace, slack_steps=full_step / a100_step_time(0, 1, 0)) == 1000
    assert paced_newcomer_prefill(30.0, pace, slack_steps=full_step / a100_step_time(0, 1, 0),
                                  deadline_slack="spread") < 1000


def long_tailed_estimator() -> OutputLengthEstimator:
    """Nine in ten answers of 40 tokens, one in ten of 3,000: the median is short, the 0.99 quantile long."""
    estimator = OutputLengthEstimator(min_samples=10)
    for i in range(200):
        estimator.observe("tail", 3000 if i % 10 == 0 else 40)
    return estimator


def probable_request(id: str = "probable", arrival: float = 0.0):
    """Feasible at the median length (40 tokens in 5 s), not at the 0.99 quantile (3,000)."""
    return make_request(id, prompt=64, arrival=arrival, request_class="tail", max_tokens=4000,
                        slo=DeadlineSLO(deadline_s=5.0))


def first_admitted(policy: JIT, *requests, now: float = 0.5) -> list[str]:
    for req in requests:
        policy.add_request(req)
    plan = policy.schedule(make_view([], now=now, max_num_seqs=1, token_budget=2048, num_blocks=10_000))
    return [r.id for r, _ in plan.scheduled]


def late_stream():
    """A stream that missed its first token and can still earn tokens catching up: best effort."""
    return make_request("late", prompt=8, arrival=0.0, max_tokens=1000, slo=StreamSLO(ttft_s=0.1, tpot_s=0.1))


@pytest.mark.parametrize("probable, first", [("off", "late"), ("tier", "probable")])
def test_a_request_likely_to_make_its_deadline_goes_before_best_effort_with_the_probable_tier(probable, first):
    policy = JIT(JITConfig(probable=probable), estimator=long_tailed_estimator())
    assert first_admitted(policy, late_stream(), probable_request()) == [first]


def test_a_probable_request_does_not_displace_a_sure_one_with_a_later_deadline():
    policy = JIT(JITConfig(probable="tier"), estimator=long_tailed_estimator())
    sure = make_request("sure", prompt=64, arrival=0.0, max_tokens=4000, request_class="short",
                        slo=DeadlineSLO(deadline_s=60.0))
    for _ in range(20):
        policy.estimator.observe("short", 30)
    assert first_admitted(policy, probable_request(), sure) == ["sure"]


def test_a_request_no_longer_likely_drops_from_the_probable_tier_to_best_effort():
    policy = JIT(JITConfig(probable="tier"), estimator=long_tailed_estimator())
    # At 4.9 s its 40 median tokens no longer fit before its deadline at 5 s: the late stream,
    # which can still earn tokens, goes first.
    assert first_admitted(policy, late_stream(), probable_request(), now=4.9) == ["late"]


def hopeless_request():
    """Infeasible even at its median: 3,000 tokens cannot come within 6 s."""
    return make_request("hopeless", prompt=64, arrival=0.0, request_class="long", max_tokens=4000,
                        slo=DeadlineSLO(deadline_s=6.0))


@pytest.mark.parametrize("probable, first", [("off", "hopeless"), ("value", "probable")])
def test_with_probable_value_a_likely_request_ranks_above_a_hopeless_one_in_best_effort(probable, first):
    policy = JIT(JITConfig(probable=probable), estimator=long_tailed_estimator())
    for _ in range(20):
        policy.estimator.observe("long", 3000)
    # Both are best effort; at value 0 they tie (the later in the order goes first).
    assert first_admitted(policy, probable_request(), hopeless_request()) == [first]


@pytest.mark.parametrize("now, refused", [(10.0 + 29.0, False), (10.0 + 31.0, True)])
def test_a_best_effort_request_is_refused_a_bounded_time_after_its_deadline(now, refused):
    policy = JIT(JITConfig(max_late_s=30.0))
    busy = make_request("busy", running=True, generated=1, max_tokens=10_000)
    missed = make_request("missed", prompt=64, arrival=0.0, slo=DeadlineSLO(deadline_s=10.0))
    policy.add_request(missed)
    plan = policy.schedule(make_view([busy], now=now, max_num_seqs=1, token_budget=2048, num_blocks=10_000))
    assert plan.rejected == ([missed] if refused else [])


def test_a_past_due_request_is_served_rather_than_refused_when_it_displaces_nobody():
    # Refusing it would only idle the engine: the bounded wait is for requests kept waiting.
    policy = JIT(JITConfig(max_late_s=30.0))
    missed = make_request("missed", prompt=64, arrival=0.0, slo=DeadlineSLO(deadline_s=10.0))
    policy.add_request(missed)
    plan = policy.schedule(make_view([], now=10.0 + 31.0, max_num_seqs=4, token_budget=2048, num_blocks=10_000))
    assert plan.rejected == [] and [req for req, _ in plan.scheduled] == [missed]


def test_a_late_stream_that_can_still_catch_up_is_not_refused_for_lateness():
    policy = JIT(JITConfig(max_late_s=30.0))
    busy = make_request("busy", running=True, generated=1, max_tokens=10_000)
    stream = make_request("late", prompt=8, arrival=0.0, max_tokens=4000, slo=StreamSLO(ttft_s=0.1, tpot_s=0.1))
    policy.add_request(stream)  # 35 s late, but steps far shorter than 0.1 s: its later tokens can be on time
    plan = policy.schedule(make_view([busy], now=35.0, max_num_seqs=1, token_budget=2048, num_blocks=10_000))
    assert plan.rejected == []


@pytest.mark.parametrize("field, value", [("stream_pace", "sometimes"), ("probable", True), ("max_late_s", -1.0),
                                           ("max_late_s", "30"), ("deadline_pace", "earlier"),
                                           ("deadline_slack", None)])
def test_bad_admission_config_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        JITConfig(**{field: value})


def test_each_mechanism_has_an_ablation_name():
    configs = {name: make_policy(name).config for name in ABLATIONS if name.startswith("jit")}
    default = JITConfig()
    changed = {name: {f for f in vars(default) if getattr(config, f) != getattr(default, f)}
               for name, config in configs.items()}
    for field in ("stream_pace", "probable", "max_late_s", "deadline_pace", "deadline_slack"):
        assert any(field in fields and len(fields) == 1 for fields in changed.values()), field
