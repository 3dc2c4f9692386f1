"""``SimEngine``: the embedded engine, a vLLM-like continuous-batching simulator that needs no GPU.

:class:`SimConfig` names a hardware profile and the engine settings (defaults are what vLLM sets
for that GPU). The same :class:`~jitagent.engines.core.EngineCore` runs in virtual time under the
benchmark (see :mod:`jitagent.bench.runner`) and in real time under :class:`SimEngine`, where each
step takes as long as the latency model says (times ``time_scale``) and tokens stream to callers
as their steps end. A caller may pass a :class:`RequestLog` to learn what the engine saw of its
request beyond its tokens (for telemetry): the logging costs nothing when nobody asks for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import concurrent.futures
import contextlib
import functools
import itertools
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar
from dataclasses import dataclass, field

from jitagent.engines.core import EngineCore, Step
from jitagent.engines.errors import EngineDeadError
from jitagent.engines.latency import Profile, engine_preset, load_profile
from jitagent.engines.speed_trace import load_speed_trace
from jitagent.scheduling.plan import EngineLimits
from jitagent.scheduling.policies import JIT, Policy, make_policy
from jitagent.scheduling.request import PipelineContext, RequestState
from jitagent.slo import SLO, InfeasibleSLOError, is_finite_number

__all__ = ["SimConfig", "SimEngine", "RequestLog", "DEFAULT_PROFILE"]

_T = TypeVar("_T")
_MOVED = EngineDeadError("the engine's loop ended")   # a sentinel: the caller's loop carries the engine on
_LIVENESS_S = 0.5   # how often a call served on another thread's loop checks that the loop still exists

DEFAULT_PROFILE = "llama-3.1-8b-a100"
_LLAMA_31_MAX_MODEL_LEN = 131072
_MAX_SETTING = 2**31 - 1   # bound on the integer settings: beyond it, step-time arithmetic leaves a float's range
_INT_SETTINGS = ("token_budget", "max_num_seqs", "block_size", "num_blocks", "max_model_len")


@dataclass(frozen=True)
class SimConfig:
    """Hardware profile and engine settings; ``None`` means the profile's vLLM default.

    Args:
        profile: built-in profile name or path to a profile JSON.
        preset: ``"vllm"`` (vLLM's defaults for the GPU) or ``"jitserve"`` (the JITServe
            artifact's 32 sequences).
        token_budget: max tokens computed per step (vLLM's ``max_num_batched_tokens``).
        max_num_seqs: max running requests (seats).
        gpu_memory_utilization: share of GPU memory vLLM may use (sets KV capacity).
        block_size: tokens per KV block (default: the profile's).
        num_blocks: KV blocks, overriding what the memory figures give.
        max_model_len: max prompt plus output tokens of one request.
        speed_trace: a :class:`~jitagent.engines.speed_trace.SpeedTrace` file: steps run as fast as
            the machine it was measured on did, window by window (to replay a real run in virtual time,
            whose clock starts at 0 as the run's did).
        learn_step_times: the policy plans on a step-time model it learns from the steps run, as
            vLLM's JIT scheduler does, rather than on the profile itself.
    """

    profile: str = DEFAULT_PROFILE
    preset: str | None = None
    token_budget: int | None = None
    max_num_seqs: int | None = None
    gpu_memory_utilization: float | None = None
    block_size: int | None = None
    num_blocks: int | None = None
    max_model_len: int | None = None
    speed_trace: str | None = None
    learn_step_times: bool = False

    def __post_init__(self) -> None:
        """Type and range of each setting given, checked where it is written (ValueError naming it)."""
        for name in _INT_SETTINGS:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                          and 1 <= value <= _MAX_SETTING):
                raise ValueError(f"{name} must be an integer from 1 to {_MAX_SETTING}, got {value!r:.80}")
        memory = self.gpu_memory_utilization
        if memory is not None and not (is_finite_number(memory) and 0 < memory <= 1):
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {memory!r:.80}")

    def resolve(self) -> tuple[Profile, EngineLimits]:
        """Load the profile and work out the engine's limits; ValueError on bad settings."""
        profile = load_profile(self.profile)
        defaults = engine_preset(profile, self.preset)
        block_size = self.block_size or defaults.block_size
        num_blocks = self.num_blocks
        if num_blocks is None:
            num_blocks = profile.kv_capacity_tokens(self.gpu_memory_utilization) // block_size
        max_model_len = self.max_model_len or min(_LLAMA_31_MAX_MODEL_LEN, num_blocks * block_size)
        limits = EngineLimits(
            token_budget=self.token_budget or defaults.token_budget,
            max_num_seqs=self.max_num_seqs or defaults.max_num_seqs,
            block_size=block_size,
            num_blocks=num_blocks,
            max_model_len=max_model_len,
        )
        return profile, limits

    def build_core(self, policy: Policy | str, check_plans: bool = True) -> EngineCore:
        """An :class:`EngineCore` with these settings, scheduled by ``policy`` (an instance or a name)."""
        profile, limits = self.resolve()
        if isinstance(policy, str):
            policy = make_policy(policy)
        elif not isinstance(policy, Policy):
            raise TypeError(f"policy must be a policy name or a Policy instance, got {type(policy).__name__}: "
                            f"{policy!r:.80}")
        speed = load_speed_trace(self.speed_trace) if self.speed_trace is not None else None
        return EngineCore(policy, profile.latency, limits, check_plans=check_plans, speed=speed,
                          learn_step_times=self.learn_step_times)


@dataclass(slots=True)
class RequestLog:
    """What the engine saw of one request besides its tokens, filled in while it runs.

    Times are on the engine clock. ``sat_out_s`` adds up the steps the request spent seated (its
    KV cache kept) without running, idle waits included; ``estimated_output_tokens`` is the
    policy's output-length estimate at arrival (JIT's conservative admission estimate; ``None``
    for policies that make none).
    """

    request: RequestState | None = None      # set once the engine has taken the request
    estimated_output_tokens: float | None = None
    sat_out_s: float = 0.0
    preempted_at: list[float] = field(default_factory=list)


class SimEngine:
    """The simulated engine in real time, for clients: one asyncio task steps the core while
    there is work, and each request's tokens arrive on its own stream.

    It may be called from any event loop or thread, as the vLLM engine may. It steps on one loop at
    a time: the loop of the call that finds it idle (its stepping task ends once nothing is live,
    so the next call may find it idle elsewhere). A call from another loop meanwhile has its
    request taken on the engine's loop (one thread hop) and its tokens handed to its own loop
    (``call_soon_threadsafe``, which wakes that loop); if the engine's loop ends (``asyncio.run``
    returning cancels the stepping task), the callers left on other loops carry the engine on,
    on theirs. Work left on a loop that stopped or closed without ending it is given up (aborted).
    Why serve rather than refuse: a ``SimEngine`` shared by an async application and a thread
    running its own loop (two clients on one engine, or one client's async and sync faces) is an
    ordinary thing to write, and a client's ``EngineHost`` knows only its own calls; the engine
    alone knows where it steps. (An ``asyncio.Queue`` fed from another thread does not wake its
    reader: a stream could wait forever with nothing left in the engine.)

    Args:
        config: profile and engine settings.
        policy: the scheduling policy (instance or name); ``"fcfs"`` by default.
        time_scale: wall seconds per modelled second (0.1 runs ten times faster than the GPU).
    """

    def __init__(self, config: SimConfig | None = None, policy: Policy | str = "fcfs",
                 time_scale: float = 1.0) -> None:
        if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)):
            raise TypeError(f"time_scale must be a number, got {time_scale!r}")
        if not (is_finite_number(time_scale) and time_scale >= 0):
            raise ValueError(f"time_scale must be finite and >= 0, got {time_scale}")
        self.config = config or SimConfig()
        self.core = self.config.build_core(policy)
        self.time_scale = time_scale
        self._streams: dict[RequestState, _Stream] = {}
        self._logs: dict[RequestState, RequestLog] = {}
        self._loop_task: asyncio.Task[None] | None = None   # its loop is the one the engine steps on
        self._binding = threading.Lock()   # callers on two threads must not both start a stepping task
        self._ids = itertools.count()

    def now(self) -> float:
        """The engine clock: the event loop's monotonic time."""
        return asyncio.get_running_loop().time()

    async def generate(self, prompt_len: int, max_tokens: int, output_len: int, *, slo: SLO | None = None,
                       request_class: str = "default", pipeline: PipelineContext | None = None,
                       request_id: str | None = None, log: RequestLog | None = None) -> AsyncGenerator[int, None]:
        """Serve one request, yielding the 1-based index of each output token as it is delivered.

        ``log``, when given, is filled in with what the engine sees of the request as it runs.

        Raises ValueError at once for a request this engine can never serve, and
        :class:`~jitagent.slo.InfeasibleSLOError` when the policy refuses a request that cannot meet
        its SLO (at once if it asked for that, or after waiting too long as best effort), and
        :class:`~jitagent.engines.errors.EngineDeadError` when the engine is closed meanwhile.
        Closing the iterator or cancelling the consuming task aborts the request in the engine.
        """
        stream = _Stream()   # read here, on the caller's loop, wherever the engine steps
        try:
            await self._on_engine(self._admit, prompt_len, max_tokens, output_len, slo, request_class, pipeline,
                                  request_id, log, stream)
            while (item := await stream.get()) is not None:
                if item is _MOVED:   # the loop the engine stepped on ended: step on this one
                    await self._on_engine(_nothing)
                    continue
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:   # also when cancelled while the engine's loop admits it: the drop runs after the admission
            self._soon(self._drop, stream)

    async def aclose(self) -> None:
        """Abort everything in flight (its callers get :class:`EngineDeadError`) and stop the
        stepping task, on whichever loop it runs. A later :meth:`generate` starts the engine again."""
        home = self._home()
        if home is not None and home is not asyncio.get_running_loop():
            with contextlib.suppress(EngineDeadError):   # that loop stopped: its work was given up
                await _hop(self.aclose(), home)
            return
        task = self._stop()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def close(self) -> None:
        """:meth:`aclose` for synchronous code: from any thread; on the engine's own loop the
        stepping task ends at the loop's next turn."""
        home = self._home()
        if home is not None and home is not _running_loop():
            with contextlib.suppress(EngineDeadError, concurrent.futures.CancelledError):
                asyncio.run_coroutine_threadsafe(self.aclose(), home).result()
        else:
            self._stop()

    async def wait_idle(self) -> None:
        """Wait until the stepping task has ended (it ends once nothing is live), on whichever loop it runs."""
        home = self._home()
        if home is not None and home is not asyncio.get_running_loop():
            await _hop(self.wait_idle(), home)
        elif (task := self._loop_task) is not None and not task.done():
            await asyncio.gather(task, return_exceptions=True)

    # -- where the engine steps ----------------------------------------------------------------

    async def _on_engine(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` on the loop the engine steps on (this one if it is idle: it then
        starts stepping here). Should that loop close first, the engine is idle: so here."""
        home = self._bind()
        if home is None:
            return function(*args)
        try:
            return await _hop(self._on_engine(function, *args), home)   # binds again there: it may have moved
        except EngineDeadError:
            return await self._on_engine(function, *args)

    def _soon(self, function: Callable[..., None], *args: Any) -> None:
        """``function(*args)`` on the loop the engine steps on, without waiting (from a ``finally``,
        which may run anywhere, even at garbage collection)."""
        with self._binding:
            home = self._home_locked()
            if home is None:   # idle: nobody else touches the core while the lock is held
                function(*args)
                return
        if home is _running_loop():
            function(*args)
            return
        try:
            home.call_soon_threadsafe(function, *args)
        except RuntimeError:   # it closed meanwhile: the engine is idle now
            self._soon(function, *args)

    def _bind(self) -> asyncio.AbstractEventLoop | None:
        """``None`` when the engine steps on the running loop, starting it here if it was idle;
        else the other loop it steps on."""
        here = asyncio.get_running_loop()
        with self._binding:
            home = self._home_locked()
            if home is None:
                # In a context of its own: the task (kept after it ends) would otherwise hold the
                # context of whichever call started it, with that caller's run, span and scope.
                self._loop_task = here.create_task(self._run(), name="jitagent-sim-engine",
                                                   context=contextvars.Context())
            return None if home is None or home is here else home

    def _home(self) -> asyncio.AbstractEventLoop | None:
        with self._binding:
            return self._home_locked()

    def _home_locked(self) -> asyncio.AbstractEventLoop | None:
        """The loop the engine steps on, ``None`` when idle. Work left on a loop that stopped with
        the engine stepping on it, or on a loop that has closed, is given up (see :meth:`_fail`):
        nobody there reads it. A stepping task given up sees it is no longer the engine's and ends."""
        task = self._loop_task
        home = task.get_loop() if task is not None and not task.done() else None
        if home is not None and home.is_running():
            return home
        self._loop_task = None
        if self._streams:
            self._fail("the event loop of this call stopped while the simulated engine served it",
                       lambda stream: stream.loop is home or stream.loop.is_closed())
        return None

    def _stop(self) -> asyncio.Task[None] | None:
        """On the engine's loop: fail everything in flight and cancel the stepping task (returned)."""
        self._fail("the simulated engine was closed", lambda stream: True)
        with self._binding:
            task, self._loop_task = self._loop_task, None
        if task is None or task.done():
            return None
        task.cancel()
        return task

    def _fail(self, why: str, which: Callable[[_Stream], bool]) -> None:
        """Abort the requests whose streams ``which`` picks; their callers get :class:`EngineDeadError`."""
        for req, stream in list(self._streams.items()):
            if which(stream):
                del self._streams[req]
                self._logs.pop(req, None)
                self.core.abort(req)
                stream.tell(EngineDeadError(why))

    def _admit(self, prompt_len: int, max_tokens: int, output_len: int, slo: SLO | None, request_class: str,
               pipeline: PipelineContext | None, request_id: str | None, log: RequestLog | None,
               stream: _Stream) -> RequestState:
        """On the engine's loop: take a request (ValueError if it can never be served)."""
        req = RequestState(request_id or f"sim-{next(self._ids)}", self.now(), prompt_len, max_tokens,
                           slo=slo, request_class=request_class, pipeline=pipeline)
        self.core.add_request(req, output_len)
        if log is not None:
            log.request = req
            log.estimated_output_tokens = self._estimate(req)
            self._logs[req] = log
        self._streams[req] = stream
        stream.request = req
        return req

    def _drop(self, stream: _Stream) -> None:
        """On the engine's loop: forget a caller, aborting its request (if admitted) unless it has ended."""
        if (req := stream.request) is not None:
            self._streams.pop(req, None)
            self._logs.pop(req, None)
            self.core.abort(req)  # a no-op once finished

    def _estimate(self, req: RequestState) -> float | None:
        policy = self.core.policy
        if isinstance(policy, JIT):  # the policies that estimate output lengths
            return policy.estimate_total(req, policy.config.quantile)
        return None

    def _log_step(self, step: Step, began: float, ended: float) -> None:
        """Note, for the logged requests, who sat ``step`` out and who was preempted."""
        logs = self._logs
        ran = {req for req, _ in step.plan.scheduled}
        for req in self.core.running:
            if req not in ran and (log := logs.get(req)) is not None:
                log.sat_out_s += ended - began
        for req in step.plan.preempted:
            if (log := logs.get(req)) is not None:
                log.preempted_at.append(began)

    async def _run(self) -> None:
        try:
            await self._step_while_live()
        finally:
            self._leave()

    def _leave(self) -> None:
        """The stepping task ends: if work is left (its loop is ending and cancelled it), the callers
        on other loops are told to carry the engine on (:data:`_MOVED`); those on this loop are
        being cancelled with it."""
        here = asyncio.get_running_loop()
        with self._binding:
            if self._loop_task is not asyncio.current_task():   # closed, or given up
                return
            self._loop_task = None
            if not self.core.num_live:
                return
        for stream in self._streams.values():
            if stream.loop is not here:
                stream.tell(_MOVED)

    async def _step_while_live(self) -> None:
        me = asyncio.current_task()
        while self._loop_task is me and self.core.num_live:   # not me: given up (see _home_locked)
            began = self.now()
            step = self.core.begin_step(began)
            if step is None or step.idle:
                await asyncio.sleep(0.001)  # everyone sat out: let time pass
                if step is not None and self._logs:
                    self._log_step(step, began, self.now())
                continue
            await asyncio.sleep(step.duration * self.time_scale)
            if self._loop_task is not me:
                return
            now = self.now()
            if self._logs:
                self._log_step(step, began, now)
            result = self.core.end_step(step, now)
            for req in result.emitted:
                self._tell(req, req.num_generated)
            for req in result.finished:
                self._tell(req, None)
            for req in result.rejected:
                self._tell(req, InfeasibleSLOError(f"request {req.id} was refused by the scheduler: it cannot "
                                                   f"meet its SLO ({req.slo}) at the current load"))

    def _tell(self, req: RequestState, item: int | None | Exception) -> None:
        """Hand ``item`` to the request's caller; a caller whose loop has closed is given up."""
        stream = self._streams.get(req)
        if stream is not None and not stream.tell(item):
            del self._streams[req]
            self._logs.pop(req, None)
            self.core.abort(req)


def _nothing() -> None:
    """Run on the engine's loop to make sure it steps somewhere."""


class _Stream(asyncio.Queue[int | None | Exception]):
    """One request's output for its caller, the loop the caller reads it on, and the request."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.request: RequestState | None = None   # set once the engine has taken it

    def tell(self, item: int | None | Exception) -> bool:
        """Put ``item`` from any thread; ``False`` if the caller's loop has closed."""
        try:
            if self.loop is _running_loop():
                self.put_nowait(item)
            else:
                self.loop.call_soon_threadsafe(self.put_nowait, item)
        except RuntimeError:   # closed: nobody is left to tell
            return False
        return True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _hop(awaitable: Awaitable[_T], loop: asyncio.AbstractEventLoop) -> _T:
    """Await ``awaitable`` (a coroutine) on ``loop``, which runs in another thread.

    Raises :class:`EngineDeadError`, rather than hang or pass a cancellation on to a caller that
    nobody cancelled, if that loop has closed or closes before running the work (checked every
    :data:`_LIVENESS_S`), or cancels the work (as ``asyncio.run`` does to what is left on its
    loop as it ends).
    """
    try:
        future = asyncio.run_coroutine_threadsafe(awaitable, loop)  # type: ignore[arg-type]
    except RuntimeError:   # closed
        awaitable.close()  # type: ignore[attr-defined]
        raise EngineDeadError("the event loop the simulated engine was stepping on has closed") from None
    waiting = asyncio.wrap_future(future)
    try:
        while not (await asyncio.wait([waiting], timeout=_LIVENESS_S))[0]:
            if loop.is_closed():
                raise EngineDeadError("the event loop the simulated engine was stepping on closed during the call")
    except BaseException:
        waiting.cancel()   # cancelled here, or given up: cancel it there
        raise
    if waiting.cancelled():
        raise EngineDeadError("the event loop the simulated engine was stepping on stopped during the call")
    return waiting.result()
