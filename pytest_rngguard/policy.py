"""When a check of the sources can be skipped: the one place that decides it.

A check compares every source with the last check's states.  Between a test's checks much
of the code that runs is pytest's own (or another plugin's known to leave global random
state alone); where only such code ran since the last check, and the monitor saw no
seeding call and no import meanwhile (``Monitor.idle``), a check would find what the last
one found, and is skipped.  :class:`CheckPolicy` keeps what that takes, changed only by its
named transitions, which the plugin's hooks call at the moments they name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from .monitor import Monitor


class CheckPolicy:
    """Whether the next check can be skipped, and whether a test starts from a baseline the
    monitor already holds."""

    __slots__ = ("_monitor", "fresh", "quiet", "settled")

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor
        #: Whether every hook that runs between a test's checks is pytest's own or another
        #: known-quiet plugin's (see ``quiet_hooks``); found when collection finishes.
        self.quiet = False
        #: Whether only such code ran since the baseline was taken.
        self.fresh = False
        #: Whether the monitor's baseline is the state right after the last test: the next
        #: test's start needs no capture.
        self.settled = False

    def collection_starts(self) -> None:
        """A collector's import runs: the baseline is the collection's, no test's."""
        self.settled = False

    def tests_start(self, quiet: bool) -> None:
        """Collection is over and the monitor has just taken the first test's baseline."""
        self.settled = True
        self.quiet = quiet
        self.fresh = quiet

    def test_starts(self, plain_setups: bool) -> bool:
        """A test's setup starts; whether the baseline must be taken again (something ran
        since the last test's end that the monitor did not follow)."""
        settled = self.settled
        if not settled:
            self.fresh = self.quiet
        self.settled = False
        # A custom node's ``setup`` runs code of its own before the first fixture.
        self.fresh = self.fresh and plain_setups
        return not settled

    def user_code_ahead(self) -> None:
        """Code of the user's runs before the next check (a package's ``setup_module``)."""
        self.fresh = False

    def check_due(self) -> bool:
        """A check is about to run (a fixture starts, the setup ends): whether it must."""
        due = not (self.fresh and self._monitor.idle())
        self.fresh = False
        return due

    def fixture_ends(self, in_pytest: bool) -> None:
        """A fixture's setup has been checked; ``in_pytest``: back in pytest's own code (not
        inside another fixture or the test)."""
        self.fresh = self.quiet and in_pytest

    def test_ends(self) -> None:
        """A test's last check is done and the monitor's baseline is its end state: the
        next test starts from it, and what runs before that test's start (other plugins'
        setup wrappers) is checked as part of its setup."""
        self.settled = True
        self.fresh = self.quiet

    def lost_track(self) -> None:
        """A test's setup failed before this plugin's started: whatever it changed shows
        at the next test's start."""
        self.settled = False


#: The hooks whose implementations run between two checks of a test that nothing but a
#: fixture's own code separates: from the end of one test's teardown to the end of the next
#: one's setup.
_BETWEEN_CHECKS = (
    "pytest_runtest_protocol",
    "pytest_runtest_logstart",
    "pytest_runtest_setup",
    "pytest_fixture_setup",
    "pytest_runtest_teardown",
    "pytest_fixture_post_finalizer",
    "pytest_runtest_makereport",
    "pytest_report_to_serializable",
    "pytest_runtest_logreport",
    "pytest_report_teststatus",
    "pytest_warning_recorded",
    "pytest_exception_interact",
    "pytest_runtest_logfinish",
)
#: Hooks where only the implementations called before this plugin's wrapper count: those
#: inside it run within the checks around a fixture or a teardown.
_WRAPPED = ("pytest_fixture_setup", "pytest_runtest_teardown")


def quiet_plugins() -> tuple[str, ...]:
    """Plugins whose code in those hooks touches no global random state: pytest's own,
    xdist's, Hypothesis's and this one's (and any module ``rngguard_ignore`` names)."""
    from .compat import PYTEST_PACKAGE

    return (f"{PYTEST_PACKAGE}.*", "xdist.*", "_hypothesis_pytestplugin", "pytest_rngguard.*")


def quiet_hooks(config: pytest.Config, ignored: tuple[str, ...], ours: type) -> bool:
    """Whether the code that runs between a test's checks, where no fixture of its own runs,
    is all known to leave global random state alone (``ours``: the class of this plugin's
    per-test hooks).  A plugin registered after collection is not seen: a change it made
    would show at the next check, as the next phase's."""
    from .origins import IgnoreRules

    quiet = IgnoreRules((*quiet_plugins(), *ignored))
    for name in _BETWEEN_CHECKS:
        caller = getattr(config.hook, name, None)
        if caller is None:
            continue
        impls = caller.get_hookimpls()  # called last to first
        if name in _WRAPPED:
            mine = [i for i, impl in enumerate(impls) if isinstance(impl.plugin, ours)]
            impls = impls[mine[-1] + 1 :] if mine else impls
        for impl in impls:
            if isinstance(impl.plugin, ours):
                continue
            if not quiet(str(getattr(impl.function, "__module__", None) or "")):
                return False
    return True
