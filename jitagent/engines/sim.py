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
import itertools
from collections.abc import AsyncIterator
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
        self._streams: dict[RequestState, asyncio.Queue[int | None | Exception]] = {}
        self._logs: dict[RequestState, RequestLog] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._ids = itertools.count()

    def now(self) -> float:
        """The engine clock: the event loop's monotonic time."""
        return asyncio.get_running_loop().time()

    async def generate(self, prompt_len: int, max_tokens: int, output_len: int, *, slo: SLO | None = None,
                       request_class: str = "default", pipeline: PipelineContext | None = None,
                       request_id: str | None = None, log: RequestLog | None = None) -> AsyncIterator[int]:
        """Serve one request, yielding the 1-based index of each output token as it is delivered.

        ``log``, when given, is filled in with what the engine sees of the request as it runs.

        Raises ValueError at once for a request this engine can never serve, and
        :class:`~jitagent.slo.InfeasibleSLOError` when the policy refuses a request that cannot meet
        its SLO (at once if it asked for that, or after waiting too long as best effort), and
        :class:`~jitagent.engines.errors.EngineDeadError` when the engine is closed meanwhile.
        Closing the iterator or cancelling the consuming task aborts the request in the engine.
        """
        req = RequestState(request_id or f"sim-{next(self._ids)}", self.now(), prompt_len, max_tokens,
                           slo=slo, request_class=request_class, pipeline=pipeline)
        self.core.add_request(req, output_len)
        if log is not None:
            log.request = req
            log.estimated_output_tokens = self._estimate(req)
            self._logs[req] = log
        stream: asyncio.Queue[int | None | Exception] = asyncio.Queue()
        self._streams[req] = stream
        self._ensure_running()
        try:
            while (item := await stream.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self._streams.pop(req, None)
            self._logs.pop(req, None)
            self.core.abort(req)  # a no-op once finished

    async def aclose(self) -> None:
        """Abort everything in flight (its callers get :class:`EngineDeadError`) and stop the
        stepping task. A later :meth:`generate` starts the engine again."""
        for req in list(self._streams):
            self.core.abort(req)
            self._streams.pop(req).put_nowait(EngineDeadError("the simulated engine was closed"))
        task, self._loop_task = self._loop_task, None
        if task is not None and not task.done():  # a task whose loop has closed is done already
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until the stepping task has ended (it ends once nothing is live), e.g. before the
        engine is driven from another event loop."""
        task = self._loop_task
        if task is not None and not task.done():
            await asyncio.gather(task, return_exceptions=True)

    def _ensure_running(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="jitagent-sim-engine")

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
        while self.core.num_live:
            began = self.now()
            step = self.core.begin_step(began)
            if step is None or step.idle:
                await asyncio.sleep(0.001)  # everyone sat out: let time pass
                if step is not None and self._logs:
                    self._log_step(step, began, self.now())
                continue
            await asyncio.sleep(step.duration * self.time_scale)
            now = self.now()
            if self._logs:
                self._log_step(step, began, now)
            result = self.core.end_step(step, now)
            for req in result.emitted:
                stream = self._streams.get(req)
                if stream is not None:
                    stream.put_nowait(req.num_generated)
            for req in result.finished:
                stream = self._streams.get(req)
                if stream is not None:
                    stream.put_nowait(None)
            for req in result.rejected:
                stream = self._streams.get(req)
                if stream is not None:
                    stream.put_nowait(InfeasibleSLOError(
                        f"request {req.id} was refused by the scheduler: it cannot meet its SLO "
                        f"({req.slo}) at the current load"))
