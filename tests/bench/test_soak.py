"""The overload soak, small: every request ends with an outcome and nothing is left behind."""

from __future__ import annotations

import json

import pytest

from soak_harness import OUTCOMES, ClientSoakConfig, SoakConfig, client_soak, soak


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


def test_unique_request_classes_keep_the_estimator_bounded() -> None:
    # Issue 14, finding 5: the request class is the caller's to choose; one of its own per request
    # must not grow the policy's memory with the number of requests.
    result = soak(SoakConfig(policy="jit", requests=2000, checkpoints=(1000, 2000), sample_every=250, timeout_s=30,
                             cancel_within_s=15, unique_classes=True))
    assert sum(result.outcomes.values()) == 2000 and result.outcomes["finished"] > 300
    assert not any(result.leftovers.values())
    assert [c.estimator_classes for c in result.checkpoints] == [256, 256, 256]   # the estimator's limit


def test_a_small_client_soak_with_sync_clients_leaves_nothing_behind() -> None:
    """Calls with request classes of their own, a tenth by short-lived sync clients closed every
    way (sync close, ``with client.sync``, garbage collection): every call answered, and no thread,
    file descriptor, request or policy entry is left; the estimator stays within its class limit."""
    result = client_soak(ClientSoakConfig(requests=400, checkpoints=(200, 400), sync_share=0.1, concurrency=16))
    assert result.calls == 400 and result.outcomes == {"finished": 400} and result.sync_calls > 10
    assert not any(result.leftovers.values())
    assert all(c.estimator_classes <= 256 for c in result.checkpoints)
