"""The Ray Serve application: N engine replicas behind a request router, and an HTTP ingress.

::

    from ray import serve
    from jitagent_ray import AppSettings, ReplicaSettings, build_app

    serve.run(build_app(AppSettings(replicas=2, router="slo", replica=ReplicaSettings(engine="sim"))),
              name="jitagent", route_prefix="/")
    # OpenAI API at http://127.0.0.1:8000/v1; from Python: jitagent_ray.connect("jitagent")

Two deployments: ``EngineReplica`` (:class:`~jitagent_ray.replica.EngineReplica`, ``replicas`` of
them, each reporting its state every ``stats_period_s``) and ``OpenAIIngress``
(:class:`~jitagent_ray.ingress.OpenAIIngress`), whose handle to the replicas routes with the chosen
router: one of :mod:`jitagent.routing`'s through :class:`~jitagent_ray.router.SLORouter`, or
``ray``, Ray Serve's own default (power of two choices on queue length, probed at each request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from jitagent_ray.ingress import OpenAIIngress
from jitagent_ray.replica import REPLICAS_DEPLOYMENT, EngineReplica, ReplicaSettings
from jitagent_ray.router import ROUTERS, SLORouter

__all__ = ["AppSettings", "build_app", "RAY_ROUTER"]

RAY_ROUTER = "ray"   # Ray Serve's default router, for comparison


@dataclass(frozen=True, slots=True)
class AppSettings:
    """The app's shape.

    Args:
        replicas: how many engine replicas.
        router: ``slo`` (feasible with the most slack, a pipeline run kept together), ``pow2``,
            ``round-robin``, ``least-loaded`` (:mod:`jitagent.routing`), or ``ray`` (Ray Serve's own).
        replica: what each replica runs.
        stats_period_s: how often each replica reports its state to the routers.
        max_ongoing_requests: calls one replica takes at once; more wait in the router. The
            engine's scheduler does the queueing, so this is large.
        replica_actor_options, ingress_actor_options: Ray resources of each (``num_gpus`` for vLLM).
            The ingress reserves no CPU by default, as Ray Serve's own HTTP proxy: it only passes
            calls on (and two replicas then fit a two-core machine).
    """

    replicas: int = 2
    router: str = "slo"
    replica: ReplicaSettings = field(default_factory=ReplicaSettings)
    stats_period_s: float = 0.25
    max_ongoing_requests: int = 1024
    replica_actor_options: dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1})
    ingress_actor_options: dict[str, Any] = field(default_factory=lambda: {"num_cpus": 0})

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise ValueError(f"replicas must be an integer of at least 1, got {self.replicas!r}")
        names = (*ROUTERS, RAY_ROUTER)
        if self.router not in names:
            raise ValueError(f"router must be one of {', '.join(names)}, got {self.router!r}")
        if not self.stats_period_s > 0:
            raise ValueError(f"stats_period_s must be positive, got {self.stats_period_s!r}")


def build_app(settings: AppSettings | None = None) -> Application:
    """The application, ready for ``serve.run`` (or ``serve run`` in a config file)."""
    settings = settings or AppSettings()
    router = RequestRouterConfig(request_routing_stats_period_s=settings.stats_period_s,
                                 request_routing_stats_timeout_s=max(1.0, 4 * settings.stats_period_s))
    if settings.router != RAY_ROUTER:
        router = RequestRouterConfig(request_router_class=SLORouter, request_router_kwargs={"router": settings.router},
                                     request_routing_stats_period_s=router.request_routing_stats_period_s,
                                     request_routing_stats_timeout_s=router.request_routing_stats_timeout_s)
    replicas = serve.deployment(EngineReplica, name=REPLICAS_DEPLOYMENT, num_replicas=settings.replicas,
                                max_ongoing_requests=settings.max_ongoing_requests, request_router_config=router,
                                ray_actor_options=settings.replica_actor_options)
    ingress = serve.deployment(OpenAIIngress, name="OpenAIIngress", max_ongoing_requests=settings.max_ongoing_requests,
                               ray_actor_options=settings.ingress_actor_options)
    return ingress.bind(replicas.bind(settings.replica))
