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


def test_keys_with_their_whole_allowance_back_are_forgotten_first_and_counts_reported():
    clock = Clock()
    reported = []
    guard = FloodGuard(
        burst=2, per_minute=60, clock=clock, max_keys=3, forgotten=lambda *a: reported.append(a)
    )
    guard.admit("quiet")
    assert [guard.admit("busy")[0] for _ in range(3)] == [True, True, False]
    clock.now += 2.4
    guard.admit("recent")  # one token left, refilling
    clock.now += 0.1
    guard.admit("new")  # the fourth key: quiet and busy are full again, recent is not
    assert list(guard._buckets) == ["recent", "new"]
    assert reported == [("busy", 1)]  # busy's refusal had no later line: reported


def test_without_quiet_keys_the_least_recently_seen_go():
    clock = Clock()
    reported = []
    guard = FloodGuard(
        burst=1, per_minute=0.001, clock=clock, max_keys=10, forgotten=lambda *a: reported.append(a)
    )
    for i in range(10):
        assert guard.admit(f"k{i}")[0] and not guard.admit(f"k{i}")[0]
    assert guard.admit("k0") == (False, 2, pytest.approx(60000))  # k0 seen last now
    guard.admit("x")
    assert reported == [("k1", 1), ("k2", 1)]  # down to 8, then x: 9 kept
    assert list(guard._buckets) == [f"k{i}" for i in range(3, 10)] + ["k0", "x"]


def test_a_flood_of_new_sources_stays_within_max_keys():
    clock = Clock()
    reported = []
    guard = FloodGuard(
        burst=1, per_minute=1, clock=clock, max_keys=100, forgotten=lambda *a: reported.append(a)
    )
    sizes = []
    for i in range(1000):
        guard.admit(f"192.0.2.{i}")
        guard.admit(f"192.0.2.{i}")  # refused once each
        sizes.append(len(guard._buckets))
        clock.now += 0.01
    assert max(sizes) == 100
    assert sum(n for _, n in reported) + len(guard._buckets) == 1000  # no count lost


@pytest.mark.parametrize(("burst", "rate", "keys"), [(0, 1, 9), (1, 0, 9), (1, -1, 9), (1, 1, 0)])
def test_a_guard_without_an_allowance_is_refused(burst, rate, keys):
    with pytest.raises(ValueError, match="burst >= 1, per_minute > 0 and max_keys >= 1"):
        FloodGuard(burst, rate, max_keys=keys)


def test_the_default_allowance_is_the_documented_one():
    guard = FloodGuard()
    assert (guard.burst, guard.rate * 60) == (FLOOD_BURST, FLOOD_PER_MINUTE)


def test_the_hubs_guard_reports_a_forgotten_count_in_the_hubs_log(tmp_path, caplog):
    from testbed_hub.auditing import HubAudit

    audit = HubAudit(str(tmp_path / "audit.log"))
    with caplog.at_level("WARNING", logger="testbed_hub.auditing"):
        audit.guard.forgotten("login_refused 192.0.2.7", 7)
    assert (
        f"Audit log {tmp_path / 'audit.log'}: 7 refused records (login_refused 192.0.2.7) "
        "were counted, not written" in caplog.text
    )
    audit.close()
