"""testbed_hub.auditing.FloodGuard: the allowance that bounds how fast one source's
refused logins and one user's batch records reach the audit trail (a fake clock).
Through a real hub: tests/unit/hub/test_hub_audit_trail.py."""

from __future__ import annotations

import pytest

from testbed_hub.auditing import FLOOD_BURST, FLOOD_PER_MINUTE, FloodGuard


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_guard_admits_a_burst_then_its_rate_and_counts_the_rest():
    clock = Clock()
    guard = FloodGuard(burst=2, per_minute=30, clock=clock)  # one every 2 s
    assert [guard.admit("a")[0] for _ in range(4)] == [True, True, False, False]
    assert guard.admit("a") == (False, 3, 2.0)
    clock.now += 1.0
    assert guard.admit("a") == (False, 4, 1.0)
    clock.now += 1.0
    assert guard.admit("a") == (True, 4, 0.0)  # admitted, with the 4 refused before it
    assert guard.admit("b") == (True, 0, 0.0)
    clock.now += 60
    assert [guard.admit("a")[0] for _ in range(3)] == [True, True, False]  # refilled to 2


def test_the_guard_forgets_quiet_keys_only():
    clock = Clock()
    guard = FloodGuard(burst=1, per_minute=60, clock=clock, max_keys=2)
    guard.admit("quiet")
    assert guard.admit("busy")[0] and not guard.admit("busy")[0]
    clock.now += 5
    guard.admit("new")  # over max_keys: "quiet" (full again) goes, "busy" (refusals) stays
    assert set(guard._buckets) == {"busy", "new"}
    assert guard.admit("busy") == (True, 1, 0.0)


@pytest.mark.parametrize(("burst", "rate"), [(0, 1), (1, 0), (1, -1)])
def test_a_guard_without_an_allowance_is_refused(burst, rate):
    with pytest.raises(ValueError, match="burst >= 1 and per_minute > 0"):
        FloodGuard(burst, rate)


def test_the_default_allowance_is_the_documented_one():
    guard = FloodGuard()
    assert (guard.burst, guard.rate * 60) == (FLOOD_BURST, FLOOD_PER_MINUTE)
