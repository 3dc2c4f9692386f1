"""The packaged data in ``jitagent/bench/data``: the Azure 2023 traces and ``pipelines.json``.

Loaded with :mod:`importlib.resources` relative to the ``jitagent.bench`` package, so they are found
both in the source tree and in an installed package.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from jitagent.bench.workloads.schema import AppSpec

_DATA_PACKAGE = "jitagent.bench"
# From the app's note in pipelines.json: "At most 3 web_research rounds per run".
_BUILTIN_STAGE_CAPS: dict[str, dict[str, int]] = {"deep_research": {"web_research": 3}}


@dataclass(frozen=True)
class _Trace:
    times: np.ndarray  # seconds since the trace's first request
    prompt: np.ndarray
    output: np.ndarray


@functools.lru_cache(maxsize=None)
def _load_trace(name: str) -> _Trace:
    raw = (resources.files(_DATA_PACKAGE) / "data" / f"azure_llm_2023_{name}.csv.gz").read_bytes()
    lines = gzip.decompress(raw).decode("ascii").splitlines()[1:]
    stamps, prompts, outputs = zip(*(line.split(",") for line in lines))
    t = np.array(stamps, dtype="datetime64[ns]")
    trace = _Trace(
        times=(t - t[0]) / np.timedelta64(1, "s"),
        prompt=np.maximum(np.array(prompts, dtype=np.int64), 1),
        output=np.maximum(np.array(outputs, dtype=np.int64), 1),
    )
    for array in (trace.times, trace.prompt, trace.output):
        array.setflags(write=False)  # shared by every workload in the process
    return trace


@functools.lru_cache(maxsize=None)
def _pipelines_json() -> dict[str, Any]:
    return json.loads((resources.files(_DATA_PACKAGE) / "data" / "pipelines.json").read_text("utf-8"))


@functools.lru_cache(maxsize=None)
def _builtin_app_specs() -> dict[str, AppSpec]:
    # Imported here: the schema's defaults and validators read this module.
    from jitagent.bench.workloads.schema import AppSpec

    raw = _pipelines_json()
    specs = {}
    for name, app in raw["apps"].items():
        caps = _BUILTIN_STAGE_CAPS.get(name, {})
        stages = {s: {**spec, "max_rounds": caps[s]} if s in caps else spec
                  for s, spec in app["stage"].items()}
        specs[name] = AppSpec.model_validate(
            {**app, "stage": stages, "quantile_levels": raw["quantile_levels"]}
        )
    return specs
