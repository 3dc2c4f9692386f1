"""The overload soak harness: test code (it reads the policies' private queues), for
``tests/bench/test_soak.py`` and ``benchmarks/soak.py``.

Overload soak: a long stream of requests far beyond the engine's capacity, in virtual time, with
callers that give up, to show that every request ends and that nothing accumulates.

The driver plays the callers of a built-in workload (``mixed`` by default: chat streams, tool calls
with deadlines, pipeline runs round by round, with :mod:`jitagent.bench.driver` as the benchmark) on the
simulated :class:`~jitagent.engines.core.EngineCore`, and:

* cancels ``cancel_share`` of the requests at a random time within ``cancel_within_s`` of their
  arrival (:meth:`EngineCore.abort`, wherever the request then is: waiting, prefilling, decoding or
  preempted);
* gives up on every request still unanswered ``timeout_s`` after its arrival, as a client's
  timeout does (the OpenAI client's default is 600 s). Under sustained overload a first-come-
  first-served queue grows without end unless its callers leave: that is the backlog of the load,
  not a leak, and a timeout bounds it;
* asks ``reject_share`` of the requests (a pipeline run's calls together) to be refused rather
  than served late (``on_infeasible="reject"``);
* ends a pipeline run at its first call that does not finish, aborting the run's other calls.

Every request ends in exactly one outcome: finished, rejected by the scheduler, cancelled, timed
out, aborted with its run, or refused at the call as too large for the engine (only with a small
KV cache). At the end the engine must hold no request, every KV block must be
free, and the policy must hold no request in its queues.

Memory: no per-request record is kept (the driver counts outcomes), and the workload is built ten
minutes of arrivals at a time. Every ``sample_every`` requests issued, the soak measures the bytes
reachable from the engine core (its requests, their token times, the policy and its queues and
estimates) and from the driver's own state (pending cancellations and timeouts, pipeline runs in
flight): :func:`retained_bytes`, which walks the objects with ``gc.get_referents`` and adds up
``sys.getsizeof``, stopping at classes, functions, modules and the immutable workload. Each
checkpoint reports that now and its peak over the samples so far, and the process's peak resident
memory (``ru_maxrss``: the interpreter and the libraries too). ``tracemalloc`` would
see every allocation but slows the soak about sevenfold.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import random
import resource
import sys
import time
import types
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel

from jitagent.bench.driver import PipelineRun, step_virtual
from jitagent.bench.workloads import CallSpec, PipelineArrival, Round, SingleArrival, build_workload
from jitagent.engines.core import EngineCore
from jitagent.engines.sim import DEFAULT_PROFILE, SimConfig
from jitagent.scheduling.policies import JIT, Policy, QueuePolicy
from jitagent.scheduling.request import RequestState, RequestStatus
from jitagent.slo import SLO

__all__ = ["SoakConfig", "Checkpoint", "SoakResult", "soak", "policy_queues", "retained_bytes"]

OUTCOMES = ("finished", "rejected", "cancelled", "timed_out", "aborted_with_run", "invalid")
_WINDOW_S = 600.0   # the workload is built this many seconds of arrivals at a time


@dataclass(frozen=True)
class SoakConfig:
    """What to push through the engine.

    The default rate is 3x the capacity of ``fcfs`` on ``mixed`` traffic with the default profile
    (2.18 arrivals/s at 90% SLO attainment, ``docs/benchmarks.md``), about 2x that of ``jit``
    (3.22); an arrival is one chat or tool request or one pipeline run (3.6 calls on average).
    """

    policy: str = "fcfs"
    workload: str = "mixed"
    rate: float = 6.6
    requests: int = 100_000
    cancel_share: float = 0.1
    cancel_within_s: float = 60.0
    timeout_s: float = 120.0
    reject_share: float = 0.1
    checkpoints: tuple[int, ...] = (10_000, 100_000)
    seed: int = 0
    profile: str = DEFAULT_PROFILE
    num_blocks: int | None = None      # KV cache blocks (16 tokens each); None: what the profile's GPU holds
    sample_every: int = 1000
    unique_classes: bool = False       # every request names a request class of its own (callers choose it)

    def __post_init__(self) -> None:
        if self.requests < 1 or not all(0 < c <= self.requests for c in self.checkpoints):
            raise ValueError("requests must be positive and every checkpoint within 1..requests")
        if self.sample_every < 1:
            raise ValueError(f"sample_every must be at least 1, got {self.sample_every}")
        for name in ("cancel_share", "reject_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("rate", "cancel_within_s", "timeout_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be positive and finite, got {getattr(self, name)}")


@dataclass
class Checkpoint:
    """The soak after ``requests`` requests were issued (``"end"``: once the last one ended)."""

    requests: int | str
    simulated_s: float
    wall_s: float
    live: int                          # requests in the engine now
    peak_live: int                     # most requests in the engine at once so far
    memory_bytes: int                  # retained by the engine, its policy and the driver now
    peak_memory_bytes: int             # the most of that in any sample so far
    peak_rss_bytes: int                # the process's peak resident memory so far
    estimator_classes: int = 0         # request classes whose samples the policy keeps (JIT's estimator)


@dataclass
class SoakResult:
    config: dict[str, Any]
    issued: int
    cancels_sent: int                  # requests picked to be cancelled (those that had ended by then were not)
    outcomes: dict[str, int]
    cancelled_while: dict[str, int]    # where each cancelled request was when it was cancelled
    steps: int
    preemptions: int
    policy_failures: int
    checkpoints: list[Checkpoint]
    leftovers: dict[str, int] = field(default_factory=dict)  # what the engine and policy still hold

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def policy_queues(policy: Policy) -> dict[str, int]:
    """How many requests the policy's queues still hold (the built-in policies' own bookkeeping)."""
    if isinstance(policy, JIT):
        return {name: len(getattr(policy, name))
                for name in ("_waiting", "_admission", "_best_effort", "_demoted", "_newcomers", "_to_reject")}
    if isinstance(policy, QueuePolicy):
        policy._peek()  # ended requests are dropped lazily, when they reach the head
        return {"_fifo": len(policy._fifo), "_heap": len(policy._heap)}
    return {}


_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
           BaseModel, SingleArrival, PipelineArrival, Round, CallSpec)


def retained_bytes(roots: Iterable[Any]) -> int:
    """Bytes of the objects reachable from ``roots`` (each counted once), not looking into classes,
    functions, modules, SLOs and workload specs (shared and immutable)."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _where(req: RequestState) -> str:
    if req.status is RequestStatus.PREEMPTED:
        return "preempted"
    if req.status is RequestStatus.WAITING:
        return "waiting"
    return "decoding" if req.num_generated else "prefilling"


def _arrivals(config: SoakConfig) -> Iterator[tuple[float, SingleArrival | PipelineArrival]]:
    """The workload's arrivals and their times, built a window at a time (each window seeded apart),
    so that nothing grows with the number of requests."""
    for k in itertools.count():
        window = build_workload(config.workload, rate=config.rate, duration=_WINDOW_S,
                                seed=config.seed * 1_000_003 + k)
        for arrival in window.arrivals:
            yield k * _WINDOW_S + arrival.time, arrival


class _Soak:
    def __init__(self, config: SoakConfig, core: EngineCore, started: float) -> None:
        self.config = config
        self.core = core
        self.arrivals = _arrivals(config)
        self.next_arrival = next(self.arrivals)
        self.started = started
        self.rng = random.Random(config.seed)
        self.events: list[tuple[float, int, str, Any]] = []    # (time, order, kind, request or run)
        self.order = itertools.count()
        self.run_of: dict[RequestState, PipelineRun] = {}
        self.rejecting: dict[SLO, SLO] = {}
        self.issued = 0
        self.cancels_sent = 0
        self.outcomes: Counter[str] = Counter()
        self.cancelled_while: Counter[str] = Counter()
        self.peak_live = 0
        self.peak_memory = 0
        self.checkpoints: list[Checkpoint] = []

    # -- callers ------------------------------------------------------------------------------------

    def _slo(self, slo: SLO) -> SLO:
        if self.rng.random() >= self.config.reject_share:
            return slo
        rejecting = self.rejecting.get(slo)
        if rejecting is None:
            rejecting = self.rejecting[slo] = slo.model_copy(update={"on_infeasible": "reject"})
        return rejecting

    def _class(self, request_class: str) -> str:
        return f"{request_class}#{self.issued}" if self.config.unique_classes else request_class

    def _issue(self, req: RequestState, output_len: int, now: float) -> None:
        self.issued += 1
        try:
            self.core.add_request(req, output_len)
        except ValueError:  # larger than this engine can ever serve: refused at the call, as a 400
            self._ended(req, "invalid", now)
        else:
            self._push(now + self.config.timeout_s, "timeout", req)
            if self.rng.random() < self.config.cancel_share:
                self.cancels_sent += 1
                self._push(now + self.rng.uniform(0, self.config.cancel_within_s), "cancel", req)
        live = self.core.num_live
        if live > self.peak_live:
            self.peak_live = live
        if self.issued in self.config.checkpoints:
            self.checkpoint(self.issued, now)
        elif self.issued % self.config.sample_every == 0:
            self._memory()

    def _arrive(self, arrival: SingleArrival | PipelineArrival, now: float) -> None:
        if isinstance(arrival, SingleArrival):
            call = arrival.call
            req = RequestState(f"r{self.issued}", now, call.prompt_len, call.max_tokens, slo=self._slo(arrival.slo),
                               request_class=self._class(call.request_class))
            self._issue(req, call.output_len, now)
        else:
            run = PipelineRun(arrival, f"{arrival.run_id}@{now:.3f}", now, now + arrival.slo.deadline_s,
                              self._slo(arrival.slo))
            self._next_round(run, now)

    def _next_round(self, run: PipelineRun, now: float) -> None:
        started = run.begin_round(now)
        for j, call in enumerate(started.round.calls):
            if self.issued >= self.config.requests or run.over:  # over: a call of this round was refused
                break
            req = RequestState(run.call_id(started.index, j), now, call.prompt_len, call.max_tokens, slo=run.slo,
                               request_class=self._class(call.request_class), pipeline=started.context)
            run.calls.add(req)
            self.run_of[req] = run
            self._issue(req, call.output_len, now)

    def _push(self, at: float, kind: str, payload: Any) -> None:
        heapq.heappush(self.events, (at, next(self.order), kind, payload))

    def _ended(self, req: RequestState, outcome: str, now: float) -> None:
        self.outcomes[outcome] += 1
        run = self.run_of.pop(req, None)
        if run is None:
            return
        if outcome == "finished":
            if (gap := run.finished(req)) is not None:
                self._push(now + gap, "round", run)
            return
        run.calls.discard(req)
        if not run.over:  # the run fails with its call: its other calls go
            run.over = True
            for other in list(run.calls):
                if not other.status.is_done:  # one that ended in this step too is reported by the engine
                    self.core.abort(other)
                    self._ended(other, "aborted_with_run", now)

    def _give_up(self, req: RequestState, outcome: str, now: float) -> None:
        if req.status.is_done:
            return
        if outcome == "cancelled":
            self.cancelled_while[_where(req)] += 1
        self.core.abort(req)
        self._ended(req, outcome, now)

    def _next_time(self) -> float | None:
        times = [self.events[0][0]] if self.events else []
        if self.issued < self.config.requests:
            times.append(self.next_arrival[0])
        return min(times) if times else None

    def _due(self, now: float) -> None:
        """Everything that happens by ``now``: arrivals, next rounds, cancellations, timeouts."""
        while self.next_arrival[0] <= now and self.issued < self.config.requests:
            self._arrive(self.next_arrival[1], self.next_arrival[0])
            self.next_arrival = next(self.arrivals)
        while self.events and self.events[0][0] <= now:
            at, _, kind, payload = heapq.heappop(self.events)
            if kind == "round":
                if self.issued < self.config.requests:
                    self._next_round(payload, at)
            elif kind == "cancel":
                self._give_up(payload, "cancelled", at)
            else:
                self._give_up(payload, "timed_out", at)

    # -- the engine ---------------------------------------------------------------------------------

    def run(self) -> float:
        now, stuck = step_virtual(self.core, self._due, self._next_time, self._ended)
        if stuck:
            raise RuntimeError(f"{self.core.num_live} requests live, nothing scheduled and nothing to come")
        return now

    def _memory(self) -> int:
        """What the engine (with its policy) and the driver hold now; keeps the peak."""
        held = retained_bytes([self.core, self.events, self.run_of, self.rejecting])
        self.peak_memory = max(self.peak_memory, held)
        return held

    def checkpoint(self, label: int | str, now: float) -> None:
        held = self._memory()
        self.checkpoints.append(Checkpoint(label, now, time.perf_counter() - self.started, self.core.num_live,
                                           self.peak_live, held, self.peak_memory, _peak_rss(),
                                           _estimator_classes(self.core.policy)))


def _estimator_classes(policy: Policy) -> int:
    estimator = getattr(policy, "estimator", None)
    return len(getattr(estimator, "_classes", ()))


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def soak(config: SoakConfig) -> SoakResult:
    """Run the soak (see the module's docstring); raises AssertionError if a request is left
    without an outcome or anything is left behind."""
    sim = SimConfig(profile=config.profile, num_blocks=config.num_blocks)
    core = sim.build_core(config.policy, check_plans=False)
    driver = _Soak(config, core, time.perf_counter())
    end = driver.run()
    driver.checkpoint("end", end)
    leftovers = {"live": core.num_live, "running": len(core.running),
                 "blocks_in_use": core.limits.num_blocks - core.free_blocks, **policy_queues(core.policy)}
    result = SoakResult(asdict(config), driver.issued, driver.cancels_sent, {k: driver.outcomes[k] for k in OUTCOMES},
                        dict(driver.cancelled_while), core.num_steps, core.num_preemptions, core.num_policy_failures,
                        driver.checkpoints, leftovers)
    assert driver.issued == config.requests, f"issued {driver.issued} of {config.requests} requests"
    assert sum(result.outcomes.values()) == driver.issued, f"outcomes {result.outcomes} for {driver.issued} requests"
    assert not any(leftovers.values()), f"left behind: {leftovers}"
    return result


# -- the client soak ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClientSoakConfig:
    """Calls through :class:`~jitagent.client.JITClient` on one simulated engine, in real time.

    Every call names a request class of its own (the field is the caller's to choose). Most calls
    are made by one long-lived async client, ``concurrency`` at a time; ``sync_share`` of them are
    made by a new client used only synchronously, from a worker thread (as a synchronous
    application or LangChain's ``invoke`` does), on the same engine, and closed in turn by
    ``client.sync.close()``, by ``with client.sync:``, or by dropping it to the garbage collector.
    ``time_scale`` 0 runs the engine's steps without waiting: what is measured is the client's
    and the engine's bookkeeping, not the model.
    """

    policy: str = "jit"
    requests: int = 100_000
    sync_share: float = 0.1
    concurrency: int = 32
    max_tokens: int = 8
    time_scale: float = 0.0
    checkpoints: tuple[int, ...] = (10_000, 100_000)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.requests < 1 or not all(0 < c <= self.requests for c in self.checkpoints):
            raise ValueError("requests must be positive and every checkpoint within 1..requests")
        if not 0 <= self.sync_share <= 1:
            raise ValueError(f"sync_share must be in [0, 1], got {self.sync_share}")
        if self.concurrency < 1 or self.max_tokens < 1:
            raise ValueError("concurrency and max_tokens must be at least 1")


@dataclass
class ClientCheckpoint:
    """The client soak after ``requests`` calls ended (``"end"``: once every client was closed)."""

    requests: int | str
    wall_s: float
    engine_bytes: int          # retained by the engine (its core, policy and estimator) and its streams
    estimator_classes: int     # request classes whose samples the policy keeps (JIT's estimator)
    threads: int               # the process's threads
    fds: int                   # the process's open file descriptors
    rss_bytes: int             # the process's resident memory now
    python_blocks: int         # memory blocks the interpreter has allocated and not freed (after a collection)


@dataclass
class ClientSoakResult:
    config: dict[str, Any]
    calls: int
    sync_calls: int
    outcomes: dict[str, int]
    checkpoints: list[ClientCheckpoint]
    leftovers: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_CLOSINGS = ("sync close", "with client.sync", "garbage collection")


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def client_soak(config: ClientSoakConfig) -> ClientSoakResult:
    """Run the client soak (see :class:`ClientSoakConfig`); raises AssertionError if a call is left
    without an outcome, or the engine, a thread or a file descriptor is left behind."""
    import asyncio
    import os
    import threading

    import openai

    from jitagent.client import JITClient
    from jitagent.engines.sim import SimEngine

    started = time.perf_counter()
    engine = SimEngine(SimConfig(), policy=config.policy, time_scale=config.time_scale)
    rng = random.Random(config.seed)
    outcomes: Counter[str] = Counter()
    checkpoints: list[ClientCheckpoint] = []
    threads_before = threading.active_count()
    fds_before = len(os.listdir("/proc/self/fd"))
    slo = {"kind": "deadline", "deadline_s": 60.0}

    def body(n: int) -> dict[str, Any]:
        return {"model": "meta-llama/Llama-3.1-8B", "messages": [{"role": "user", "content": f"call {n}"}],
                "max_tokens": config.max_tokens, "extra_body": {"slo": slo, "request_class": f"caller-{n}"}}

    def sync_call(n: int) -> None:
        client = JITClient(engine=engine, max_retries=0)
        how = _CLOSINGS[n % len(_CLOSINGS)]
        if how == "with client.sync":
            with client.sync as sync:
                sync.chat.completions.create(**body(n))
        else:
            client.sync.chat.completions.create(**body(n))
            if how == "sync close":
                client.sync.close()
        del client   # "garbage collection": nothing else holds it

    def checkpoint(label: int | str) -> None:
        gc.collect()
        checkpoints.append(ClientCheckpoint(
            label, time.perf_counter() - started, retained_bytes([engine.core, engine._streams, engine._logs]),
            _estimator_classes(engine.core.policy), threading.active_count(), len(os.listdir("/proc/self/fd")),
            _rss(), sys.getallocatedblocks()))

    async def main() -> None:
        client = JITClient(engine=engine, max_retries=0)
        done = 0

        async def one(n: int) -> None:
            nonlocal done
            try:
                if rng.random() < config.sync_share:
                    outcomes["sync"] += 1
                    await asyncio.to_thread(sync_call, n)
                else:
                    await client.chat.completions.create(**body(n))
                outcomes["finished"] += 1
            except openai.APIStatusError as exc:
                outcomes[f"http {exc.status_code}"] += 1
            done += 1
            if done in config.checkpoints:
                checkpoint(done)

        issued = 0
        while issued < config.requests:
            batch = min(config.concurrency, config.requests - issued)
            await asyncio.gather(*(one(issued + i) for i in range(batch)))
            issued += batch
        await client.close()

    asyncio.run(main())
    checkpoint("end")
    calls = outcomes["finished"] + sum(n for k, n in outcomes.items() if k.startswith("http"))
    end = checkpoints[-1]
    leftovers = {"live": engine.core.num_live, "blocks_in_use": engine.core.limits.num_blocks - engine.core.free_blocks,
                 "streams": len(engine._streams), "threads": max(0, end.threads - threads_before),
                 "fds": max(0, end.fds - fds_before), **policy_queues(engine.core.policy)}
    result = ClientSoakResult(asdict(config), calls, outcomes.pop("sync", 0), dict(outcomes), checkpoints, leftovers)
    assert calls == config.requests, f"{calls} calls ended of {config.requests}: {outcomes}"
    assert not any(leftovers.values()), f"left behind: {leftovers}"
    return result
