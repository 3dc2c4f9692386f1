"""Scheduling policies, by name. Every engine runs any of them."""

from __future__ import annotations

from collections.abc import Callable

from jitagent.scheduling.policies.base import Policy, QueuePolicy
from jitagent.scheduling.policies.baselines import EDF, FCFS, LAS, LTR

__all__ = ["Policy", "QueuePolicy", "FCFS", "EDF", "LTR", "LAS", "POLICIES", "make_policy", "describe_policies"]

POLICIES: dict[str, Callable[[], Policy]] = {"fcfs": FCFS, "edf": EDF, "ltr": LTR, "las": LAS}


def make_policy(name: str) -> Policy:
    """A fresh policy instance by name (``fcfs``, ``edf``, ``ltr``, ``las``)."""
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; available: {', '.join(POLICIES)}") from None


def describe_policies() -> list[tuple[str, str]]:
    """(name, first line of its docstring) for each policy, for ``jitagent bench --list``."""
    return [(name, (cls.__doc__ or "").strip().splitlines()[0]) for name, cls in POLICIES.items()]
