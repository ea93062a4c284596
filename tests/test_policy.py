"""``policy.py`` on its own: when a check of the sources may be skipped."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_rngguard.policy import CheckPolicy


class FakeMonitor:
    """A monitor that has seen a seeding call or an import since the last check, or not."""

    def __init__(self) -> None:
        self.quiet_since_check = True

    def idle(self) -> bool:
        return self.quiet_since_check


@pytest.fixture
def monitor() -> FakeMonitor:
    return FakeMonitor()


def started(monitor: FakeMonitor, *, quiet: bool = True) -> CheckPolicy:
    fake: Any = monitor
    policy = CheckPolicy(fake)
    policy.tests_start(quiet)
    return policy


def test_every_check_is_due_before_the_first_test(monitor: FakeMonitor) -> None:
    fake: Any = monitor
    policy = CheckPolicy(fake)
    assert policy.check_due()


def test_the_end_of_a_setup_that_only_pytest_ran_is_skipped_while_the_monitor_saw_nothing(
    monitor: FakeMonitor,
) -> None:
    policy = started(monitor)
    assert policy.test_starts(plain_setups=True) is False  # the baseline is the last test's
    assert not policy.check_due()
    # Once checked (or skipped), the next stretch has run the test's own code.
    assert policy.check_due()


def test_a_seeding_call_or_an_import_since_the_last_check_makes_it_due(
    monitor: FakeMonitor,
) -> None:
    policy = started(monitor)
    policy.test_starts(plain_setups=True)
    monitor.quiet_since_check = False
    assert policy.check_due()


@pytest.mark.parametrize(
    "between",
    [
        pytest.param(lambda p: p.test_starts(plain_setups=False), id="a custom node's setup"),
        pytest.param(lambda p: (p.test_starts(True), p.user_code_ahead()), id="package setup"),
        pytest.param(lambda p: (p.test_starts(True), p.fixture_ends(False)), id="in a fixture"),
    ],
)
def test_user_code_before_the_next_check_makes_it_due(monitor: FakeMonitor, between: Any) -> None:
    policy = started(monitor)
    between(policy)
    assert policy.check_due()


def test_back_in_pytest_after_a_fixture_the_next_check_may_be_skipped(
    monitor: FakeMonitor,
) -> None:
    policy = started(monitor)
    policy.test_starts(plain_setups=True)
    assert not policy.check_due()  # the first fixture starts
    policy.fixture_ends(in_pytest=True)
    assert not policy.check_due()  # the setup ends


def test_a_session_with_a_noisy_plugin_never_skips(monitor: FakeMonitor) -> None:
    policy = started(monitor, quiet=False)
    for _ in range(2):
        policy.test_starts(plain_setups=True)
        assert policy.check_due()
        policy.fixture_ends(in_pytest=True)
        assert policy.check_due()
        policy.test_ends()


@pytest.mark.parametrize("lost", ["collection_starts", "lost_track"])
def test_the_baseline_is_taken_again_after_code_the_monitor_did_not_follow(
    monitor: FakeMonitor, lost: str
) -> None:
    policy = started(monitor)
    policy.test_starts(plain_setups=True)
    policy.test_ends()
    getattr(policy, lost)()
    assert policy.test_starts(plain_setups=True) is True
    assert not policy.check_due()  # taken again, the baseline is fresh
