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
