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
import contextlib
import contextvars
import concurrent.futures
import itertools
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar
from dataclasses import dataclass, field

from jitagent.engines.core import EngineCore, Step
from jitagent.engines.errors import EngineDeadError
from jitagent.engines.latency import Profile, engine_preset, load_profile
from jitagent.engines.speed_trace import load_speed_trace
from jitagent.scheduling.plan import EngineLimits
from jitagent.scheduling.policies import Policy, make_policy
from jitagent.scheduling.request import PipelineContext, RequestState
from jitagent.slo import SLO, InfeasibleSLOError, is_finite_number

__all__ = ["SimConfig", "SimEngine", "RequestLog", "DEFAULT_PROFILE"]

_T = TypeVar("_T")
_LIVENESS_S = 0.5   # how often a call sent to another thread's loop checks that the loop still runs
_IDLE_POLL_S = 0.005   # how often wait_idle looks at a stepping task on another thread's loop


class _Moved(Exception):
    """The engine no longer steps on the loop a call was sent to (it ended, or the engine moved or
    went idle): the caller binds it again, on its own loop if it is idle."""


_MOVED = _Moved()   # told to a stream whose engine loop ended: the caller's loop carries the engine on

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
    ordinary thing to write, and a client's ``LoopHost`` knows only its own calls; the engine
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
        self._pending: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()   # see _soon
        self._ids = itertools.count()

    @property
    def model_name(self) -> str:
        """The profile's model (the profile's name when it names none)."""
        profile = self.config.resolve()[0]
        return profile.model.name if profile.model is not None else profile.name

    @property
    def max_model_len(self) -> int:
        return self.core.limits.max_model_len

    @property
    def policy_name(self) -> str:
        return self.core.policy.name

    def validate(self, prompt_tokens: int, max_tokens: int) -> None:
        """ValueError naming the problem unless a request this size can ever run on this engine."""
        self.core.validate(prompt_tokens, max_tokens)

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
        here = asyncio.get_running_loop()
        while (home := self._home()) is not None and home is not here:
            with contextlib.suppress(_Moved):   # moved or ended meanwhile: look again
                await _Hop(self._if_home, home, self._stop).call(home)
                return
        task = self._stop()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def close(self) -> None:
        """:meth:`aclose` for synchronous code: from any thread; on the engine's own loop the
        stepping task ends at the loop's next turn."""
        here = _running_loop()
        while (home := self._home()) is not None and home is not here:
            with contextlib.suppress(_Moved):
                _Hop(self._if_home, home, self._stop).call_sync(home)
                return
        self._stop()

    async def wait_idle(self) -> None:
        """Wait until the stepping task has ended (it ends once nothing is live), on whichever loop
        it runs (looked at every few milliseconds when that is another thread's)."""
        here = asyncio.get_running_loop()
        while (home := self._home()) is not None:
            if home is here and (task := self._loop_task) is not None:
                await asyncio.gather(task, return_exceptions=True)
            else:
                await asyncio.sleep(_IDLE_POLL_S)

    # -- where the engine steps ----------------------------------------------------------------
    #
    # Work for the engine runs on the loop it steps on, sent there as a plain callback (never as a
    # task: a task sent to a loop that is ending, or that ends before running it, would be
    # destroyed pending). The callback does the work only if the engine still steps on that loop,
    # and a caller gives a call that never started up (for good: see _Hop) once that loop ends.

    async def _on_engine(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` on the loop the engine steps on (this one if it is idle: it then
        starts stepping here). Should it move or that loop end first, the engine is bound again."""
        while (home := self._bind()) is not None:
            with contextlib.suppress(_Moved):
                return await _Hop(self._if_home, home, function, *args).call(home)
        return function(*args)

    def _if_home(self, loop: asyncio.AbstractEventLoop, function: Callable[..., _T], *args: Any) -> _T:
        """On ``loop``: ``function(*args)`` if the engine still steps here; else :class:`_Moved`."""
        if self._home() is not loop:
            raise _Moved
        return function(*args)

    def _soon(self, function: Callable[..., None], *args: Any) -> None:
        """``function(*args)`` on the loop the engine steps on, without waiting (from a ``finally``,
        which may run anywhere, even at garbage collection). Sent to another thread's loop, it waits
        in ``_pending``, run by that loop, or by the next one the engine steps on, or by whoever
        next finds the engine idle: it is done even if that loop ends before it runs the callback."""
        with self._binding:
            home = self._home_locked()
            if home is None:   # idle: nobody else touches the core while the lock is held
                function(*args)
                return
            if home is not _running_loop():
                self._pending.append((function, args))
        if home is _running_loop():
            function(*args)
            return
        with contextlib.suppress(RuntimeError):   # closed meanwhile: the next owner runs it
            home.call_soon_threadsafe(self._run_pending, home)

    def _run_pending(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``: run the work left for the engine, if it steps here (or is idle)."""
        with self._binding:
            if self._home_locked() is loop:
                self._run_pending_locked()

    def _run_pending_locked(self) -> None:
        """Run the work left for the engine, by its owner (its loop, or anyone while it is idle), lock held."""
        while self._pending:
            function, args = self._pending.popleft()
            function(*args)

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
        """The loop the engine steps on, ``None`` when idle (then the work left for it is done
        here, the lock held). Work left on a loop that stopped with the engine stepping on it, or
        on a loop that has closed, is given up (see :meth:`_fail`): nobody there reads it; the
        callers on other loops carry the engine on. A stepping task given up sees it is no longer
        the engine's and ends."""
        task = self._loop_task
        home = task.get_loop() if task is not None and not task.done() else None
        if home is not None and home.is_running():
            return home
        self._loop_task = None
        if self._streams:
            self._fail("the event loop of this call stopped while the simulated engine served it",
                       lambda stream: stream.loop is home or stream.loop.is_closed())
            if home is not None:
                self._move_callers(home)
        self._run_pending_locked()
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
                self._give_up(req)
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
            log.estimated_output_tokens = self.core.policy.output_estimate(req)
            self._logs[req] = log
        self._streams[req] = stream
        stream.request = req
        return req

    def _drop(self, stream: _Stream) -> None:
        """On the engine's loop: forget a caller, aborting its request (if admitted) unless it has ended."""
        if (req := stream.request) is not None:
            self._give_up(req)

    def _give_up(self, req: RequestState) -> None:
        """Forget ``req``'s caller and abort it in the engine (a no-op once it has finished)."""
        self._streams.pop(req, None)
        self._logs.pop(req, None)
        self.core.abort(req)

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
        """The stepping task ends: the work left for the engine is done; if requests are left (its
        loop is ending and cancelled it), the callers on other loops are told to carry the engine
        on (:data:`_MOVED`); those on this loop are being cancelled with it. (Closed at garbage
        collection, its loop closed with it pending, it leaves that to the next caller: see
        :meth:`_home_locked`.)"""
        if _running_loop() is None:
            return
        with self._binding:
            if self._loop_task is not asyncio.current_task():   # closed, or given up
                return
            self._loop_task = None
            self._run_pending_locked()
            if self.core.num_live:
                self._move_callers(asyncio.get_running_loop())

    def _move_callers(self, ended: asyncio.AbstractEventLoop) -> None:
        """Tell the callers on loops other than ``ended`` to carry the engine on, on theirs."""
        for req, stream in list(self._streams.items()):
            if stream.loop is not ended:
                self._tell(req, _MOVED)

    async def _step_while_live(self) -> None:
        me = asyncio.current_task()
        while self._loop_task is me and self.core.num_live:   # not me: given up (see _home_locked)
            if self._pending:   # left while the engine stepped elsewhere
                self._run_pending(me.get_loop())
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
            self._give_up(req)


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


def _ended(loop: asyncio.AbstractEventLoop) -> bool:
    return loop.is_closed() or not loop.is_running()


class _Hop:
    """``function(*args)`` run on another thread's event loop, for a caller waiting on its own
    loop or thread: a plain callback there, its result or exception handed back.

    A call that has not started when the caller gives up on it (cancelled, or its loop ended:
    checked every :data:`_LIVENESS_S`) never runs, even if that loop later runs the callback.
    """

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self._function, self._args = function, args
        self._claim: concurrent.futures.Future[None] = concurrent.futures.Future()   # cancelled: given up
        self._outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def _run(self) -> None:
        if not self._claim.set_running_or_notify_cancel():   # given up
            return
        try:
            self._outcome.set_result(self._function(*self._args))
        except Exception as exc:
            self._outcome.set_exception(exc)

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.call_soon_threadsafe(self._run)
        except RuntimeError:   # closed
            raise _Moved from None

    async def call(self, loop: asyncio.AbstractEventLoop) -> Any:
        """Run it on ``loop`` and return its result (raise its exception); :class:`_Moved` if
        ``loop`` ended before running it."""
        self._send(loop)
        here = asyncio.get_running_loop()
        answered = here.create_future()

        def wake(_: object) -> None:
            with contextlib.suppress(RuntimeError):   # this loop closed: nobody waits
                here.call_soon_threadsafe(_settle, answered)

        self._outcome.add_done_callback(wake)
        try:
            while not (await asyncio.wait([answered], timeout=_LIVENESS_S))[0]:
                if _ended(loop) and self._claim.cancel():
                    raise _Moved
        finally:
            self._claim.cancel()   # cancelled before it started: it never will
        return self._outcome.result()

    def call_sync(self, loop: asyncio.AbstractEventLoop) -> Any:
        """:meth:`call` for a thread with no event loop running."""
        self._send(loop)
        while True:
            try:
                return self._outcome.result(_LIVENESS_S)
            except TimeoutError:
                if _ended(loop) and self._claim.cancel():
                    raise _Moved from None


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
