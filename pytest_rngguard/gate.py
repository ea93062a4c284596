"""The reproducibility gate in a session: the repeat protocol, and the verdict on each run
of a deterministic test against its earlier runs and the fingerprint file.

:mod:`.reproducibility` records values and compares them (a library of its own); this
module decides what a session compares, when, and what a difference does to the test.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from .compat import rerun_protocol

if TYPE_CHECKING:
    from .reproducibility import Recorder, RepeatOutcome
    from .session import Guard, ItemRun

#: One earlier run of a repeated test: its outcome and what it recorded.
EarlierRun = tuple[str, "Recorder"]


class Verdict(NamedTuple):
    """What the gate found for one run of a deterministic test."""

    #: The run's fingerprint, where fingerprints are written or compared and it passed.
    fingerprint: dict[str, Any] | None
    #: Why it is not reproducible, if it is not.
    failure: RepeatOutcome | None


class Gate:
    """The repeat protocol's state, and the fingerprints to compare with."""

    __slots__ = ("_fingerprints", "_last", "compares", "earlier", "stored", "unlogged")

    def __init__(self, fingerprints: str | None, stored: dict[str, Any] | None) -> None:
        #: Set while an earlier, unlogged run of a repeated test is going on.
        self.unlogged = False
        #: The earlier runs of the repeated test whose last run is going on.
        self.earlier: list[EarlierRun] = []
        #: Whether a deterministic test's run is compared with anything: the earlier runs of
        #: a repeated test, or the fingerprint file (an attribute, not a property: it is read
        #: several times a deterministic test).
        self.compares = bool(fingerprints)
        #: The fingerprint file's content when comparing with it (None: writing or not used).
        self.stored = stored
        self._fingerprints = fingerprints
        #: What the earlier run that has just ended recorded (see ``earlier_run_ended``).
        self._last: Recorder | None = None

    def _compare_with(self, earlier: list[EarlierRun]) -> None:
        self.earlier = earlier
        self.compares = bool(earlier or self._fingerprints)

    def earlier_run_ended(self, run: ItemRun) -> None:
        """An earlier run's teardown is reported: keep what it recorded for the last run."""
        self._last = run.recorder

    def run_repeated(self, item: pytest.Item, nextitem: pytest.Item | None, runs: int) -> bool:
        """Run the test's earlier runs unlogged, then the last one as usual (its call report
        compares them all, see ``check_reproducible``).  False where this pytest cannot
        re-run a test: it then runs once, as usual."""
        protocol = rerun_protocol()
        if protocol is None:
            item.warn(
                pytest.PytestWarning(
                    f"rngguard: this pytest cannot re-run a test; {item.nodeid} runs once"
                )
            )
            return False
        from .reproducibility import Recorder

        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        earlier: list[EarlierRun] = []
        self.unlogged = True
        try:
            for _ in range(runs - 1):
                # The parent as "next item" tears down this test's function-scoped fixtures
                # but keeps the wider ones, so every run gets fresh function fixtures.
                reports = protocol(item, log=False, nextitem=item.parent)
                outcome = next(
                    (r.outcome for r in reports if r.when == "call"),
                    reports[0].outcome,
                )
                recorder, self._last = self._last, None
                earlier.append((outcome, recorder if recorder is not None else Recorder()))
                if item.session.shouldfail or item.session.shouldstop:
                    break
        finally:
            self.unlogged = False
            self._last = None
        self._compare_with(earlier)
        try:
            protocol(item, nextitem=nextitem)
        finally:
            self._compare_with([])
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def judge(self, nodeid: str, outcome: str, recorder: Recorder, seed: int | None) -> Verdict:
        """Compare a test's last run with its earlier runs, and, where it passed, its
        fingerprint with the file's."""
        from .reproducibility import RepeatOutcome, compare_fingerprint, fingerprint, version_note

        earlier = self.earlier
        runs = len(earlier) + 1
        runs_so_far = [*earlier, (outcome, recorder)]
        problem = None
        for number, other in enumerate(runs_so_far[1:], start=2):
            problem = _difference(earlier[0], other, number)
            if problem:
                break
        printed = None
        if problem is None and outcome == "passed" and self._fingerprints:
            printed = fingerprint(recorder, seed)
            stored = self.stored["tests"].get(nodeid) if self.stored is not None else None
            if stored is not None:
                problem = compare_fingerprint(stored, printed)
                note = version_note(self.stored) if problem and self.stored else None
                if problem and note:
                    problem = f"{problem}; note: {note}"
        failure = RepeatOutcome(nodeid, runs, problem) if problem is not None else None
        return Verdict(printed, failure)


def _difference(first: EarlierRun, other: EarlierRun, number: int) -> str | None:
    from .reproducibility import compare_runs

    if first[0] != other[0]:
        return f"run {number} {other[0]} but run 1 {first[0]}"
    return compare_runs(first[1], other[1], number)


def on_report(guard: Guard, item: pytest.Item, run: ItemRun, report: pytest.TestReport) -> None:
    """A deterministic test's call report where it is compared with anything, or a failed
    report: the gate's verdict on its call, and how to re-run it where it failed."""
    assert run.seed is not None
    seed = run.seed
    if report.when == "call":
        check_reproducible(guard, item, run, report)
    if report.failed:
        from .report import rerun_text

        settings = guard.settings
        explicit = not item.config.pluginmanager.has_plugin("rngguard") or bool(
            os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
        )
        report.sections.append(
            (
                "rngguard",
                rerun_text(
                    item.nodeid,
                    seed,
                    base_seed=settings.seed,
                    runs=len(guard.gate.earlier) + 1,
                    fingerprints=settings.fingerprints,
                    load_explicitly=explicit,
                    rootdir=guard.role.rootdir,
                ),
            )
        )


def check_reproducible(
    guard: Guard, item: pytest.Item, run: ItemRun, report: pytest.TestReport
) -> None:
    """Compare this run with the earlier runs of the same test and with the fingerprint
    file; a difference fails the test as not reproducible."""
    gate = guard.gate
    if gate.unlogged or not gate.compares:
        # An earlier run of a repeated test (the last run compares them all), or a test run
        # once without a fingerprint file: nothing to compare.
        return
    from .report import fail_report, not_reproducible_text
    from .xdist import put_fingerprint, put_not_reproducible

    verdict = gate.judge(item.nodeid, report.outcome, run.recorder, run.seed)
    gathering = not guard.role.controller
    if verdict.fingerprint is not None:
        put_fingerprint(report, verdict.fingerprint)
        if gathering:
            guard.results.fingerprints[report.nodeid] = verdict.fingerprint
    failure = verdict.failure
    if failure is None:
        return
    put_not_reproducible(report, failure)
    if gathering:
        guard.results.not_reproducible.append(failure)
    fail_report(report, not_reproducible_text(failure), "rngguard: not reproducible")
