"""What this folder's tests share: the app's name, the recording scheduler, and what the cluster
fixture (conftest.py) hands the tests."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitagent.scheduling.policies import JIT, JITConfig
from jitagent.scheduling.request import RequestState

APP = "jitagent"


class RecordingJIT(JIT):
    """JIT that appends each request it is told of to ``path`` (one JSON line, with its process id).

    Pipeline times are the engine clock's, ``time.monotonic()``: on one host, every process's."""

    def __init__(self, path: str, config: JITConfig | None = None) -> None:
        super().__init__(config)
        self.path = path

    def fresh(self) -> RecordingJIT:
        return type(self)(self.path, self.config)

    def add_request(self, req: RequestState) -> None:
        pipeline = req.pipeline
        record = {"id": req.id, "pid": os.getpid(), "request_class": req.request_class,
                  "slo": req.slo.model_dump() if req.slo is not None else None,
                  "pipeline": None if pipeline is None else {
                      "run_id": pipeline.run_id, "stage": pipeline.stage, "run_start": pipeline.run_start,
                      "run_deadline": pipeline.run_deadline, "stage_deadline": pipeline.stage_deadline}}
        with open(self.path, "a") as out:
            out.write(json.dumps(record) + "\n")
        super().add_request(req)


@dataclass(frozen=True)
class RayApp:
    base_url: str
    record: Path

    def admitted(self) -> dict[str, dict[str, Any]]:
        """What the replicas' schedulers were told, by request id."""
        if not self.record.exists():
            return {}
        return {r["id"]: r for r in map(json.loads, self.record.read_text().splitlines())}
