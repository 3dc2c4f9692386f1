"""Every policy decides exactly as before on the recorded scenarios (see ``plan_replay``)."""

import json

import pytest
from plan_replay import DIGESTS, POLICY_FACTORIES, SCENARIOS, replay

RECORDED = json.loads(DIGESTS.read_text())


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_plans_are_the_recorded_ones(scenario):
    replayed = {policy: replay(scenario, policy) for policy in POLICY_FACTORIES}
    changed = [p for p in POLICY_FACTORIES if replayed[p] != RECORDED[scenario.name][p]]
    assert not changed, f"plans changed in {scenario.name} for {changed}: {[replayed[p] for p in changed]}"
