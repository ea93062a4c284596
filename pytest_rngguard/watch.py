"""Checking the sources around each phase of a test and each collector's import, and
turning what changed into leaks, each noted under the scope that made it.

The plugin's hooks call these at the moments pytest gives them; this module decides whose a
change is (the test's, the fixture being set up, a package's setup, an import), which
changes are leaks, and what ``--rngguard-restore`` puts back when that scope ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .errors import RNGLeakWarning
from .ledger import Putback
from .markers import allowed_at_import

# The hot paths' names, imported once: an import inside a function runs the import
# machinery (in Python, ``ModuleSpec.parent``) at every call, several times a test in
# strict mode.  Every session loads this module in pytest_configure, and the report anyway.
from .report import COLLECTION, TEST, Leak, one_line, warning_text

if TYPE_CHECKING:
    from .session import Guard, ItemRun
    from .snapshots import Change


def check(guard: Guard, run: ItemRun) -> None:
    """Check the sources now, and keep what the test (or the fixture being set up, or the
    package pytest has just set up) changed since the last check."""
    monitor = guard.monitor
    changes = monitor.checkpoint()
    package = run.setup_owner
    run.setup_owner = None  # only the first check after its setup is the package's
    if not changes and not monitor.last_ignored:
        return
    owner: object = run
    scope, fixture = TEST, None
    made_by: tuple[str, ...] = ()
    if package is not None:
        owner, scope = package, f"setup_module of package {package.name!r}"
        made_by = ("package", package.nodeid)
    elif run.fixtures:
        fixturedef = run.fixtures[-1]
        fixture = fixturedef.argname
        if fixturedef.scope != "function":
            # A wider fixture's change holds for every test in its scope, until it is
            # finalised (``pytest_fixture_post_finalizer``).
            owner, scope = fixturedef, f"fixture {fixture!r} ({fixturedef.scope})"
            made_by = ("fixture", fixture, fixturedef.scope, fixturedef.baseid)
    if monitor.last_ignored:
        take_ignored(guard, owner)
    if changes:
        found = take(
            guard,
            changes,
            owner,
            scope,
            run.nodeid,
            run.phase,
            fixture,
            run.allowed,
            run.recipe_set,
            made_by,
        )
        if found and run.phase == "teardown" and guard.baseline is not None and not made_by:
            # A wider fixture's teardown runs in the teardown of whichever test comes last
            # in its scope: the baseline names the fixture, as it does for its setup.
            from .baseline import attribute_teardown

            found = attribute_teardown(found, guard.baseline.frames)
        run.leaks.extend(found)
    if package is not None and guard.ledger.owns(package):
        guard.scopes.entered.append(package)  # undone when pytest tears the package down


def collected(guard: Guard, collector: pytest.Collector, changes: list[Change]) -> list[Leak]:
    """Take what a collector's import (a test module's, a conftest's) changed."""
    if guard.monitor.last_ignored:
        take_ignored(guard, collector)
    if not changes:
        return []
    allowed = allowed_at_import(collector, guard.markers.known)
    return take(
        guard, changes, collector, COLLECTION, collector.nodeid, "collection", None, allowed
    )


def take(
    guard: Guard,
    changes: list[Change],
    owner: object,
    scope: str,
    nodeid: str,
    phase: str,
    fixture: str | None,
    allowed: frozenset[str] | None,
    recipe_set: frozenset[tuple[str, str]] = frozenset(),
    made_by: tuple[str, ...] = (),
) -> list[Leak]:
    """The changes that are leaks (flagged, not allowed by a marker, not the marker's own);
    and every change that ``--rngguard-restore`` puts back, noted under the scope that made
    it (``owner``), to be undone when that scope ends."""
    settings = guard.settings
    strict, restore = settings.strict, settings.restore
    befores = guard.monitor.last_from
    ledger = guard.ledger
    leaks = []
    putbacks: dict[str, Putback] = {}
    for change in changes:
        source = change.source
        flagged = change.flagged(strict)
        putback = None
        if (
            flagged
            and allowed is not None
            and source not in allowed
            and (source, "") not in recipe_set
            and (source, change.detail) not in recipe_set
        ):
            putback = putbacks.get(source)
            if putback is None:
                putback = putbacks[source] = Putback()
            leaks.append(Leak(nodeid, phase, fixture, change, putback, scope, made_by))
        if restore == "all" or (restore == "leaked" and flagged):
            ledger.record(owner, source, befores.get(source), putback)
    return leaks


def take_ignored(guard: Guard, owner: object) -> None:
    """What ignored modules (pytest-randomly, Hypothesis) changed is nobody's leak, and
    still undone with the scope it happened in: a test's end puts back its start."""
    if guard.settings.restore != "none":
        for source, before in guard.monitor.last_ignored.items():
            guard.ledger.record(owner, source, before)


def finish(guard: Guard, item: pytest.Item, run: ItemRun, nextitem: pytest.Item | None) -> None:
    """After teardown: last check, put back what the test changed (and what the import of
    each collector pytest has just torn down changed), and tell the user."""
    monitor = guard.monitor
    watching = guard.watching
    if watching:
        check(guard, run)
    if run.applied is not None:
        from .lifecycle import finish_deterministic

        finish_deterministic(guard, run, run.applied)
    run.over = True
    scopes = guard.scopes
    if id(run) in guard.ledger.owners:
        scopes.put_back(guard.ledger.release(run))
    if scopes.entered:
        scopes.leave(nextitem)
    if not watching:
        return
    lost = monitor.resume_tracing() if guard.settings.trace else None
    if lost is not None:
        item.warn(pytest.PytestWarning(lost))
    if run.applied is None:
        monitor.settle()
    else:
        monitor.reset()  # undoing the recipe moved the environment and flags under it
    guard.policy.test_ends()
    if monitor.errors:
        show_errors(item, guard)
    if run.leaks and not guard.gate.unlogged:
        _tell(guard, item, run)


def told(guard: Guard, leaks: list[Leak]) -> list[Leak]:
    """The leaks that warn or fail: with a baseline, the new ones only."""
    if guard.baseline is None:
        return leaks
    return guard.baseline.to_tell(leaks)


def _tell(guard: Guard, item: pytest.Item, run: ItemRun) -> None:
    """A test's leaks, as a JUnit XML property each and, in warn mode, as its warning."""
    leaks = told(guard, run.leaks)
    if not leaks:
        return
    for leak in leaks:
        item.user_properties.append(("rngguard_leak", one_line(leak)))
    if guard.settings.mode == "warn":
        item.warn(RNGLeakWarning(warning_text(run.nodeid, leaks, guard.settings)))


def show_errors(node: pytest.Item | pytest.Collector, guard: Guard) -> None:
    while guard.monitor.errors:
        node.warn(pytest.PytestWarning(guard.monitor.errors.pop(0)))


def keep_end_states(guard: Guard, run: ItemRun) -> None:
    """What the runs of a repeated test and the fingerprints compare, after the call: the
    states of only what the recipe seeded (the other sources' states depend on what else
    ran in this process, which libraries were loaded and by which tests, not on this
    test).  Only for a run compared with anything (``Gate.unlogged``, ``Gate.compares``)."""
    assert run.applied is not None
    seeded = run.applied.seeded
    run.recorder.end_states = guard.monitor.capture(
        [s for s in guard.monitor.available() if s.name in seeded]
    )


def report_leaks(guard: Guard, run: ItemRun, report: pytest.TestReport, when: str) -> None:
    """In ``fail`` mode fail the report; once the test is over, gather its leaks (on an
    xdist worker, put them on its last report, where the controller reads them, each
    settled as far as it is)."""
    if guard.settings.mode == "fail":
        leaks = told(guard, _failing(run, when))
        if leaks:
            from .report import fail_report

            text = warning_text(run.nodeid, leaks, guard.settings)
            fail_report(report, text, "rngguard leaks")
    if when != "teardown" or guard.gate.unlogged:
        return
    if guard.role.worker:
        from .xdist import put_leaks

        put_leaks(report, run.leaks)
    if not guard.role.controller:
        guard.results.leaks.extend(run.leaks)
    # A wider scope's change is put back when that scope ends, later in the session.
    guard.results.unsettled.extend(leak for leak in run.leaks if leak.putback.done is None)


def _failing(run: ItemRun, when: str) -> list[Leak]:
    """The leaks that fail the report of phase ``when`` in ``fail`` mode."""
    if when == "call":
        return [leak for leak in run.leaks if leak.phase in ("setup", "call")]
    if when == "teardown":
        if not run.called:
            return run.leaks  # the call never ran: report setup leaks here
        return [leak for leak in run.leaks if leak.phase == "teardown"]
    return []


def collection_starts(guard: Guard, collector: pytest.Collector) -> list[Leak]:
    """A collector's import is about to run: what ran since the last check belongs to the
    collector around it, if any; returns the list its own leaks are gathered in."""
    if isinstance(collector, pytest.Module):
        guard.test_files.add(str(collector.path))
    monitor = guard.monitor
    guard.policy.collection_starts()
    scopes = guard.scopes
    if scopes.collecting:
        outer, found = scopes.collecting[-1]
        found.extend(collected(guard, outer, monitor.checkpoint()))
    else:
        monitor.reset()
    leaks: list[Leak] = []
    scopes.collecting.append((collector, leaks))
    return leaks


def collection_ends(guard: Guard, collector: pytest.Collector, leaks: list[Leak]) -> None:
    """A collector's import has run: check it, keep its changes for its tests, tell."""
    scopes = guard.scopes
    scopes.collecting.pop()
    leaks.extend(collected(guard, collector, guard.monitor.checkpoint()))
    scopes.import_ended(collector)
    if leaks:
        guard.results.collection_leaks.extend(leaks)
        new = told(guard, leaks)
        if new and guard.settings.mode == "warn":
            text = warning_text(collector.nodeid, new, guard.settings)
            collector.warn(RNGLeakWarning(text))
