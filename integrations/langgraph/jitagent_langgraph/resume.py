"""A run's deadline across interrupts (human in the loop).

A graph with a checkpointer can stop at an ``interrupt()`` (or ``interrupt_before``/``_after``)
and be resumed later on the same thread with ``Command(resume=...)`` or ``None`` as input. Such a
resume is the same run, not a new one: it keeps the run's id, its start and so its deadline,
fixed when the run first started. A resume after the deadline is late at once and follows
``on_late`` (``"raise"``: :class:`~jitagent_langgraph.DeadlineExceeded` at its first node;
``"best_effort"``: it runs on, its calls carrying the passed deadline). A resuming call may pass
``deadline_s`` to move the deadline: it is still counted from the run's first start.

The run's id, start (Unix time, as the checkpoint may outlive the process) and ``deadline_s``
travel in the config's ``metadata``, which LangGraph's checkpointers store with every
checkpoint the run writes (``get_checkpoint_metadata``). A resume reads them from the thread's
latest checkpoint, or from the nearest of its :data:`MAX_LOOKBACK` ancestors that has them (an
``update_state`` between interrupt and resume writes a checkpoint without them). A call counts as
a resume when the graph has a checkpointer, the config names a thread, the input is ``None`` or a
``Command``, and the thread has steps pending (``StateSnapshot.next``); anything else starts a new
run with a fresh deadline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot

__all__ = ["MAX_LOOKBACK", "Carried", "ais_paused", "aresumed_run", "is_paused", "resumed_run"]

MAX_LOOKBACK = 32  # checkpoints searched back from the latest for the run's carried deadline

_RUN_ID, _START, _DEADLINE = "jitagent_run_id", "jitagent_run_start", "jitagent_deadline_s"


@dataclass(frozen=True, slots=True)
class Carried:
    """What a run carries in its checkpoints: its id, its first start (Unix time) and its deadline."""

    run_id: str
    start_unix: float
    deadline_s: float

    @classmethod
    def read(cls, metadata: Mapping[str, Any] | None) -> Carried | None:
        """The values a checkpoint's metadata carries, or ``None`` if it carries none (or values
        that are not a run's: a checkpoint written by something else)."""
        metadata = metadata or {}
        run_id, start, deadline_s = (metadata.get(key) for key in (_RUN_ID, _START, _DEADLINE))
        if not isinstance(run_id, str) or not all(_is_time(value) for value in (start, deadline_s)):
            return None
        return cls(run_id, float(start), float(deadline_s))  # type: ignore[arg-type]

    def start_monotonic(self) -> float:
        """The run's start on this process's monotonic clock (the clock runs are planned on)."""
        return time.monotonic() - (time.time() - self.start_unix)

    def into(self, config: RunnableConfig) -> RunnableConfig:
        """``config`` (a copy of the caller's) with these values in its metadata."""
        config["metadata"] = {**(config.get("metadata") or {}),
                              _RUN_ID: self.run_id, _START: self.start_unix, _DEADLINE: self.deadline_s}
        return config


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _saver(graph: CompiledStateGraph, config: RunnableConfig) -> BaseCheckpointSaver | None:
    """The graph's checkpointer, if it has one and ``config`` names a thread."""
    checkpointer = graph.checkpointer
    merged = merge_configs(graph.config, config) if graph.config else config
    has_thread = (merged.get("configurable") or {}).get("thread_id") is not None
    return checkpointer if isinstance(checkpointer, BaseCheckpointSaver) and has_thread else None


def _resume_saver(graph: CompiledStateGraph, input: Any, config: RunnableConfig) -> BaseCheckpointSaver | None:
    """The checkpointer to read a resumed run from, if the call may resume one."""
    return _saver(graph, config) if input is None or isinstance(input, Command) else None


def _hop(saved: CheckpointTuple | StateSnapshot | None) -> tuple[Carried | None, RunnableConfig | None]:
    """What a checkpoint carries, and its parent (where to look next if nothing)."""
    return (None, None) if saved is None else (Carried.read(saved.metadata), saved.parent_config)


def _search(snapshot: StateSnapshot) -> Generator[RunnableConfig, CheckpointTuple | None, Carried | None]:
    """What the run paused in ``snapshot`` (the state the call goes on from) carries, searched back
    through its ancestors: yields each parent checkpoint's config, to be sent what was read
    there (one search for sync and async checkpointers). ``None`` if no run is paused there."""
    if not snapshot.next:
        return None
    found, parent = _hop(snapshot)
    for _ in range(MAX_LOOKBACK):
        if found is not None or parent is None:
            break
        found, parent = _hop((yield parent))
    return found


def resumed_run(graph: CompiledStateGraph, input: Any, config: RunnableConfig) -> Carried | None:
    """What the run this call resumes carries, or ``None`` if the call starts a new run."""
    saver = _resume_saver(graph, input, config)
    if saver is None:
        return None
    search = _search(graph.get_state(config))
    try:
        parent = next(search)
        while True:
            parent = search.send(saver.get_tuple(parent))
    except StopIteration as done:
        return done.value


async def aresumed_run(graph: CompiledStateGraph, input: Any, config: RunnableConfig) -> Carried | None:
    """:func:`resumed_run` for an async checkpointer."""
    saver = _resume_saver(graph, input, config)
    if saver is None:
        return None
    search = _search(await graph.aget_state(config))
    try:
        parent = next(search)
        while True:
            parent = search.send(await saver.aget_tuple(parent))
    except StopIteration as done:
        return done.value


def _latest(config: RunnableConfig) -> RunnableConfig:
    """``config`` naming its thread's latest checkpoint: a call from an earlier one (time travel)
    forks the thread, and what it left is at the fork's head."""
    configurable = {key: value for key, value in (config.get("configurable") or {}).items() if key != "checkpoint_id"}
    return {**config, "configurable": configurable}  # type: ignore[typeddict-item]


def is_paused(graph: CompiledStateGraph, config: RunnableConfig) -> bool:
    """Whether the run that just returned stopped at an interrupt, with steps left to resume."""
    return _saver(graph, config) is not None and bool(graph.get_state(_latest(config)).next)


async def ais_paused(graph: CompiledStateGraph, config: RunnableConfig) -> bool:
    """:func:`is_paused` for an async checkpointer."""
    return _saver(graph, config) is not None and bool((await graph.aget_state(_latest(config))).next)
