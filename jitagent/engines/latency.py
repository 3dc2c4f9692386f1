"""Step latency models and engine profiles: how long one engine step takes, and how much KV cache fits.

The simulated engine asks a :class:`LatencyModel` for the duration of every step it runs, described by a
:class:`StepShape`. Two models:

* :class:`RooflineModel`: from a model config and a GPU spec, the larger of the compute time (matmul and
  attention FLOPs against peak FLOP/s times an MFU) and the memory time (weights and KV cache against memory
  bandwidth times an MBU), plus a fixed per-step overhead;
* :class:`FittedModel`: a linear regression of step time on the step's shape, fitted (:meth:`FittedModel.fit`)
  on steps measured on a real vLLM engine; what ``jitagent calibrate`` writes.

A :class:`Profile` bundles a latency model with the engine settings vLLM would use on that hardware and the
KV cache capacity. Profiles are JSON files: the built-in ones live in ``jitagent/engines/profiles``;
:func:`load_profile` takes a built-in name or a path, and raises :class:`ValueError` with a one-line message
naming what is wrong.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass as validated_dataclass

from jitagent.validation import describe_validation_error

__all__ = [
    "StepShape",
    "LatencyModel",
    "RooflineModel",
    "FittedModel",
    "LearnedModel",
    "ModelSpec",
    "GPUSpec",
    "EngineDefaults",
    "Profile",
    "JITSERVE_ARTIFACT",
    "ENGINE_PRESETS",
    "engine_preset",
    "load_profile",
    "list_profiles",
]

logger = logging.getLogger(__name__)

GiB = 1 << 30

_NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Fraction = Annotated[float, Field(gt=0, le=1)]
# Specs are validated dataclasses so that the JSON loader and code that builds them share one set of checks.
_SPEC_CONFIG = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class StepShape:
    """What one engine step computes: the only input of a latency model.

    Attributes:
        prefill_tokens: tokens computed this step by requests still prefilling (recompute after a preemption
            included).
        decode_seqs: requests computing exactly one output token this step.
        context_tokens: KV tokens read this step, summed over the scheduled requests (each request's tokens
            already in the cache plus its new ones).
        attention_pairs: query-key pairs of causal attention, summed over the scheduled requests:
            ``new * cached + new * (new + 1) / 2`` (the engine core counts them the same way).
        prefill_seqs: requests computing a prefill chunk this step (each costs a little on its own,
            whatever its length: measured on vLLM's CPU engine).
    """

    prefill_tokens: int = 0
    decode_seqs: int = 0
    context_tokens: int = 0
    attention_pairs: int = 0
    prefill_seqs: int = 0

    @classmethod
    def of(cls, requests: Iterable[tuple[int, int, bool]]) -> StepShape:
        """The shape of a step that runs ``requests``, each ``(cached_tokens, new_tokens, prefilling)``.

        ``cached_tokens`` are the request's tokens already in the KV cache before the step, ``new_tokens`` those
        it computes this step, and ``prefilling`` whether it is still working through its prompt (a decode
        computes exactly one token and has ``prefilling`` false).
        """
        prefill = decodes = context = pairs = prefill_seqs = 0
        for cached, new, prefilling in requests:
            if prefilling:
                prefill += new
                prefill_seqs += 1
            else:
                decodes += 1
            context += cached + new
            # Causal attention: the i-th new token (1-based) attends to the cached tokens and i new ones.
            pairs += new * cached + new * (new + 1) // 2
        return cls(prefill, decodes, context, pairs, prefill_seqs)

    @classmethod
    def estimate(cls, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> StepShape:
        """The shape a policy's rough description of a step stands for (``SchedulerView.step_time``):
        each decode reads its context once, the prefill is one causal chunk of one request."""
        pairs = context_tokens + prefill_tokens * prefill_tokens // 2
        return cls(prefill_tokens, decode_seqs, context_tokens, pairs, 1 if prefill_tokens else 0)


class LatencyModel(Protocol):
    """Anything that tells the engine how long a step of a given shape takes."""

    def step_time(self, shape: StepShape) -> float:
        """Seconds the step takes. Called once per simulated step: plain float arithmetic only."""
        ...


@validated_dataclass(frozen=True, config=_SPEC_CONFIG)
class ModelSpec:
    """The architecture facts of a decoder-only transformer that its step time and KV cache size depend on."""

    name: str
    n_params: PositiveInt
    n_layers: PositiveInt
    hidden: PositiveInt
    n_heads: PositiveInt
    n_kv_heads: PositiveInt
    head_dim: PositiveInt
    intermediate: PositiveInt
    vocab: PositiveInt
    dtype_bytes: PositiveInt = 2

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights, all read once per step."""
        return self.n_params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of KV cache per token: a key and a value per layer and KV head."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * self.dtype_bytes


@validated_dataclass(frozen=True, config=_SPEC_CONFIG)
class GPUSpec:
    """One accelerator: memory size, dense peak FLOP/s in the model's dtype, memory bandwidth in bytes/s."""

    name: str
    memory_bytes: PositiveInt
    peak_flops: _Positive
    mem_bw: _Positive


@validated_dataclass(frozen=True, config=_SPEC_CONFIG)
class EngineDefaults:
    """The engine settings a deployment would run with: vLLM's names and meanings.

    Attributes:
        token_budget: tokens computed per step at most (vLLM's ``max_num_batched_tokens``).
        max_num_seqs: requests in the running batch at most.
        block_size: tokens per KV cache block.
        gpu_memory_utilization: share of GPU memory the engine may use for weights, activations and KV cache.
    """

    token_budget: PositiveInt
    max_num_seqs: PositiveInt
    block_size: PositiveInt = 16
    gpu_memory_utilization: _Fraction = 0.9

    @model_validator(mode="after")
    def _budget_covers_seqs(self) -> EngineDefaults:
        # vLLM refuses this too: every running request must be able to decode in the same step.
        if self.token_budget < self.max_num_seqs:
            raise ValueError(
                f"token_budget ({self.token_budget}) must be at least max_num_seqs ({self.max_num_seqs})"
            )
        return self


@dataclass(frozen=True, slots=True)
class RooflineModel:
    """Step time from first principles: ``max(compute, memory) + overhead_s``.

    * compute = (2 * params * new tokens + 4 * layers * heads * head_dim * attention pairs)
      / (peak FLOP/s * mfu): the matmuls touch every parameter once per new token, and attention's QK^T and
      PV products cost 2 FLOPs per pair each, per head and layer;
    * memory = (weight bytes + KV bytes per token * (context tokens + new tokens)) / (bandwidth * mbu):
      the weights are read once per step, the context's KV cache read and the new tokens' KV written.

    ``mfu`` and ``mbu`` are whole-model efficiencies for these formulas, not kernel efficiencies: they absorb
    what the formulas leave out (normalisations, activation traffic, the embedding lookup counted as a matmul).
    """

    model: ModelSpec
    gpu: GPUSpec
    mfu: float
    mbu: float
    overhead_s: float
    # Constants of step_time, computed once so that each call is a handful of float operations.
    _flops_per_token: float = field(init=False, repr=False, compare=False)
    _flops_per_pair: float = field(init=False, repr=False, compare=False)
    _s_per_flop: float = field(init=False, repr=False, compare=False)
    _weight_bytes: float = field(init=False, repr=False, compare=False)
    _kv_bytes_per_token: float = field(init=False, repr=False, compare=False)
    _s_per_byte: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("mfu", "mbu"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if not (isinstance(self.overhead_s, (int, float)) and math.isfinite(self.overhead_s) and self.overhead_s >= 0):
            raise ValueError(f"overhead_s must be a non-negative number of seconds, got {self.overhead_s!r}")
        m = self.model
        constants = {
            "_flops_per_token": 2.0 * m.n_params,
            "_flops_per_pair": 4.0 * m.n_layers * m.n_heads * m.head_dim,
            "_s_per_flop": 1.0 / (self.gpu.peak_flops * self.mfu),
            "_weight_bytes": float(m.weight_bytes),
            "_kv_bytes_per_token": float(m.kv_bytes_per_token),
            "_s_per_byte": 1.0 / (self.gpu.mem_bw * self.mbu),
        }
        for name, value in constants.items():
            object.__setattr__(self, name, value)

    def step_time(self, shape: StepShape) -> float:
        """Seconds the step takes; 0.0 for a step that computes no token (the model does not run)."""
        new = shape.prefill_tokens + shape.decode_seqs
        if not new:
            return 0.0
        compute = (self._flops_per_token * new + self._flops_per_pair * shape.attention_pairs) * self._s_per_flop
        memory = (self._weight_bytes + self._kv_bytes_per_token * (shape.context_tokens + new)) * self._s_per_byte
        return (compute if compute > memory else memory) + self.overhead_s


_FIT_TERMS = ("c0", "c_prefill", "c_decode", "c_context", "c_attention", "c_prefill_seq")
# The StepShape field each coefficient multiplies (c0 multiplies 1).
_FIT_FEATURES = {"c_prefill": "prefill_tokens", "c_decode": "decode_seqs", "c_context": "context_tokens",
                 "c_attention": "attention_pairs", "c_prefill_seq": "prefill_seqs"}


@validated_dataclass(frozen=True, slots=True, config=_SPEC_CONFIG)
class FittedModel:
    """Step time as a linear function of the step's shape, with non-negative coefficients (seconds per unit).

    ``c0 + c_prefill * prefill_tokens + c_decode * decode_seqs + c_context * context_tokens
    + c_attention * attention_pairs + c_prefill_seq * prefill_seqs``. The attention term carries attention's
    quadratic cost in the chunk length (a fresh prefill chunk of n tokens has about n^2 / 2 pairs) and its
    growth with a cached prefix; it is 0 for a model fitted without it. The per-prefill-request term is what
    a batch pays for each request it prefills, however short the chunk (0 for older profiles).
    """

    c0: _NonNegative
    c_prefill: _NonNegative
    c_decode: _NonNegative
    c_context: _NonNegative
    c_attention: _NonNegative = 0.0
    c_prefill_seq: _NonNegative = 0.0

    def step_time(self, shape: StepShape) -> float:
        """Seconds the step takes; 0.0 for a step that computes no token (the model does not run)."""
        if not (shape.prefill_tokens or shape.decode_seqs):
            return 0.0
        return (
            self.c0
            + self.c_prefill * shape.prefill_tokens
            + self.c_decode * shape.decode_seqs
            + self.c_context * shape.context_tokens
            + self.c_attention * shape.attention_pairs
            + self.c_prefill_seq * shape.prefill_seqs
        )

    @classmethod
    def fit(cls, samples: Sequence[tuple[StepShape, float]], *, attention: bool = True) -> FittedModel:
        """Fit the coefficients to measured ``(shape, seconds)`` steps.

        Minimises the squared *relative* error, so that short decode steps (most of a run) fit as well as long
        prefill steps, under non-negative coefficients, then scales the coefficients so that measured over
        predicted time averages 1. Relative error alone favours predicting short: a step measured slow by
        noise weighs less than one measured fast, so on noisy steps (a shared CPU: ±20%) the plain fit runs
        about 5% below the mean step time, and a simulator on it runs that much fast. ``attention=False``
        fixes ``c_attention`` at 0, for models whose attention cost is lost in the noise (a tiny CPU model).

        Raises:
            ValueError: too few samples, a non-positive or non-finite time, or an empty step.
        """
        terms = [t for t in _FIT_TERMS if attention or t != "c_attention"]
        n_terms = len(terms)
        if len(samples) < n_terms:
            raise ValueError(f"need at least {n_terms} samples to fit, got {len(samples)}")
        times = np.array([seconds for _, seconds in samples], dtype=float)
        if not np.all(np.isfinite(times) & (times > 0)):
            raise ValueError("every sample's step time must be a positive finite number of seconds")
        if any(not (s.prefill_tokens or s.decode_seqs) for s, _ in samples):
            raise ValueError("a sample computes no token: empty steps take no time and cannot be fitted")
        features = np.array([[getattr(s, _FIT_FEATURES[t]) if t != "c0" else 1 for t in terms] for s, _ in samples],
                            dtype=float)
        coefficients = _nnls(features / times[:, None], np.ones(len(samples)))
        coefficients *= np.mean(times / (features @ coefficients))
        return cls(**dict(zip(terms, map(float, coefficients))))

    def to_json(self) -> str:
        """The coefficients as a JSON object: a profile's ``"coefficients"``; :meth:`from_json` reads it back."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> FittedModel:
        """Read coefficients written by :meth:`to_json`; ValueError (a pydantic ValidationError) if malformed."""
        return _FITTED_ADAPTER.validate_json(text)


_FITTED_ADAPTER: TypeAdapter[FittedModel] = TypeAdapter(FittedModel)


class LearnedModel:
    """A step-time model learned as an engine runs: ``prior`` until enough steps are measured, then a
    :class:`FittedModel` refitted every ``refit_every`` steps to the last ``window`` of them.

    What a policy plans on when no profile knows the machine's speed as it is now: vLLM's JIT
    scheduler feeds it the steps it times (``jitagent_vllm.step_timer``), and the simulated engine
    can feed it the steps it simulates (``SimConfig(learn_step_times=True)``), so that a simulated
    policy follows a changing speed as the real one does, a refit behind.
    """

    def __init__(self, prior: LatencyModel, *, refit_every: int = 128, window: int = 2048) -> None:
        if refit_every < 1 or window < 1:
            raise ValueError(f"refit_every and window must be at least 1, got {refit_every} and {window}")
        self.model: LatencyModel = prior
        self.refit_every = refit_every
        self._samples: deque[tuple[StepShape, float]] = deque(maxlen=window)
        self._since_fit = 0

    def step_time(self, shape: StepShape) -> float:
        return self.model.step_time(shape)

    def estimate(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        """Seconds a step so described should take (a ``SchedulerView.step_time``)."""
        return self.model.step_time(StepShape.estimate(prefill_tokens, decode_seqs, context_tokens))

    def observe(self, shape: StepShape, seconds: float) -> None:
        """A step of ``shape`` took ``seconds``."""
        self._samples.append((shape, seconds))
        self._since_fit += 1
        if self._since_fit >= self.refit_every:
            self._refit()

    def _refit(self) -> None:
        self._since_fit = 0
        samples = list(self._samples)
        # The prefill and decode terms are only identifiable when both kinds of step were seen.
        if sum(s.prefill_tokens >= 64 for s, _ in samples) < 8 or sum(not s.prefill_tokens for s, _ in samples) < 8:
            return
        try:
            self.model = FittedModel.fit(samples)
        except ValueError as exc:  # degenerate samples: keep the model we have
            logger.debug("step-time refit skipped: %s", exc)


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares, ``argmin ||a x - b|| subject to x >= 0``, for a handful of columns.

    The optimum is the unconstrained least-squares solution on its own support, so trying every subset of
    columns and keeping the best non-negative solution is exact; with six columns that is 63 small solves.
    Smaller supports win ties, which keeps collinear terms (decode context and decode attention pairs) at 0
    rather than splitting them arbitrarily.
    """
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0  # an all-zero column: its coefficient stays 0
    a = a / scale  # columns range from 1 to ~1e6 tokens^2: scale them for a well-conditioned solve
    n = a.shape[1]
    best = np.zeros(n)
    best_residual = float(b @ b)
    for size in range(1, n + 1):
        for columns in itertools.combinations(range(n), size):
            sub = a[:, columns]
            x, *_ = np.linalg.lstsq(sub, b, rcond=None)
            if np.any(x < 0):
                continue
            residual = float(np.sum((sub @ x - b) ** 2))
            if residual < best_residual * (1 - 1e-9):
                best_residual = residual
                best = np.zeros(n)
                best[list(columns)] = x
    return best / scale


@dataclass(frozen=True)
class Profile:
    """A deployment the simulator imitates: its latency model, engine settings and KV cache capacity.

    Attributes:
        model, gpu: the hardware and model facts; ``None`` for a fitted profile that states its KV capacity.
        latency: the step latency model.
        defaults: the engine settings vLLM would use there.
        activation_reserve_bytes: GPU memory vLLM keeps out of the KV cache besides the weights (activations
            of a full-budget step, the sampler, CUDA graphs, the CUDA context).
        fixed_kv_capacity_tokens: KV cache size in tokens when given directly (a CPU engine sizes its cache in
            GiB, not as a share of device memory) instead of derived from ``model`` and ``gpu``.
        source: where the numbers come from.
    """

    name: str
    description: str
    model: ModelSpec | None
    gpu: GPUSpec | None
    latency: LatencyModel
    defaults: EngineDefaults
    activation_reserve_bytes: int = 0
    fixed_kv_capacity_tokens: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.fixed_kv_capacity_tokens is None and (self.model is None or self.gpu is None):
            raise ValueError(f"profile {self.name!r} needs either kv_capacity_tokens or both model and gpu")
        if self.fixed_kv_capacity_tokens is not None and self.fixed_kv_capacity_tokens <= 0:
            raise ValueError(f"kv_capacity_tokens must be positive, got {self.fixed_kv_capacity_tokens}")
        latency = self.latency
        if isinstance(latency, RooflineModel) and (latency.model != self.model or latency.gpu != self.gpu):
            raise ValueError(f"profile {self.name!r}: the roofline model's model and gpu differ from the profile's")
        self.kv_capacity_tokens()  # a profile whose model does not fit at its own settings is an error now

    def kv_capacity_tokens(self, gpu_memory_utilization: float | None = None) -> int:
        """Tokens of KV cache the engine can hold: what vLLM sizes its cache to.

        ``floor((memory * utilization - weights - activation reserve) / KV bytes per token)``, utilization
        defaulting to the profile's. A profile with a fixed capacity returns it whatever the utilization.

        Raises:
            ValueError: the utilization is outside (0, 1], or the model does not fit.
        """
        if self.fixed_kv_capacity_tokens is not None:
            return self.fixed_kv_capacity_tokens
        assert self.model is not None and self.gpu is not None  # __post_init__ guarantees it
        util = self.defaults.gpu_memory_utilization if gpu_memory_utilization is None else gpu_memory_utilization
        if not 0 < util <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {util!r}")
        usable = self.gpu.memory_bytes * util
        free = usable - self.model.weight_bytes - self.activation_reserve_bytes
        tokens = math.floor(free / self.model.kv_bytes_per_token)
        if tokens <= 0:
            raise ValueError(
                f"the model does not fit: {self.model.name} needs {self.model.weight_bytes / GiB:.1f} GiB of weights"
                f" and {self.activation_reserve_bytes / GiB:.1f} GiB of activations, {self.gpu.name} at"
                f" gpu_memory_utilization {util} offers {usable / GiB:.1f} GiB"
            )
        return tokens

    def kv_capacity_blocks(self, block_size: int | None = None, gpu_memory_utilization: float | None = None) -> int:
        """Whole KV cache blocks of ``block_size`` tokens (default: the profile's) that fit."""
        size = self.defaults.block_size if block_size is None else block_size
        if size <= 0:
            raise ValueError(f"block_size must be positive, got {size}")
        return self.kv_capacity_tokens(gpu_memory_utilization) // size

    def to_json(self) -> str:
        """This profile as a JSON document that :func:`load_profile` reads back into an equal profile.

        Raises:
            ValueError: the latency model is neither a :class:`RooflineModel` nor a :class:`FittedModel`.
        """
        latency = self.latency
        if isinstance(latency, RooflineModel):
            kind = "roofline"
            parameters = {"efficiency": {"mfu": latency.mfu, "mbu": latency.mbu, "overhead_s": latency.overhead_s}}
        elif isinstance(latency, FittedModel):
            kind, parameters = "fitted", {"coefficients": dataclasses.asdict(latency)}
        else:
            raise ValueError(f"cannot write a {type(latency).__name__} latency model as a profile")
        doc: dict[str, object] = {"name": self.name, "description": self.description, "kind": kind}
        if self.model is not None:
            doc["model"] = dataclasses.asdict(self.model)
        if self.gpu is not None:
            doc["gpu"] = dataclasses.asdict(self.gpu)
        doc.update(parameters)
        doc["engine_defaults"] = dataclasses.asdict(self.defaults)
        doc["activation_reserve_gib"] = self.activation_reserve_bytes / GiB
        if self.fixed_kv_capacity_tokens is not None:
            doc["kv_capacity_tokens"] = self.fixed_kv_capacity_tokens
        doc["source"] = self.source
        return json.dumps(doc, indent=2) + "\n"


#: The JITServe artifact's engine setting: at most 32 running requests, the token budget unchanged.
JITSERVE_ARTIFACT: Mapping[str, int] = MappingProxyType({"max_num_seqs": 32})

#: Overrides of a profile's engine defaults by preset name: "vllm" keeps what vLLM's OpenAI server sets.
ENGINE_PRESETS: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {"vllm": MappingProxyType({}), "jitserve": JITSERVE_ARTIFACT}
)


def engine_preset(profile: Profile, preset: str | None = None) -> EngineDefaults:
    """The engine settings of ``preset`` (a key of :data:`ENGINE_PRESETS`) on ``profile``; ``None`` is "vllm".

    Raises:
        ValueError: an unknown preset.
    """
    if preset is None:
        return profile.defaults
    try:
        overrides = ENGINE_PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown engine preset {preset!r}; choose one of {', '.join(ENGINE_PRESETS)}") from None
    return dataclasses.replace(profile.defaults, **overrides)


class _Efficiency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mfu: _Fraction
    mbu: _Fraction
    overhead_s: _NonNegative


class _ProfileDoc(BaseModel):
    """The profile JSON schema."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    description: str
    kind: Literal["roofline", "fitted"]
    model: ModelSpec | None = None
    gpu: GPUSpec | None = None
    efficiency: _Efficiency | None = None
    coefficients: FittedModel | None = None
    engine_defaults: EngineDefaults
    activation_reserve_gib: _NonNegative = 0.0
    kv_capacity_tokens: PositiveInt | None = None
    source: str = ""

    @model_validator(mode="after")
    def _fields_of_kind(self) -> _ProfileDoc:
        if self.kind == "roofline":
            missing = [k for k in ("model", "gpu", "efficiency") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a roofline profile needs {', '.join(missing)}")
            if self.coefficients is not None or self.kv_capacity_tokens is not None:
                raise ValueError("a roofline profile takes no coefficients or kv_capacity_tokens")
        else:
            if self.coefficients is None:
                raise ValueError("a fitted profile needs coefficients")
            if self.efficiency is not None:
                raise ValueError("a fitted profile takes no efficiency")
            if self.kv_capacity_tokens is None and (self.model is None or self.gpu is None):
                raise ValueError("a fitted profile needs kv_capacity_tokens, or model and gpu to derive it")
        return self

    def build(self) -> Profile:
        if self.kind == "roofline":
            assert self.model is not None and self.gpu is not None and self.efficiency is not None
            latency: LatencyModel = RooflineModel(self.model, self.gpu, **self.efficiency.model_dump())
        else:
            assert self.coefficients is not None
            latency = self.coefficients
        return Profile(
            name=self.name,
            description=self.description,
            model=self.model,
            gpu=self.gpu,
            latency=latency,
            defaults=self.engine_defaults,
            activation_reserve_bytes=round(self.activation_reserve_gib * GiB),
            fixed_kv_capacity_tokens=self.kv_capacity_tokens,
            source=self.source,
        )


def _builtin_profiles() -> dict[str, Traversable]:
    folder = resources.files(__package__).joinpath("profiles")
    return {p.name.removesuffix(".json"): p for p in folder.iterdir() if p.name.endswith(".json")}


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a built-in profile by name (see :func:`list_profiles`) or a profile JSON file by path.

    Raises:
        ValueError: one line naming the problem: an unknown name (listing the built-ins), an unreadable file,
            bad JSON, or a missing, unknown or invalid field.
    """
    builtin = _builtin_profiles()
    key = str(name_or_path)
    source: Traversable | Path
    if key in builtin:
        source, where = builtin[key], f"built-in profile {key!r}"
    elif Path(key).is_file():
        source, where = Path(key), f"profile file {key}"
    else:
        raise ValueError(
            f"unknown profile {key!r}: not a built-in profile ({', '.join(sorted(builtin))}) nor a JSON file"
        )
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {where}: {exc}") from None
    try:
        doc = _ProfileDoc.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"invalid {where}: {describe_validation_error(exc)}") from None
    try:
        return doc.build()
    except ValueError as exc:  # the model does not fit
        raise ValueError(f"invalid {where}: {exc}") from None


def list_profiles() -> list[tuple[str, str]]:
    """The built-in profiles as ``(name, description)``, sorted by name."""
    return sorted((name, load_profile(name).description) for name in _builtin_profiles())
