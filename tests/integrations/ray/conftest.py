"""One real local Ray cluster for this folder's tests: the app with two replicas of the simulated
engine in real time behind the SLO router, its HTTP ingress on a free port. Starting it takes
about 15 s on two cores, stopping it about 7 s.

Each replica's scheduler is a JIT policy that also writes down every request it is told of
(:class:`ray_fixtures.RecordingJIT`), so that a test sees what reached the scheduler on the replica itself.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest
from ray_fixtures import APP, RayApp, RecordingJIT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="package")
def ray_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayApp]:
    ray = pytest.importorskip("ray")
    from ray import cloudpickle, serve

    from jitagent_ray import AppSettings, ReplicaSettings, build_app

    cloudpickle.register_pickle_by_value(sys.modules[RecordingJIT.__module__])   # the workers cannot import tests
    record = tmp_path_factory.mktemp("ray") / "admitted.jsonl"
    port = _free_port()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = AppSettings(replicas=2, router="slo", stats_period_s=0.2,
                               replica=ReplicaSettings(policy=RecordingJIT(str(record))))
        serve.run(build_app(settings), name=APP, route_prefix="/")
        yield RayApp(f"http://127.0.0.1:{port}/v1", record)
    finally:
        serve.shutdown()
        ray.shutdown()
