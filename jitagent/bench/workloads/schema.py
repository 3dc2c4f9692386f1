"""The workload file format.

Workload files (YAML or JSON, schema in ``docs/workload-format.md``) describe custom classes;
:func:`load_workload_file` validates one into a :class:`WorkloadFile`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from jitagent.inputs import MAX_DEPTH, check_nesting, printable, read_input_text
from jitagent.bench.workloads.data import _builtin_app_specs, _pipelines_json
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO, parse_slo
from jitagent.validation import describe_validation_error

WORKLOAD_FILE_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")

DEFAULT_MAX_TOKENS = 4096
DEFAULT_TIGHTNESS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
MAX_STAGE_ROUNDS = 8
DEFAULT_DEADLINE_PER_ROUND_S = 10.0
# Bounds that keep what a file asks for within what the benchmark can hold: token counts (far above
# any model's context), calls per pipeline round, a tool gap's mean, and the file itself.
MAX_TOKEN_COUNT = 10_000_000
MAX_PARALLELISM = 1024
MAX_TOOL_GAP_S = 1e6
MAX_WORKLOAD_FILE_BYTES = 1 << 20


_PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKEN_COUNT)]
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

    parallelism_samples: Annotated[tuple[Annotated[int, Field(ge=1, le=MAX_PARALLELISM)], ...], Field(min_length=1)]
    loops_samples: Annotated[tuple[Annotated[int, Field(ge=0)], ...], Field(min_length=1)]
    next_stages: dict[_StageName, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    tool_gap_s_mean: Annotated[_NonNegativeFloat, Field(le=MAX_TOOL_GAP_S)] = 0.0
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


def _check_scaled(slo: Any, tightness: tuple[float, ...]) -> None:
    """ValueError if ``slo`` times its smallest or largest tightness leaves the positive finite floats."""
    for factor in (min(tightness), max(tightness)):
        slo.scaled(factor)


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
    tightness: _Tightness = Field(DEFAULT_TIGHTNESS, validate_default=True)  # checked against the SLO
    max_tokens: _TokenCount = DEFAULT_MAX_TOKENS

    _parse_slo = field_validator("slo", mode="before")(_single_or_deadline)

    @field_validator("tightness")
    @classmethod
    def _finite_slos(cls, value: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        slo = info.data.get("slo")  # absent when it was invalid: its own error says so
        if slo is not None:
            _check_scaled(slo, value)
        return value

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
    tightness: _Tightness = Field(DEFAULT_TIGHTNESS, validate_default=True)  # checked against the SLO
    max_tokens: _TokenCount = DEFAULT_MAX_TOKENS

    _parse_slo = field_validator("slo", mode="before")(_pipeline_slo)

    @field_validator("tightness")
    @classmethod
    def _finite_deadlines(cls, value: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        """The shortest and the longest run's deadline must be positive finite numbers of seconds."""
        app, slo = info.data.get("app"), info.data.get("slo")
        if slo is not None:
            _check_scaled(slo, value)
        elif app is not None:  # absent when it was invalid: its own error says so
            spec = _builtin_app_specs()[app] if isinstance(app, str) else app
            most_rounds = sum(stage.max_rounds for stage in spec.stage.values())
            per_round = info.data.get("deadline_per_round_s") or DEFAULT_DEADLINE_PER_ROUND_S
            for rounds, factor in ((1, min(value)), (most_rounds, max(value))):
                deadline = per_round * rounds * factor
                if not (math.isfinite(deadline) and deadline > 0):
                    raise ValueError(f"a run of {rounds} round{'s' * (rounds > 1)} at {per_round:g} s per round x "
                                     f"{factor:g} is "
                                     f"{deadline:g} s, not a positive finite number of seconds")
        return value

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

    Only a regular file of at most :data:`MAX_WORKLOAD_FILE_BYTES` is read, nested at most
    :data:`~jitagent.inputs.MAX_DEPTH` levels with at most
    :data:`~jitagent.inputs.MAX_VALUES` values (YAML aliases counted at each use).

    Raises:
        ValueError: with a one-line message naming the file and what is wrong, e.g.
            ``load.yaml: classes[1].slo: invalid SLO: ttft_s: must be a positive finite number ...``.
    """
    where = printable(os.fspath(path))
    file = Path(path)
    if file.suffix.lower() not in WORKLOAD_FILE_SUFFIXES:
        raise ValueError(f"{where}: a workload file must end in {', '.join(WORKLOAD_FILE_SUFFIXES)}")
    text = read_input_text(path, "workload file", MAX_WORKLOAD_FILE_BYTES)
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ValueError(f"{where}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    check_nesting(data, where)
    try:
        return WorkloadFile.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{where}: {printable(describe_validation_error(exc))}") from None  # text from the file


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem
