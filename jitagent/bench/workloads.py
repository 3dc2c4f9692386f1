"""Benchmark workloads: reproducible streams of requests and pipeline runs, each with its SLO.

A :class:`Workload` is a time-ordered tuple of arrivals, each either a :class:`SingleArrival` (one
chat or tool request) or a :class:`PipelineArrival` (one run of a multi-call application, as a
sequence of :class:`Round` supersteps). :func:`build_workload` builds one from a built-in name or a
workload file; the same arguments always give an identical workload.

Built-in workloads (DESIGN.md, "Workloads"):

* ``chat``: (prompt, output) pairs drawn with replacement from the rows of the Azure 2023
  conversation trace, each row's pair kept together; ``StreamSLO(ttft_s=1.0, tpot_s=0.1)``.
* ``tool``: the same from the Azure 2023 code trace; ``DeadlineSLO(deadline_s=10.0)``.
* ``pipeline``: runs of the applications in ``data/pipelines.json``, the app drawn uniformly per
  run; ``PipelineSLO(deadline_s=10.0 * rounds)`` where ``rounds`` is the run's number of rounds.
* ``mixed``: chat, tool and pipeline arrivals in equal numbers (up to one), total rate ``rate``.

Every request's or run's SLO is multiplied by a tightness factor drawn uniformly from {1, 2, 3, 4}.
Built-in calls carry ``max_tokens=4096``; the true output length is at most that.

Arrivals: ``"poisson"`` draws exponential gaps of mean ``1 / rate``; ``"trace"`` replays the trace's
own timestamps (the code trace for ``tool``, the conversation trace otherwise): its first
``round(rate * duration)`` requests, the trace repeated end to end where it has too few, time-scaled
to fill ``duration``, so the mean rate is ``rate``. Trace mode uses the timestamps only; lengths
are drawn as in Poisson mode, and the arrival times do not depend on the seed. Arrivals are then
shared among a workload's classes in proportion to their weights, exactly up to rounding (largest
remainder), in a random order: ``mixed`` is three classes of equal weight, so its kinds are equal in
number, not just in expectation.

Pipeline runs, from an application's stage graph (the ``pipelines.json`` schema):

* A run starts at ``stages[0]``. A visit to a stage is ``loops`` rounds, ``loops`` drawn from
  ``loops_samples`` (0 loops: the stage is skipped); each round has ``parallelism`` calls, drawn
  from ``parallelism_samples``. A samples list as long as ``quantile_levels`` holds quantiles and is
  drawn by inverse-CDF interpolation (rounded); any other list is drawn from uniformly.
* Each call's prompt and completion token counts are the inverse-CDF interpolation of
  ``prompt_tokens_quantiles`` / ``completion_tokens_quantiles`` at a uniform level, rounded, at
  least 1 (completions also at most ``max_tokens``).
* After a visit the next stage is drawn from ``next_stages`` without the self-transition (a
  stage's repetition is its ``loops``), the other probabilities renormalised to sum to 1; no
  entries left means the run ends.
* Caps: a stage runs at most ``max_rounds`` rounds per run (default 8; ``deep_research``'s
  ``web_research`` has 3, from the app's note). A visit is cut short at the cap, and a stage that
  has used up its rounds, or been entered ``max_rounds`` times, drops out of the next-stage choice
  (the second rule only matters for skippable stages and guarantees every run ends).
* A round's ``gap_s`` (tool time before it starts) is exponential with its stage's
  ``tool_gap_s_mean``; round 0 has none.
* ``expected_rounds_left`` uses only the app's structure and the run's history, never its sampled
  future: the expected remaining rounds of the current visit given it has lasted this long, plus the
  expected rounds after it from the renormalised transition matrix (expected visits to each stage
  times its mean loops). Caps are respected only approximately: the loop distribution is cut at the
  stage's remaining rounds and each stage's expected future rounds are clipped to its remaining
  cap, but the way a full stage reroutes the transitions is ignored.

Workload files (YAML or JSON, schema in ``docs/workload-format.md``) describe custom classes;
:func:`load_workload_file` validates one into a :class:`WorkloadFile`.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import json
import math
import numbers
import os
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO, parse_slo

__all__ = [
    "CallSpec", "SingleArrival", "Round", "PipelineArrival", "Arrival", "Workload",
    "BUILTIN_WORKLOADS", "build_workload", "describe_workloads", "load_workload_file",
    "WorkloadFile", "SingleClassSpec", "PipelineClassSpec", "AppSpec", "StageSpec", "TokenQuantiles",
]

BUILTIN_WORKLOADS: tuple[str, ...] = ("chat", "tool", "pipeline", "mixed")
ARRIVAL_PROCESSES: tuple[str, ...] = ("poisson", "trace")
WORKLOAD_FILE_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")

DEFAULT_MAX_TOKENS = 4096
DEFAULT_TIGHTNESS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
DEFAULT_DEADLINE_PER_ROUND_S = 10.0
MAX_STAGE_ROUNDS = 8
CHAT_SLO = StreamSLO(ttft_s=1.0, tpot_s=0.1)
TOOL_SLO = DeadlineSLO(deadline_s=10.0)
# Far above any benchmark run; keeps a typo in rate or duration from exhausting memory.
MAX_ARRIVALS = 10_000_000

_DATA_PACKAGE = "jitagent.bench"
# From the app's note in pipelines.json: "At most 3 web_research rounds per run".
_BUILTIN_STAGE_CAPS: dict[str, dict[str, int]] = {"deep_research": {"web_research": 3}}


# --------------------------------------------------------------------------------------------
# What the benchmark runner consumes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One LLM call: its lengths, the caller's ``max_tokens`` and its estimator class.

    ``output_len`` is the true output length (the simulated model stops there); policies never see
    it. ``request_class`` is ``"chat"``, ``"tool"``, a workload file's class name, or
    ``"<app>/<stage>"`` for pipeline calls.
    """

    prompt_len: int
    output_len: int
    max_tokens: int
    request_class: str


@dataclass(frozen=True, slots=True)
class SingleArrival:
    """One chat (stream SLO) or tool (deadline SLO) request arriving at ``time`` seconds."""

    time: float
    call: CallSpec
    slo: StreamSLO | DeadlineSLO
    score_class: str


@dataclass(frozen=True, slots=True)
class Round:
    """One superstep of a pipeline run: ``calls`` run in parallel.

    ``gap_s`` is the tool time between the end of the previous round and the start of this one (0
    for round 0). ``expected_rounds_left`` counts this round and the expected rounds after it, from
    the app's structure and the run's history only (see the module docstring).
    """

    stage: str
    calls: tuple[CallSpec, ...]
    gap_s: float
    expected_rounds_left: float


@dataclass(frozen=True, slots=True)
class PipelineArrival:
    """One run of a multi-call application, starting at ``time`` seconds."""

    time: float
    run_id: str
    app: str
    rounds: tuple[Round, ...]
    slo: PipelineSLO
    score_class: str


Arrival = SingleArrival | PipelineArrival


@dataclass(frozen=True)
class Workload:
    """A reproducible benchmark workload: arrivals sorted by time, all in ``[0, duration)``."""

    name: str
    arrivals: tuple[Arrival, ...]
    duration: float
    seed: int

    def num_calls(self) -> int:
        """Number of LLM calls: one per single arrival, every call of every round of every run."""
        return sum(
            1 if isinstance(a, SingleArrival) else sum(len(r.calls) for r in a.rounds)
            for a in self.arrivals
        )


# --------------------------------------------------------------------------------------------
# Workload file schema
# --------------------------------------------------------------------------------------------

_PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_TokenCount = Annotated[int, Field(ge=1)]
_Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=100)]
_StageName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
_Tightness = Annotated[tuple[_PositiveFloat, ...], Field(min_length=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _non_decreasing(values: tuple[float, ...]) -> tuple[float, ...]:
    if any(b < a for a, b in itertools.pairwise(values)):
        raise ValueError(f"quantiles must not decrease, got {list(values)}")
    return values


def _check_levels(levels: tuple[float, ...]) -> None:
    if not levels or levels[0] != 0.0 or levels[-1] != 1.0 or any(
        b <= a for a, b in itertools.pairwise(levels)
    ):
        raise ValueError(f"levels must increase strictly from 0 to 1, got {list(levels)}")


class TokenQuantiles(_Spec):
    """A token-count distribution by its quantiles; ``levels`` default to evenly spaced in [0, 1]."""

    quantiles: Annotated[tuple[_TokenCount, ...], Field(min_length=2)]
    levels: tuple[float, ...] | None = None

    _quantiles_order = field_validator("quantiles")(_non_decreasing)

    @model_validator(mode="after")
    def _levels_match(self) -> TokenQuantiles:
        if self.levels is not None:
            if len(self.levels) != len(self.quantiles):
                raise ValueError(
                    f"levels has {len(self.levels)} entries, quantiles {len(self.quantiles)}"
                )
            _check_levels(self.levels)
        return self

    def resolved_levels(self) -> tuple[float, ...]:
        """The quantile levels, the evenly spaced default filled in."""
        if self.levels is not None:
            return self.levels
        n = len(self.quantiles)
        return tuple(i / (n - 1) for i in range(n))


def _token_kind(value: Any) -> str:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return "<fixed>" if is_number else "<quantiles>"


_TokenDistribution = Annotated[
    Union[Annotated[_TokenCount, Tag("<fixed>")], Annotated[TokenQuantiles, Tag("<quantiles>")]],
    Discriminator(_token_kind),
]


class StageSpec(_Spec):
    """One stage of an application, as in ``pipelines.json``, plus the optional ``max_rounds``."""

    parallelism_samples: Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1)]
    loops_samples: Annotated[tuple[Annotated[int, Field(ge=0)], ...], Field(min_length=1)]
    next_stages: dict[_StageName, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    tool_gap_s_mean: _NonNegativeFloat = 0.0
    prompt_tokens_quantiles: tuple[_TokenCount, ...]
    completion_tokens_quantiles: tuple[_TokenCount, ...]
    max_rounds: Annotated[int, Field(ge=1, le=100)] = MAX_STAGE_ROUNDS

    _quantiles_order = field_validator("prompt_tokens_quantiles", "completion_tokens_quantiles")(
        _non_decreasing
    )


def _packaged_levels() -> tuple[float, ...]:
    return tuple(_pipelines_json()["quantile_levels"])


class AppSpec(_Spec):
    """A multi-call application in the ``pipelines.json`` schema.

    ``quantile_levels`` (top-level in ``pipelines.json``) defaults to the levels used there.
    """

    stages: Annotated[tuple[_StageName, ...], Field(min_length=1)]
    stage: dict[_StageName, StageSpec]
    quantile_levels: tuple[float, ...] = Field(default_factory=_packaged_levels)
    approximate: bool = False
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AppSpec:
        _check_levels(self.quantile_levels)
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be unique, got {list(self.stages)}")
        if set(self.stages) != set(self.stage):
            raise ValueError(
                f"'stage' must describe exactly the stages {list(self.stages)}, got {list(self.stage)}"
            )
        n = len(self.quantile_levels)
        for name, spec in self.stage.items():
            unknown = sorted(set(spec.next_stages) - set(self.stages))
            if unknown:
                raise ValueError(f"stage {name!r}: next_stages names unknown stages {unknown}")
            for key in ("prompt_tokens_quantiles", "completion_tokens_quantiles"):
                if len(getattr(spec, key)) != n:
                    raise ValueError(f"stage {name!r}: {key} needs {n} entries, one per quantile level")
        if min(self.stage[self.stages[0]].loops_samples) < 1:
            raise ValueError(
                f"the first stage {self.stages[0]!r} must run: its loops_samples must all be >= 1"
            )
        return self


def _single_or_deadline(value: Any) -> StreamSLO | DeadlineSLO:
    slo = parse_slo(value)
    if isinstance(slo, PipelineSLO):
        raise ValueError("a single class takes a 'stream' or 'deadline' SLO, not 'pipeline'")
    return slo


class SingleClassSpec(_Spec):
    """A class of single requests: lengths from a trace or given distributions, and an SLO."""

    kind: Literal["single"]
    name: _Name
    weight: _PositiveFloat = 1.0
    lengths: Literal["conv", "code"] | None = None
    prompt_tokens: _TokenDistribution | None = None
    output_tokens: _TokenDistribution | None = None
    slo: StreamSLO | DeadlineSLO
    tightness: _Tightness = DEFAULT_TIGHTNESS
    max_tokens: _TokenCount = DEFAULT_MAX_TOKENS

    _parse_slo = field_validator("slo", mode="before")(_single_or_deadline)

    @model_validator(mode="after")
    def _one_length_source(self) -> SingleClassSpec:
        explicit = (self.prompt_tokens is not None, self.output_tokens is not None)
        if self.lengths is not None and any(explicit):
            raise ValueError("give either 'lengths' or 'prompt_tokens' and 'output_tokens', not both")
        if self.lengths is None and not all(explicit):
            raise ValueError("give 'lengths' (conv or code) or both 'prompt_tokens' and 'output_tokens'")
        return self


def _app_kind(value: Any) -> str:
    return "<app-name>" if isinstance(value, str) else "<app-spec>"


def _pipeline_slo(value: Any) -> PipelineSLO | None:
    if value is None:
        return None
    slo = parse_slo(value)
    if not isinstance(slo, PipelineSLO):
        raise ValueError(f"a pipeline class takes a 'pipeline' SLO, not {slo.kind!r}")
    return slo


class PipelineClassSpec(_Spec):
    """A class of pipeline runs of one application: a built-in app's name or an inline app.

    The run's SLO is ``deadline_per_round_s`` times its number of rounds (10 s by default, like the
    built-in workload) or the fixed pipeline ``slo``, times the tightness.
    """

    kind: Literal["pipeline"]
    name: _Name
    weight: _PositiveFloat = 1.0
    app: Annotated[
        Union[Annotated[str, Tag("<app-name>")], Annotated[AppSpec, Tag("<app-spec>")]],
        Discriminator(_app_kind),
    ]
    deadline_per_round_s: _PositiveFloat | None = None
    slo: PipelineSLO | None = None
    tightness: _Tightness = DEFAULT_TIGHTNESS
    max_tokens: _TokenCount = DEFAULT_MAX_TOKENS

    _parse_slo = field_validator("slo", mode="before")(_pipeline_slo)

    @field_validator("app")
    @classmethod
    def _known_app(cls, value: str | AppSpec) -> str | AppSpec:
        if isinstance(value, str) and value not in _builtin_app_specs():
            raise ValueError(f"unknown app {value!r} (built-in apps: {', '.join(_builtin_app_specs())})")
        return value

    @model_validator(mode="after")
    def _one_deadline(self) -> PipelineClassSpec:
        if self.slo is not None and self.deadline_per_round_s is not None:
            raise ValueError("give 'deadline_per_round_s' or 'slo', not both")
        return self


def _class_kind(value: Any) -> str | None:
    kind = value.get("kind") if isinstance(value, Mapping) else getattr(value, "kind", None)
    return {"single": "<single>", "pipeline": "<pipeline>"}.get(kind)


class WorkloadFile(_Spec):
    """A custom workload: weighted classes of single requests and pipeline runs.

    ``arrivals`` is the default arrival process, used when :func:`build_workload` is not given one.
    """

    name: _Name | None = None
    description: str | None = None
    arrivals: Literal["poisson", "trace"] = "poisson"
    classes: Annotated[
        tuple[
            Annotated[
                Union[
                    Annotated[SingleClassSpec, Tag("<single>")],
                    Annotated[PipelineClassSpec, Tag("<pipeline>")],
                ],
                Discriminator(
                    _class_kind,
                    custom_error_type="class_kind",
                    custom_error_message="missing or unknown 'kind' (one of 'single', 'pipeline')",
                ),
            ],
            ...,
        ],
        Field(min_length=1),
    ]

    @field_validator("classes")
    @classmethod
    def _unique_names(
        cls, value: tuple[SingleClassSpec | PipelineClassSpec, ...]
    ) -> tuple[SingleClassSpec | PipelineClassSpec, ...]:
        repeated = sorted(name for name, n in Counter(c.name for c in value).items() if n > 1)
        if repeated:
            raise ValueError(f"class names must be unique, repeated: {', '.join(repeated)}")
        return value


def load_workload_file(path: str | os.PathLike[str]) -> WorkloadFile:
    """Read and validate a workload file (``.yaml``, ``.yml`` or ``.json``).

    Raises:
        ValueError: with a one-line message naming the file and what is wrong, e.g.
            ``load.yaml: classes[1].slo: invalid SLO: ttft_s: must be a positive finite number ...``.
    """
    where = os.fspath(path)
    file = Path(where)
    if file.suffix.lower() not in WORKLOAD_FILE_SUFFIXES:
        raise ValueError(f"{where}: a workload file must end in {', '.join(WORKLOAD_FILE_SUFFIXES)}")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{where}: workload file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot read workload file: {exc}") from None
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return WorkloadFile.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{where}: {_describe(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


def _describe(exc: ValidationError) -> str:
    """One line for a validation error: ``where: what`` per error, union tags left out."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ""
        for part in err["loc"]:
            if isinstance(part, int):
                where += f"[{part}]"
            elif not part.startswith("<"):  # union tags are "<...>"; names cannot start so
                where += f".{part}" if where else part
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field missing"
        elif err["type"] == "too_short":
            n = err["ctx"]["min_length"]
            msg = f"must have at least {n} {'entry' if n == 1 else 'entries'}"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Packaged data
# --------------------------------------------------------------------------------------------


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


@functools.lru_cache(maxsize=None)
def _builtin_app(name: str) -> _App:
    return _App(name, _builtin_app_specs()[name])


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


class _Uniforms:
    """Scalar uniform draws from one generator, fetched in blocks (scalar generator calls are slow)."""

    __slots__ = ("_rng", "_block", "_pos")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._block: list[float] = []
        self._pos = 0

    def __call__(self) -> float:
        if self._pos == len(self._block):
            self._block = self._rng.random(4096).tolist()
            self._pos = 0
        self._pos += 1
        return self._block[self._pos - 1]


class _IntDraw:
    """An integer drawn from a samples list: by quantile interpolation when the list is as long as
    the quantile levels, uniformly from the list otherwise."""

    __slots__ = ("samples", "levels")

    def __init__(self, samples: tuple[int, ...], levels: tuple[float, ...]) -> None:
        self.samples = samples
        self.levels = levels if len(samples) == len(levels) else None

    def __call__(self, u: float) -> int:
        if self.levels is None:
            return self.samples[int(u * len(self.samples))]
        i = min(bisect_right(self.levels, u) - 1, len(self.levels) - 2)
        l0, l1 = self.levels[i], self.levels[i + 1]
        q0, q1 = self.samples[i], self.samples[i + 1]
        return round(q0 + (u - l0) / (l1 - l0) * (q1 - q0))

    def pmf(self) -> tuple[np.ndarray, np.ndarray]:
        """Values and their probabilities, exactly (the interpolation is piecewise linear)."""
        mass: defaultdict[int, float] = defaultdict(float)
        if self.levels is None:
            for value in self.samples:
                mass[value] += 1 / len(self.samples)
        else:
            for (q0, q1), (l0, l1) in zip(itertools.pairwise(self.samples), itertools.pairwise(self.levels)):
                if q0 == q1:
                    mass[q0] += l1 - l0
                    continue
                for j in range(round(q0), round(q1) + 1):
                    overlap = min(q1, j + 0.5) - max(q0, j - 0.5)
                    if overlap > 0:
                        mass[j] += overlap / (q1 - q0) * (l1 - l0)
        values = np.array(sorted(mass), dtype=np.float64)
        return values, np.array([mass[int(v)] for v in values])


def _quantile_draw(
    quantiles: tuple[int, ...], levels: tuple[float, ...], u: np.ndarray, cap: int | None = None
) -> np.ndarray:
    """Token counts by inverse-CDF interpolation at levels ``u``, rounded, at least 1, at most
    ``cap`` when given."""
    return np.clip(np.rint(np.interp(u, levels, quantiles)), 1, cap).astype(np.int64)


@dataclass(frozen=True)
class _Stage:
    name: str
    parallelism: _IntDraw
    loops: _IntDraw
    loop_values: np.ndarray
    loop_probs: np.ndarray
    next_stages: tuple[tuple[int, float], ...]  # (stage index, probability), self removed
    gap_mean: float
    prompt_quantiles: tuple[int, ...]
    completion_quantiles: tuple[int, ...]
    cap: int


class _App:
    """An application compiled for sampling runs and computing expected rounds left."""

    def __init__(self, name: str, spec: AppSpec) -> None:
        self.name = name
        self.levels = spec.quantile_levels
        index = {s: i for i, s in enumerate(spec.stages)}
        self.stages: list[_Stage] = []
        for s in spec.stages:
            st = spec.stage[s]
            onward = [(index[t], p) for t, p in st.next_stages.items() if t != s and p > 0]
            total = sum(p for _, p in onward)
            loops = _IntDraw(st.loops_samples, self.levels)
            values, probs = loops.pmf()
            self.stages.append(_Stage(
                name=s,
                parallelism=_IntDraw(st.parallelism_samples, self.levels),
                loops=loops,
                loop_values=values,
                loop_probs=probs,
                next_stages=tuple((t, p / total) for t, p in onward),
                gap_mean=st.tool_gap_s_mean,
                prompt_quantiles=st.prompt_tokens_quantiles,
                completion_quantiles=st.completion_tokens_quantiles,
                cap=st.max_rounds,
            ))
        n = len(self.stages)
        self.caps = np.array([st.cap for st in self.stages], dtype=np.float64)
        transition = np.zeros((n, n))
        for s, st in enumerate(self.stages):
            for t, p in st.next_stages:
                transition[s, t] = p
        # Expected visits to each stage from entering each stage: sum of transition powers over
        # the longest possible run (every stage entered at most its cap times), finite even where
        # the chain alone would loop forever.
        visits = term = np.eye(n)
        for _ in range(int(self.caps.sum())):
            term = term @ transition
            visits = visits + term
        mean_loops = np.array([
            float(np.minimum(st.loop_values, st.cap) @ st.loop_probs) for st in self.stages
        ])
        # after[s, r]: expected rounds of stage r once a visit to s is over.
        self.after = transition @ (visits * mean_loops)
        self._erl_memo: dict[tuple[int, int, int, tuple[int, ...]], float] = {}

    def sample_rounds(self, u: _Uniforms) -> list[tuple[int, int, float, float]]:
        """One run's rounds as (stage index, parallelism, gap_s, expected_rounds_left)."""
        n = len(self.stages)
        used = [0] * n
        entered = [0] * n
        rounds: list[tuple[int, int, float, float]] = []
        s: int | None = 0
        while s is not None:
            st = self.stages[s]
            entered[s] += 1
            room = st.cap - used[s]
            for k in range(min(st.loops(u()), room)):
                erl = self._expected_rounds_left(s, k, room, tuple(used))
                gap = -st.gap_mean * math.log1p(-u()) if rounds and st.gap_mean > 0 else 0.0
                rounds.append((s, st.parallelism(u()), gap, erl))
                used[s] += 1
            s = self._next_stage(st, used, entered, u())
        return rounds

    def _next_stage(self, st: _Stage, used: list[int], entered: list[int], u: float) -> int | None:
        open_ = [(t, p) for t, p in st.next_stages
                 if used[t] < self.stages[t].cap and entered[t] < self.stages[t].cap]
        if not open_:
            return None
        x = u * sum(p for _, p in open_)
        for t, p in open_:
            x -= p
            if x < 0:
                return t
        return open_[-1][0]  # float rounding left x at ~0

    def _expected_rounds_left(self, s: int, k: int, room: int, used: tuple[int, ...]) -> float:
        """Expected rounds from round ``k`` of a visit to ``s`` (``room`` rounds allowed when the
        visit began, ``used`` rounds per stage so far) to the end of the run, this one included."""
        key = (s, k, room, used)
        cached = self._erl_memo.get(key)
        if cached is not None:
            return cached
        st = self.stages[s]
        loops = np.minimum(st.loop_values, room)
        lasting = loops > k
        probs = st.loop_probs[lasting]
        in_visit = float((loops[lasting] - k) @ probs / probs.sum())
        left = self.caps - np.array(used)
        left[s] -= in_visit  # the rest of this visit uses the stage's cap too
        value = in_visit + float(np.minimum(self.after[s], np.maximum(left, 0.0)).sum())
        self._erl_memo[key] = value
        return value


@dataclass(frozen=True)
class _SingleSource:
    score_class: str
    request_class: str
    lengths: str | tuple[TokenQuantiles | int, TokenQuantiles | int]  # a trace name or distributions
    slo: StreamSLO | DeadlineSLO
    tightness: tuple[float, ...]
    max_tokens: int

    def sample(self, times: list[float], rng: np.random.Generator) -> list[SingleArrival]:
        """One request per arrival time."""
        n = len(times)
        if isinstance(self.lengths, str):
            trace = _load_trace(self.lengths)
            rows = rng.integers(0, len(trace.prompt), n)
            prompt, output = trace.prompt[rows], np.minimum(trace.output[rows], self.max_tokens)
        else:
            prompt = _draw_tokens(self.lengths[0], rng.random(n), None)
            output = _draw_tokens(self.lengths[1], rng.random(n), self.max_tokens)
        slos = [self.slo.scaled(f) for f in self.tightness]
        tight = rng.integers(0, len(slos), n)
        return [
            SingleArrival(
                t, CallSpec(p, o, self.max_tokens, self.request_class), slos[i], self.score_class
            )
            for t, p, o, i in zip(times, prompt.tolist(), output.tolist(), tight.tolist())
        ]


def _draw_tokens(dist: TokenQuantiles | int, u: np.ndarray, cap: int | None) -> np.ndarray:
    if isinstance(dist, int):
        return np.full(len(u), dist if cap is None else min(dist, cap), dtype=np.int64)
    return _quantile_draw(dist.quantiles, dist.resolved_levels(), u, cap)


@dataclass(frozen=True)
class _PipelineSource:
    apps: tuple[tuple[_App, str], ...]  # (app, score class), drawn uniformly per run
    deadline_per_round_s: float | None  # None: the fixed ``slo``
    slo: PipelineSLO | None
    tightness: tuple[float, ...]
    max_tokens: int

    def sample(
        self, times: list[float], runs: list[int], rng: np.random.Generator
    ) -> list[PipelineArrival]:
        """One run per arrival time; ``runs`` are the runs' numbers for their ids."""
        n = len(times)
        which = rng.integers(0, len(self.apps), n).tolist()
        tight = rng.integers(0, len(self.tightness), n).tolist()
        u = _Uniforms(rng)
        shapes = [self.apps[a][0].sample_rounds(u) for a in which]
        # Token counts: one vectorised draw per (app, stage), handed out in order.
        needed: Counter[tuple[int, int]] = Counter()
        for a, shape in zip(which, shapes):
            for s, width, _, _ in shape:
                needed[a, s] += width
        tokens = {}
        for (a, s), count in sorted(needed.items()):
            app = self.apps[a][0]
            st = app.stages[s]
            prompt = _quantile_draw(st.prompt_quantiles, app.levels, rng.random(count))
            output = _quantile_draw(
                st.completion_quantiles, app.levels, rng.random(count), self.max_tokens
            )
            tokens[a, s] = zip(prompt.tolist(), output.tolist())
        slos: dict[float, PipelineSLO] = {}
        arrivals: list[PipelineArrival] = []
        for time, run, a, f, shape in zip(times, runs, which, tight, shapes):
            app, score_class = self.apps[a]
            rounds = []
            for s, width, gap, erl in shape:
                rc = f"{app.name}/{app.stages[s].name}"
                calls = tuple(
                    CallSpec(p, o, self.max_tokens, rc) for p, o in itertools.islice(tokens[a, s], width)
                )
                rounds.append(Round(app.stages[s].name, calls, gap, erl))
            if self.slo is not None:
                deadline = self.slo.deadline_s * self.tightness[f]
            else:
                deadline = self.deadline_per_round_s * len(rounds) * self.tightness[f]
            slo = slos.get(deadline)
            if slo is None:
                slo = slos[deadline] = PipelineSLO(deadline_s=deadline)
            arrivals.append(
                PipelineArrival(time, f"run-{run}", app.name, tuple(rounds), slo, score_class)
            )
        return arrivals


_Source = _SingleSource | _PipelineSource


@functools.lru_cache(maxsize=None)
def _builtin_sources(name: str) -> tuple[tuple[_Source, ...], str]:
    """A built-in workload's classes (equal weights) and the trace whose timestamps it replays."""
    chat = _SingleSource("chat", "chat", "conv", CHAT_SLO, DEFAULT_TIGHTNESS, DEFAULT_MAX_TOKENS)
    tool = _SingleSource("tool", "tool", "code", TOOL_SLO, DEFAULT_TIGHTNESS, DEFAULT_MAX_TOKENS)
    pipeline = _PipelineSource(
        apps=tuple((_builtin_app(a), f"pipeline:{a}") for a in _builtin_app_specs()),
        deadline_per_round_s=DEFAULT_DEADLINE_PER_ROUND_S,
        slo=None,
        tightness=DEFAULT_TIGHTNESS,
        max_tokens=DEFAULT_MAX_TOKENS,
    )
    return {
        "chat": ((chat,), "conv"),
        "tool": ((tool,), "code"),
        "pipeline": ((pipeline,), "conv"),
        "mixed": ((chat, tool, pipeline), "conv"),
    }[name]


def _file_source(spec: SingleClassSpec | PipelineClassSpec) -> _Source:
    if isinstance(spec, SingleClassSpec):
        lengths = spec.lengths or (spec.prompt_tokens, spec.output_tokens)
        return _SingleSource(spec.name, spec.name, lengths, spec.slo, spec.tightness, spec.max_tokens)
    app = _builtin_app(spec.app) if isinstance(spec.app, str) else _App(spec.name, spec.app)
    per_round = spec.deadline_per_round_s
    if spec.slo is None and per_round is None:
        per_round = DEFAULT_DEADLINE_PER_ROUND_S
    return _PipelineSource(((app, spec.name),), per_round, spec.slo, spec.tightness, spec.max_tokens)


def _arrival_times(process: str, trace: str, rate: float, duration: float,
                   rng: np.random.Generator) -> np.ndarray:
    if process == "poisson":
        chunk = int(rate * duration + 6 * math.sqrt(rate * duration)) + 16
        times = np.cumsum(rng.exponential(1 / rate, chunk))
        while times[-1] < duration:  # the chunk covers the duration except with tiny probability
            times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1 / rate, chunk))])
        return times[times < duration]
    count = round(rate * duration)
    stamps = _load_trace(trace).times
    n = len(stamps)
    # The trace repeated end to end, each repeat one mean gap after the last request before it.
    period = stamps[-1] * n / (n - 1)
    index = np.arange(count + 1)
    tiled = stamps[index % n] + period * (index // n)
    # Scaled so the request after the last one lands exactly at ``duration``.
    times = tiled[:count] * (duration / tiled[count]) if count else tiled[:0]
    return times[times < duration]


def _share(n: int, weights: list[float], rng: np.random.Generator) -> np.ndarray:
    """Class of each of ``n`` arrivals: counts proportional to ``weights`` (largest remainder),
    order random."""
    exact = n * np.asarray(weights) / sum(weights)
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(weights)), counts))


def _positive_finite(name: str, value: Any, what: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def build_workload(
    name_or_path: str | os.PathLike[str],
    *,
    rate: float,
    duration: float,
    seed: int,
    arrivals: str | None = None,
) -> Workload:
    """Build a workload: a built-in name (:data:`BUILTIN_WORKLOADS`) or a workload file's path.

    Args:
        name_or_path: ``chat``, ``tool``, ``pipeline``, ``mixed``, or a ``.yaml``/``.yml``/``.json``
            workload file (see ``docs/workload-format.md``).
        rate: arrivals (requests or pipeline runs) per second, all classes together.
        duration: seconds; every arrival is in ``[0, duration)``.
        seed: a non-negative integer; the same arguments always give an identical workload.
        arrivals: ``"poisson"`` or ``"trace"``; ``None`` means the file's ``arrivals`` (``"poisson"``
            for built-ins).

    Raises:
        ValueError: with a one-line message for a bad argument, an unknown name or a bad file.
    """
    rate = _positive_finite("rate", rate, "a positive finite number")
    duration = _positive_finite("duration", duration, "a positive finite number of seconds")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if rate * duration > MAX_ARRIVALS:
        raise ValueError(
            f"rate x duration = {rate * duration:.0f} arrivals, more than the {MAX_ARRIVALS} allowed"
        )
    where = os.fspath(name_or_path)
    if where in BUILTIN_WORKLOADS:
        sources, trace = _builtin_sources(where)
        weights = [1.0] * len(sources)
        name, default_process = where, "poisson"
    elif Path(where).suffix.lower() in WORKLOAD_FILE_SUFFIXES:
        spec = load_workload_file(where)
        sources = tuple(_file_source(c) for c in spec.classes)
        weights = [c.weight for c in spec.classes]
        trace, name, default_process = "conv", spec.name or Path(where).stem, spec.arrivals
    else:
        raise ValueError(
            f"unknown workload {where!r}: expected one of {', '.join(BUILTIN_WORKLOADS)} "
            f"or a workload file ending in {', '.join(WORKLOAD_FILE_SUFFIXES)}"
        )
    process = default_process if arrivals is None else arrivals
    if process not in ARRIVAL_PROCESSES:
        raise ValueError(f"arrivals must be one of {', '.join(ARRIVAL_PROCESSES)}, got {process!r}")

    # Sub-streams: arrival times, class of each arrival, then one per class.
    seeds = np.random.SeedSequence(int(seed)).spawn(2 + len(sources))
    streams = [np.random.default_rng(s) for s in seeds]
    times = _arrival_times(process, trace, rate, duration, streams[0])
    labels = _share(len(times), weights, streams[1])
    is_run = np.array([isinstance(s, _PipelineSource) for s in sources], dtype=bool)[labels]
    run_numbers = np.cumsum(is_run) - 1  # runs numbered in time order across all pipeline classes
    placed: dict[int, Arrival] = {}
    for c, source in enumerate(sources):
        members = np.flatnonzero(labels == c)
        rng = streams[2 + c]
        if isinstance(source, _PipelineSource):
            sampled = source.sample(times[members].tolist(), run_numbers[members].tolist(), rng)
        else:
            sampled = source.sample(times[members].tolist(), rng)
        placed.update(zip(members.tolist(), sampled))
    arrivals_in_order = tuple(placed[i] for i in range(len(times)))
    return Workload(name=name, arrivals=arrivals_in_order, duration=duration, seed=int(seed))


def describe_workloads() -> list[tuple[str, str]]:
    """The built-in workloads as (name, one-line description), for ``jitagent bench --list``."""
    apps = ", ".join(_builtin_app_specs())
    return [
        ("chat", "streaming chat: Azure 2023 conversation trace lengths, stream SLO "
                 "(TTFT 1 s, TPOT 0.1 s) x tightness 1-4"),
        ("tool", "tool calls: Azure 2023 code trace lengths, deadline SLO 10 s x tightness 1-4"),
        ("pipeline", f"multi-call agent runs ({apps}), pipeline SLO 10 s per round x tightness 1-4"),
        ("mixed", "chat, tool and pipeline arrivals in equal numbers (1:1:1)"),
    ]
