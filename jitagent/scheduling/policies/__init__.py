"""Scheduling policies, by name. Every engine runs any of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from jitagent.scheduling.policies.base import Policy, QueuePolicy
from jitagent.scheduling.policies.baselines import EDF, FCFS, LAS, LTR
from jitagent.scheduling.policies.jit import JIT, JITConfig, Oracle, jit_variant

__all__ = ["Policy", "QueuePolicy", "FCFS", "EDF", "LTR", "LAS", "JIT", "JITConfig", "Oracle", "POLICIES",
           "ABLATIONS", "make_policy", "describe_policies"]

POLICIES: dict[str, Callable[[], Policy]] = {
    "fcfs": FCFS, "edf": EDF, "ltr": LTR, "las": LAS, "jit": JIT, "oracle": Oracle,
}

#: JIT with one idea taken out, for ablation studies (``--policies jit,jit-no-skip,...``).
ABLATIONS: dict[str, tuple[str, Callable[[], Policy]]] = {
    "jit-fixed-estimate": ("JIT with one conservative length estimate made at arrival, never refined",
                           jit_variant(refine=False)),
    "jit-skip": ("JIT with just-in-time skipping: streams ahead of schedule sit steps out",
                 jit_variant(skip=True)),
    "jit-no-grouping": ("JIT admitting by margin goodput alone, without feasibility groups or step-length control",
                        jit_variant(grouping=False)),
    "jit-mean": ("JIT with mean output-length estimates instead of a conservative quantile",
                 jit_variant(estimate="mean")),
    "jit-no-probable": ("JIT dropping a deadline request feasible only at the median length to best effort",
                        jit_variant(probable="off")),
    "jit-probable-value": ("JIT ranking a deadline request feasible only at the median length in best effort "
                           "at half its value, instead of a tier of its own", jit_variant(probable="value")),
    "jit-stream-pace-always": ("JIT cutting a step for every stream's next token, however much prefill it costs",
                               jit_variant(stream_pace="always")),
    "jit-stream-pace-reachable": ("JIT cutting a step for a stream's next token only where decodes alone make it",
                                  jit_variant(stream_pace="reachable")),
    "jit-no-stream-pace": ("JIT never cutting a step for a stream's next token",
                           jit_variant(stream_pace="never")),
    "jit-deadline-pace-all": ("JIT holding back everyone's prefill for a deadline request's pace, not only that "
                              "of requests due after it", jit_variant(deadline_pace="all")),
    "jit-deadline-slack-spread": ("JIT letting a step be only a deadline request's even pace (slack shared over its "
                                  "tokens), not as long as its slack allows", jit_variant(deadline_slack="spread")),
    "jit-no-max-late": ("JIT serving a best-effort request with nothing left to earn until max_wait_s, "
                        "instead of refusing it once past its deadline", jit_variant(max_late_s=None)),
}


def make_policy(name: str, *, decode_weight: float = 1.0) -> Policy:
    """A fresh policy instance by name (see :data:`POLICIES` and :data:`ABLATIONS`).

    ``decode_weight`` is the goodput weight of an output token against a prompt token, for the
    policies that weigh what a request can still earn (JIT and its variants).
    """
    if name in POLICIES:
        policy = POLICIES[name]()
    elif name in ABLATIONS:
        policy = ABLATIONS[name][1]()
    else:
        raise ValueError(f"unknown policy {name!r}; available: {', '.join([*POLICIES, *ABLATIONS])}")
    if isinstance(policy, JIT) and decode_weight != policy.config.decode_weight:
        policy.config = replace(policy.config, decode_weight=decode_weight)
    return policy


def describe_policies() -> list[tuple[str, str]]:
    """(name, first sentence of its docstring) for each policy and ablation, for ``jitagent bench --list``."""
    described = [(name, " ".join((cls.__doc__ or "").split()).split(". ")[0].rstrip(".")) for name, cls in POLICIES.items()]
    return described + [(name, text) for name, (text, _) in ABLATIONS.items()]
