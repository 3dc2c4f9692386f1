"""jitagent on Ray Serve: engine replicas running a jitagent policy behind an SLO-aware request router.

* :func:`build_app` (:class:`AppSettings`, :class:`ReplicaSettings`): the Ray Serve application, N
  :class:`EngineReplica` s (the simulated engine in real time, or vLLM with ``JITScheduler``) and an
  OpenAI-compatible HTTP ingress; ``jitagent-ray serve`` starts it from the command line.
* :class:`SLORouter`: Ray Serve's ``RequestRouter`` running :mod:`jitagent.routing`'s routers
  (``slo``, ``pow2``, ``round-robin``, ``least-loaded``) on the states replicas report.
* :func:`connect`: an OpenAI client whose calls reach a running app through its deployment handle.
"""

from jitagent_ray.app import AppSettings, build_app
from jitagent_ray.replica import EngineReplica, ReplicaSettings
from jitagent_ray.router import SLORouter
from jitagent_ray.server import ReplicasServer, connect

__all__ = ["AppSettings", "ReplicaSettings", "build_app", "EngineReplica", "SLORouter", "ReplicasServer", "connect"]
