"""Every policy decides exactly as before on the recorded scenarios (see ``plan_digests``: one digest per scenario and policy)."""

import json

import pytest
from plan_digests import DIGESTS, POLICY_FACTORIES, SCENARIOS, digest

RECORDED = json.loads(DIGESTS.read_text())


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_plans_are_the_recorded_ones(scenario):
    digests = {policy: digest(scenario, policy) for policy in POLICY_FACTORIES}
    changed = [p for p in POLICY_FACTORIES if digests[p] != RECORDED[scenario.name][p]]
    assert not changed, f"plans changed in {scenario.name} for {changed}: {[digests[p] for p in changed]}"
