"""How a :class:`~jitagent_vllm.JITScheduler` is configured: vLLM's ``additional_config``.

vLLM hands the scheduler class nothing but its own config, so the settings travel in
``additional_config["jitagent"]`` (``--additional-config '{"jitagent": {"policy": "edf"}}'`` for
``vllm serve``, ``AsyncEngineArgs(additional_config=...)`` in-process). Without it the scheduler
runs the ``jit`` policy and learns the engine's step times as it goes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jitagent.scheduling.policies import make_policy
from jitagent.validation import describe_validation_error

__all__ = ["SchedulerSettings", "CONFIG_KEY"]

CONFIG_KEY = "jitagent"


class SchedulerSettings(BaseModel):
    """Settings of the scheduler inside the engine.

    Args:
        policy: the scheduling policy (``jit``, ``fcfs``, ``edf``, ``ltr``, ``las`` or a JIT ablation).
        profile: a step-time profile (a built-in name or a JSON path, as ``jitagent calibrate``
            writes) to start from; without one the scheduler starts from a rough CPU prior.
            Either way it refits the step-time model to the steps it measures.
        learn_step_times: refit the step-time model online from measured steps.
        step_log: a file to append every measured step to (JSON lines of shape, seconds and start time), for
            ``jitagent calibrate``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str = "jit"
    profile: str | None = None
    learn_step_times: bool = True
    step_log: str | None = Field(default=None, min_length=1)

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value == "oracle":
            raise ValueError("the oracle must know every output length in advance: it runs on the simulated engine only")
        make_policy(value)  # ValueError listing the names it knows
        return value

    @classmethod
    def from_additional_config(cls, additional_config: Any) -> SchedulerSettings:
        """Read ``additional_config["jitagent"]``; ValueError naming the bad field."""
        raw = additional_config.get(CONFIG_KEY, {}) if isinstance(additional_config, dict) else {}
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(f"invalid additional_config[{CONFIG_KEY!r}]: {describe_validation_error(exc)}") from None

    def additional_config(self) -> dict[str, Any]:
        """These settings as vLLM's ``additional_config``."""
        return {CONFIG_KEY: self.model_dump(exclude_defaults=True)}
