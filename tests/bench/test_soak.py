"""The overload soak, small: every request ends with an outcome and nothing is left behind."""

from __future__ import annotations

import json

import pytest

from jitagent.bench.soak import OUTCOMES, SoakConfig, soak


@pytest.mark.parametrize("policy, num_blocks", [("fcfs", None), ("jit", None), ("fcfs", 2048)],
                         ids=["fcfs", "jit", "fcfs-small-kv-cache"])
def test_a_small_soak_loses_nothing_and_leaves_nothing(policy: str, num_blocks: int | None) -> None:
    result = soak(SoakConfig(policy=policy, requests=1000, checkpoints=(500, 1000), sample_every=250, timeout_s=30,
                             cancel_within_s=15, num_blocks=num_blocks))
    assert result.issued == 1000 and sum(result.outcomes.values()) == 1000
    assert set(result.outcomes) == set(OUTCOMES) and result.outcomes["finished"] > 0
    assert result.outcomes["cancelled"] > 0 and result.outcomes["timed_out"] > 0   # overloaded: callers gave up
    assert result.cancelled_while["waiting"] > 0 and result.cancelled_while["decoding"] > 0
    if policy == "jit":  # a tenth of the calls asked to be refused rather than served late
        assert result.outcomes["rejected"] > 0
    if num_blocks is not None:  # KV memory runs short: requests are preempted
        assert result.preemptions > 0
    assert not any(result.leftovers.values())
    labels = [c.requests for c in result.checkpoints]
    assert labels == [500, 1000, "end"]
    end = result.checkpoints[-1]
    assert end.live == 0 and 0 < end.memory_bytes < end.peak_memory_bytes
    json.dumps(result.to_json())


def test_soak_config_is_checked() -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        SoakConfig(requests=10, checkpoints=(20,))
    with pytest.raises(ValueError, match="cancel_share"):
        SoakConfig(cancel_share=1.5)
    with pytest.raises(ValueError, match="timeout_s"):
        SoakConfig(timeout_s=0)
