"""One replica of the app: an engine running a jitagent policy, serving the OpenAI API.

The replica serves with what ``JITClient`` serves with in-process (its OpenAI server over its
engine: the simulated engine in real time, or vLLM with ``JITScheduler``): no second OpenAI
server. A call's SLO, request class and pipeline context reach the engine's scheduler as a
:class:`~jitagent.client.CallScope`, the pipeline's times put on the engine's clock at the call's
arrival here (less the time it spent being routed).

The replica reports its state to the router (:meth:`EngineReplica.record_routing_stats`, which Ray
Serve polls every ``request_routing_stats_period_s``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate
from ray import serve

from jitagent.client import CallScope, JITClient
from jitagent.client.handlers import APIErrorReply, JSONReply
from jitagent.client.transport import Server
from jitagent.engines.sim import DEFAULT_PROFILE, SimConfig, SimEngine
from jitagent.scheduling.policies import Policy, make_policy
from jitagent_ray.calls import ReplicaCall, ReplyHead
from jitagent_ray.stats import RequestClasses, sim_report

__all__ = ["ReplicaSettings", "EngineReplica", "REPLICA_HEADER", "REPLICAS_DEPLOYMENT"]

REPLICAS_DEPLOYMENT = "EngineReplica"   # the replicas' deployment, in every app
REPLICA_HEADER = "x-jitagent-replica"   # which replica answered (its Ray Serve id), on every reply
ENGINES = ("sim", "vllm")


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """What each replica runs.

    Args:
        engine: ``"sim"`` (the simulated engine in real time: runs anywhere) or ``"vllm"`` (vLLM with
            ``JITScheduler``; needs ``jitagent-vllm``, imported only then).
        policy: the scheduling policy: a name (``jit``, ``fcfs``, ``edf``, ...), or for the simulated
            engine an instance (each replica gets a copy; a restarted replica, a fresh copy).
        profile: the simulated engine's hardware profile.
        time_scale: the simulated engine's wall seconds per modelled second.
        model: the model to serve (vLLM: a folder, a hub name or ``tiny-random-llama``).
    """

    engine: str = "sim"
    policy: Policy | str = "jit"
    profile: str = DEFAULT_PROFILE
    time_scale: float = 1.0
    model: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine != "sim":
            if not isinstance(self.policy, str):
                raise ValueError(f"the {self.engine} engine takes its policy by name (jit, fcfs, edf, ltr, las)")
            return
        # Checked here, where they are written, not in each replica after the cluster has started.
        if isinstance(self.policy, str):
            make_policy(self.policy)
        SimConfig(profile=self.profile).resolve()


class EngineReplica:
    """The body of the replicas' deployment (see :func:`jitagent_ray.app.build_app`)."""

    def __init__(self, settings: ReplicaSettings) -> None:
        self.settings = settings
        self._client = JITClient(engine=settings.engine, policy=settings.policy, profile=settings.profile,
                                 time_scale=settings.time_scale, model=settings.model)
        self._server: Server = self._client._served.server   # what JITClient serves with in-process
        self._id = serve.get_replica_context().replica_id.unique_id
        self._classes = RequestClasses()

    async def serve(self, call: ReplicaCall) -> AsyncGenerator[ReplyHead | bytes, None]:
        """Answer ``call``: its :class:`ReplyHead`, then its body. Cancelling the caller's side
        closes this generator, which aborts the request in the engine."""
        loop = asyncio.get_running_loop()
        args = call.request_args()
        self._classes.add(args.request_class)
        if call.refusal is not None:   # the router's: no engine work spent on it
            reply = APIErrorReply(429, call.refusal, type="slo_infeasible", code="slo_infeasible").reply()
        else:
            scope = CallScope(args.slo, args.pipeline(loop.time() - call.routing_delay()), args.request_class)
            reply = await self._server.handle(call.method, call.path, call.body, scope, propagate.extract(call.trace))
        headers = {**reply.headers, REPLICA_HEADER: self._id}
        if isinstance(reply, JSONReply):
            yield ReplyHead(reply.status, headers)
            yield reply.body
            return
        try:
            yield ReplyHead(200, headers)
            async for event in reply.events:
                yield event
        finally:
            await reply.aclose()

    def record_routing_stats(self) -> dict[str, Any]:
        """This replica's state for the routers (Ray Serve calls it every ``request_routing_stats_period_s``):
        a :class:`~jitagent_ray.stats.ReplicaReport`; none from an engine that cannot tell its state
        (the routers then take it as Ray does: by its queue length)."""
        engine = self._client.engine
        return sim_report(engine, self._classes).to_stats() if isinstance(engine, SimEngine) else {}

    async def __del__(self) -> None:
        client = getattr(self, "_client", None)   # Ray Serve calls this after a failed __init__ too
        if client is not None:
            await client.close()
