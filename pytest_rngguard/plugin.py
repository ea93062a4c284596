"""The pytest plugin: options, markers, fixtures and the hooks that glue the modules together."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest

# Not re-exported by pytest; pytest-rerunfailures re-runs tests through it the same way.
from _pytest.runner import runtestprotocol

from ._version import __version__
from .errors import RNGLeakWarning
from .settings import Settings, add_options, check_sources, given_as, resolve

if TYPE_CHECKING:
    from .determinism import Applied, Recipe
    from .ledger import Ledger, Putback, Targets
    from .monitor import Monitor
    from .report import Leak
    from .reproducibility import Recorder, Rngguard
    from .snapshots import Change

# Only the option and hook definitions load with this module; the guard's modules load in
# ``pytest_configure``, and the marker's, the report's and the reproducibility gate's when
# first needed, so a session pays only for the parts it uses.

MARKERS = (
    "allow_rng_leak(*sources, reason=None): leaks of these sources (all if none named) in "
    "this test are not reported",
    "deterministic(seed=None, *, env=None, torch_flags=True, warn_only=False, repeat=None): "
    "run the test with every RNG seeded and the determinism environment set, then put it all "
    "back; repeat=N runs it N times and compares what it recorded",
)
_DETERMINISTIC_KEYWORDS = frozenset({"seed", "env", "torch_flags", "warn_only", "repeat"})
#: A ``deterministic`` marker's checked arguments: its seed (None: derived from each test's
#: node id), then the rest of its recipe (environment pairs, torch_flags, warn_only).
MarkerArguments = tuple[int | None, tuple[tuple[tuple[str, str], ...], bool, bool]]


#: What one walk up a test's nodes finds (``_survey``): its ``allow_rng_leak`` markers, its
#: closest ``deterministic`` one, and whether every node's ``setup`` is pytest's own.
Survey: TypeAlias = "tuple[list[pytest.Mark], pytest.Mark | None, bool]"


class ItemRun:
    """What the guard knows about the test that is running."""

    __slots__ = (
        "_recorder",
        "allowed",
        "applied",
        "called",
        "fixtures",
        "hypothesis_seed",
        "item",
        "leaks",
        "masked",
        "nodeid",
        "phase",
        "seed",
        "setup_owner",
    )

    def __init__(self, item: pytest.Item) -> None:
        self.item = item
        self.nodeid = item.nodeid
        self.phase = "setup"
        #: The fixtures being set up, innermost last.
        self.fixtures: list[pytest.FixtureDef[Any]] = []
        #: A package pytest sets up for this test first, whose ``setup_module`` runs then:
        #: what the setup's first stretch changes is that package's (its tests' scope).
        self.setup_owner: pytest.Collector | None = None
        self.leaks: list[Leak] = []
        self.allowed: frozenset[str] | None = frozenset()  # None: every source
        self.masked: frozenset[tuple[str, str]] = frozenset()  # (source, detail) the marker set
        self.applied: Applied | None = None
        self.seed: int | None = None
        self.hypothesis_seed: tuple[Any, Any] | None = None
        self.called = False
        self._recorder: Recorder | None = None

    @property
    def recorder(self) -> Recorder:
        """What the test recorded: made on first use, since most tests record nothing."""
        if self._recorder is None:
            from .reproducibility import Recorder

            self._recorder = Recorder()
        return self._recorder


class Guard:
    """Session state, kept in ``config.stash``."""

    __slots__ = (
        "collecting",
        "collection_leaks",
        "compared_ran",
        "current",
        "earlier",
        "entered",
        "fingerprints",
        "fresh",
        "gathering",
        "header_sources",
        "known_sources",
        "last_marker",
        "leaks",
        "ledger",
        "monitor",
        "not_reproducible",
        "package_setups",
        "quiet",
        "rootdir",
        "scoped",
        "seeding",
        "settings",
        "settled",
        "silent",
        "stored",
        "survey",
        "test_files",
        "tests",
        "unsettled",
        "watching",
        "write_errors",
    )

    def __init__(self, settings: Settings, monitor: Monitor, ledger: Ledger, rootdir: str) -> None:
        self.settings = settings
        self.monitor = monitor
        #: Every change not undone yet, with the scope (test, fixture, collector) it belongs to.
        self.ledger = ledger
        #: Collectors whose import changed state, with the states it left: set again for
        #: their own tests (``_enter_scopes``), undone when pytest tears them down.
        self.scoped: dict[pytest.Collector, dict[str, Any]] = {}
        #: The collectors whose scope holds changes now (``scoped`` ones, packages whose
        #: ``setup_module`` changed state), in the order entered.
        self.entered: list[pytest.Collector] = []
        #: The packages whose ``__init__.py`` has a ``setup_module`` (or ``setUpModule``).
        self.package_setups: frozenset[pytest.Collector] = frozenset()
        #: Leaks handed on (to the xdist controller) before their scope ended: their final
        #: put-back is handed on at the end of the session.
        self.unsettled: list[Leak] = []
        #: The files of the collected test modules and conftests (see ``pytest_configure``).
        self.test_files: set[str] = set()
        self.rootdir = rootdir
        #: The test being run, from the start of its setup to its teardown's report.  Kept
        #: here rather than in the item's stash: every stash lookup is a Python call, and
        #: the hooks would make about thirty of them per test.
        self.current: ItemRun | None = None
        #: What ``pytest_runtest_protocol`` found for the test it is about to run.
        self.survey: tuple[pytest.Item, Survey] | None = None
        #: The last ``deterministic`` marker seen, with its checked arguments (``_recipe``).
        self.last_marker: tuple[pytest.Mark, MarkerArguments] | None = None
        #: Set while an earlier, unlogged run of a repeated test is going on; its run stays
        #: ``current`` after its teardown, for ``_run_repeated`` to read.
        self.silent = False
        #: Earlier runs of the repeated test now running: (outcome, recorder) of each.
        self.earlier: list[tuple[str, Recorder]] = []
        #: The collectors being collected, innermost last, with the leaks found so far.
        self.collecting: list[tuple[pytest.Collector, list[Leak]]] = []
        self.collection_leaks: list[Leak] = []
        self.leaks: list[Leak] = []
        self.not_reproducible: list[dict[str, Any]] = []
        self.tests = 0
        #: The monitor's baseline is the state right after the last test: no need to capture.
        self.settled = False
        #: Whether every hook that runs between a test's checks is pytest's own or another
        #: known-quiet plugin's (see ``_quiet_hooks``); found when collection finishes.
        self.quiet = False
        #: Whether only such code ran since the baseline was taken: a check now would find
        #: what the last one found, unless the monitor saw a call (``Monitor.idle``).
        self.fresh = False
        self.header_sources: tuple[str, ...] = ()
        #: Every source's name, checked or not: what ``allow_rng_leak`` accepts.
        self.known_sources: frozenset[str] = frozenset()
        #: What the ``deterministic`` marker seeds: every source, also those that
        #: ``rngguard_sources`` leaves unchecked (the monitor's set when it names none).
        self.seeding = monitor.sources
        #: Whether a deterministic test's run was compared with another (repeats, fingerprints).
        self.compared_ran = False
        #: Fingerprints of this session's passing deterministic tests, by node id.
        self.fingerprints: dict[str, dict[str, Any]] = {}
        #: The fingerprint file's content when comparing with it (None: writing or not used).
        self.stored: dict[str, Any] | None = None
        #: Whether tests are checked (not ``--rngguard=off``); read several times a test.
        self.watching = settings.enabled
        #: Whether this process's own reports are gathered as they are made (not on the
        #: xdist controller, which gathers its workers' reports as they are logged).
        self.gathering = True
        #: Why a file could not be written at the end of the session, by what it holds.
        self.write_errors: dict[str, str] = {}


guard_key = pytest.StashKey[Guard]()


# -- configuration ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    from .ledger import Ledger
    from .monitor import Monitor
    from .origins import IgnoreRules, PathShortener
    from .sources import build_sources
    from .sources.base import import_module_of
    from .sourceset import SourceSet

    settings = resolve(config)
    every = build_sources(settings.env_watched)
    check_sources(settings, [s.name for s in every])
    only = settings.sources
    sources = SourceSet(every if only is None else [s for s in every if s.name in only])
    # A frame of a collected test module or a conftest is always the caller, even where
    # the library's own test suite lives inside the library (NumPy's does).
    test_files: set[str] = {
        str(getattr(plugin, "__file__", ""))
        for plugin in config.pluginmanager.get_plugins()
        if str(getattr(plugin, "__file__", "")).endswith("conftest.py")
    }
    monitor = Monitor(
        sources,
        keep=test_files.__contains__,
        ignore=IgnoreRules(settings.ignore),
        shorten=PathShortener(config.rootpath),
        trace=settings.trace,
        # ``restore=all`` puts draws back too: it needs to know which sources drew.
        keep_advanced=settings.strict or settings.restore == "all",
    )
    guard = Guard(settings, monitor, Ledger(), str(config.rootpath))
    guard.test_files = test_files
    guard.known_sources = frozenset(s.name for s in every)
    if only is not None:
        guard.seeding = SourceSet(every)
        guard.seeding.errors = sources.errors  # a source that fails is shown like any other
        # The marker seeds the unchecked ones too, also when first imported in a test.
        monitor.watch({import_module_of(s) for s in every if s.name not in only})
    guard.header_sources = tuple(s.name for s in monitor.available() if s.seedable)
    if settings.fingerprints_path and not settings.fingerprints_update:
        from .reproducibility import load_fingerprints

        try:
            guard.stored = load_fingerprints(settings.fingerprints_path)
        except (OSError, ValueError) as exc:
            raise pytest.UsageError(
                f"rngguard: {given_as(config, 'fingerprints')}={settings.fingerprints!r} "
                f"cannot be read: {exc}"
            ) from None
    config.stash[guard_key] = guard
    watcher = Watcher(guard)
    config.pluginmanager.register(watcher, "rngguard-watcher")
    config.add_cleanup(lambda: config.pluginmanager.unregister(watcher))
    if getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput"):
        # The xdist controller: its tests' reports come from the workers, through
        # ``pytest_runtest_logreport``; elsewhere ``pytest_runtest_makereport`` gathers them.
        guard.gathering = False
        gatherer = Gatherer(guard)
        config.pluginmanager.register(gatherer, "rngguard-gatherer")
        config.add_cleanup(lambda: config.pluginmanager.unregister(gatherer))
    if settings.enabled:
        refused = monitor.start()
        if refused is not None:
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(f"rngguard: {refused}"), stacklevel=2
            )
        monitor.active = True
        config.add_cleanup(monitor.stop)


def _guard(config: pytest.Config) -> Guard | None:
    return config.stash.get(guard_key, None)


def pytest_report_header(config: pytest.Config) -> str | None:
    guard = _guard(config)
    if guard is None:
        return None
    s = guard.settings
    return (
        f"rngguard: mode={s.mode} strict={'yes' if s.strict else 'no'} seed={s.seed} "
        f"sources={','.join(guard.header_sources) or 'none'}"
    )


# -- collection ------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    guard = _guard(collector.config)
    if guard is None or not guard.watching or not collector.nodeid:
        return (yield)
    if isinstance(collector, pytest.Module):
        guard.test_files.add(str(collector.path))
    monitor = guard.monitor
    guard.settled = False
    if guard.collecting:
        outer, found = guard.collecting[-1]
        found.extend(_collected(guard, outer, monitor.checkpoint()))
    else:
        monitor.reset()
    leaks: list[Leak] = []
    guard.collecting.append((collector, leaks))
    try:
        return (yield)
    finally:
        guard.collecting.pop()
        leaks.extend(_collected(guard, collector, monitor.checkpoint()))
        if guard.ledger.owns(collector):
            # The import's changes are its own tests' alone: put back for whatever is
            # collected or run next, and kept to be set again when its tests run.
            left = dict(monitor.baseline)
            targets = guard.ledger.release(collector)
            guard.scoped[collector] = {name: left[name] for name in targets if name in left}
            _put_back(guard, targets)
        if leaks:
            guard.collection_leaks.extend(leaks)
            if guard.settings.mode == "warn":
                from .report import render_test

                collector.warn(RNGLeakWarning(render_test(collector.nodeid, leaks)))


def pytest_collection_finish(session: pytest.Session) -> None:
    guard = _guard(session.config)
    if guard is not None and guard.watching:
        # The first test starts from here, so what other plugins' setup wrappers do before
        # this plugin's setup hook counts as that test's, as for every later test.
        guard.monitor.reset()
        guard.settled = True
        guard.quiet = _quiet_hooks(session.config, guard.settings.ignore)
        guard.fresh = guard.quiet
        guard.package_setups = _packages_with_setup(session.items)


def _packages_with_setup(items: list[pytest.Item]) -> frozenset[pytest.Collector]:
    """The packages of these tests whose ``__init__.py`` defines a module-level setup:
    pytest calls it when it sets the package up, before the first of its tests' fixtures."""
    found: set[pytest.Collector] = set()
    seen: set[int] = set()
    for item in items:
        node = item.parent
        while node is not None and id(node) not in seen:
            seen.add(id(node))
            if isinstance(node, pytest.Package):
                try:
                    text = (node.path / "__init__.py").read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    text = ""
                if "setup_module" in text or "setUpModule" in text:
                    found.add(node)
            node = node.parent
    return frozenset(found)


def _package_setting_up(guard: Guard, item: pytest.Item) -> pytest.Collector | None:
    """The innermost package with a setup that pytest has still to set up for ``item``."""
    stack = getattr(getattr(item.session, "_setupstate", None), "stack", None)
    for node in reversed(item.listchain()):
        if not isinstance(node, pytest.Collector) or node not in guard.package_setups:
            continue
        if node not in guard.entered and (stack is None or node not in stack):
            return node
    return None


def _collected(guard: Guard, collector: pytest.Collector, changes: list[Change]) -> list[Leak]:
    """Take what a collector's import (a test module's, a conftest's) changed."""
    if guard.monitor.last_ignored:
        _take_ignored(guard, collector)
    if not changes:
        return []
    from .report import COLLECTION

    allowed = _allowed_quietly(guard, collector)
    return _take(
        guard, changes, collector, COLLECTION, collector.nodeid, "collection", None, allowed
    )


def _allowed_quietly(guard: Guard, node: pytest.Collector) -> frozenset[str] | None:
    """What a module's ``allow_rng_leak`` markers (``pytestmark``) allow, for its import;
    a bad marker allows nothing here (its tests report the bad argument)."""
    markers = list(node.iter_markers("allow_rng_leak"))
    if not markers:
        return frozenset()
    try:
        return _allowed(node, markers, guard.known_sources)
    except pytest.fail.Exception:
        return frozenset()


def _take(
    guard: Guard,
    changes: list[Change],
    owner: object,
    scope: str,
    nodeid: str,
    phase: str,
    fixture: str | None,
    allowed: frozenset[str] | None,
    masked: frozenset[tuple[str, str]] = frozenset(),
) -> list[Leak]:
    """The changes that are leaks (flagged, not allowed by a marker, not the marker's own);
    and every change that ``--rngguard-restore`` puts back, noted under the scope that made
    it (``owner``), to be undone when that scope ends."""
    from .ledger import Putback
    from .report import Leak

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
            and (source, "") not in masked
            and (source, change.detail) not in masked
        ):
            putback = putbacks.get(source)
            if putback is None:
                putback = putbacks[source] = Putback()
            leaks.append(Leak(nodeid, phase, fixture, change, putback, scope))
        if restore == "all" or (restore == "leaked" and flagged):
            ledger.record(owner, source, befores.get(source), putback)
    return leaks


def _take_ignored(guard: Guard, owner: object) -> None:
    """What ignored modules (pytest-randomly, Hypothesis) changed is nobody's leak, and
    still undone with the scope it happened in: a test's end puts back its start."""
    if guard.settings.restore != "none":
        for source, before in guard.monitor.last_ignored.items():
            guard.ledger.record(owner, source, before)


def _put_back(guard: Guard, targets: Targets) -> None:
    """Restore what a scope's end puts back, and settle each leak's put-back on what the
    sources then read back as."""
    if not targets:
        return
    monitor = guard.monitor
    states = {name: state for name, (state, _) in targets.items()}
    with monitor.paused():
        restored = monitor.restore(states)
    for name, (_, putbacks) in targets.items():
        why = restored.failed.get(name)
        for putback in putbacks:
            putback.settle(why is None, why or "")


def _release(guard: Guard, owner: object) -> None:
    if id(owner) in guard.ledger.owners:
        _put_back(guard, guard.ledger.release(owner))


# -- running tests ---------------------------------------------------------------------------


def _check(guard: Guard, run: ItemRun) -> None:
    """Check the sources now, and keep what the test (or the fixture being set up, or the
    package pytest has just set up) changed since the last check."""
    monitor = guard.monitor
    changes = monitor.checkpoint()
    package = run.setup_owner
    run.setup_owner = None  # only the first check after its setup is the package's
    if not changes and not monitor.last_ignored:
        return
    from .report import TEST

    owner: object = run
    scope, fixture = TEST, None
    if package is not None:
        owner, scope = package, f"setup_module of package {package.name!r}"
    elif run.fixtures:
        fixturedef = run.fixtures[-1]
        fixture = fixturedef.argname
        if fixturedef.scope != "function":
            # A wider fixture's change holds for every test in its scope, until it is
            # finalised (``pytest_fixture_post_finalizer``).
            owner, scope = fixturedef, f"fixture {fixture!r} ({fixturedef.scope})"
    if monitor.last_ignored:
        _take_ignored(guard, owner)
    if changes:
        found = _take(
            guard, changes, owner, scope, run.nodeid, run.phase, fixture, run.allowed, run.masked
        )
        run.leaks.extend(found)
    if package is not None and guard.ledger.owns(package):
        guard.entered.append(package)  # undone when pytest tears the package down


def _enter_scopes(guard: Guard, run: ItemRun) -> None:
    """Set the state a collector's import left for its tests, as their own scope begins."""
    chain = [node for node in run.item.listchain() if node in guard.scoped]
    entering = [node for node in chain if node not in guard.entered]
    if not entering:
        return
    if guard.watching:
        _check(guard, run)  # what ran since the last test is not overwritten unseen
    monitor, ledger = guard.monitor, guard.ledger
    for node in entering:
        states = guard.scoped[node]
        for name in states:
            ledger.record(node, name, monitor.baseline.get(name))
        with monitor.paused():
            failed = monitor.restore(states).failed
        for name, why in sorted(failed.items()):
            monitor.errors.append(
                f"rngguard: {name} could not be set for the tests of {node.nodeid} as their "
                f"import left it: {why}"
            )
        guard.entered.append(node)


def _leave_scopes(guard: Guard, nextitem: pytest.Item | pytest.Collector | None) -> None:
    """Undo the import states of the collectors pytest has just torn down."""
    staying = set(nextitem.listchain()) if nextitem is not None else set()
    for node in reversed(list(guard.entered)):
        if node not in staying:
            guard.entered.remove(node)
            _release(guard, node)


def _survey(item: pytest.Item) -> Survey:
    """One walk up the test's nodes: its ``allow_rng_leak`` markers and closest
    ``deterministic`` one (what ``item.iter_markers()`` yields, closest first, without its
    generators), and whether setting it and its collectors up runs only pytest's own
    ``setup`` methods (a custom item or collector may run code of its own there)."""
    allow: list[pytest.Mark] = []
    deterministic = None
    own_setups = True
    node: pytest.Item | pytest.Collector | None = item
    while node is not None:
        for mark in node.own_markers:
            name = mark.name
            if name == "allow_rng_leak":
                allow.append(mark)
            elif name == "deterministic" and deterministic is None:
                deterministic = mark
        if own_setups:
            setup = getattr(type(node), "setup", None)
            own_setups = str(getattr(setup, "__module__", "")).startswith("_pytest.")
        node = node.parent
    return allow, deterministic, own_setups


def _allowed(
    item: pytest.Item | pytest.Collector, markers: list[pytest.Mark], known: frozenset[str]
) -> frozenset[str] | None:
    names: set[str] = set()
    for marker in markers:
        extra = set(marker.kwargs) - {"reason"}
        if extra:
            pytest.fail(
                f"{item.nodeid}: allow_rng_leak got unknown keyword(s) {sorted(extra)}; "
                f"it takes source names and reason=",
                pytrace=False,
            )
        if not marker.args:
            return None
        for name in marker.args:
            if not isinstance(name, str) or name not in known:
                pytest.fail(
                    f"{item.nodeid}: allow_rng_leak got {name!r}, which is not a source; "
                    f"known sources are {', '.join(sorted(known))}",
                    pytrace=False,
                )
            names.add(name)
    return frozenset(names)


def _recipe(item: pytest.Item, guard: Guard, marker: pytest.Mark) -> Recipe:
    """The recipe a ``deterministic`` marker asks for.  Its arguments are checked once per
    marker object: the tests that share one (a module's ``pytestmark``, a parametrised
    function's) follow each other, so the last one is kept."""
    from .determinism import Recipe, derive_seed

    cached = guard.last_marker
    if cached is None or cached[0] is not marker:
        cached = guard.last_marker = (marker, _marker_arguments(item, guard, marker))
    seed, rest = cached[1]
    if seed is None:
        seed = derive_seed(guard.settings.seed, item.nodeid)
    return Recipe(seed, *rest)


def _marker_arguments(item: pytest.Item, guard: Guard, marker: pytest.Mark) -> MarkerArguments:
    """A ``deterministic`` marker's seed (None: derived from each test's node id) and the
    rest of its recipe; a bad argument fails the test, naming it."""
    unknown = set(marker.kwargs) - _DETERMINISTIC_KEYWORDS
    if unknown or len(marker.args) > 1 or (marker.args and "seed" in marker.kwargs):
        pytest.fail(
            f"{item.nodeid}: deterministic takes (seed=None, *, env=None, torch_flags=True, "
            f"warn_only=False, repeat=None); got args={marker.args!r} "
            f"kwargs={sorted(marker.kwargs)!r}",
            pytrace=False,
        )
    from .determinism import check_arguments

    seed = marker.args[0] if marker.args else marker.kwargs.get("seed")
    torch_flags = marker.kwargs.get("torch_flags", True)
    warn_only = marker.kwargs.get("warn_only", False)
    try:
        checked_seed, env = check_arguments(seed, marker.kwargs.get("env"), torch_flags, warn_only)
        repeat = marker.kwargs.get("repeat")
        if repeat is not None and (
            isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1
        ):
            raise ValueError(f"repeat must be an integer >= 1, got {repeat!r}")
    except ValueError as exc:
        problem = str(exc)
    else:
        return checked_seed, ((*guard.settings.env_set, *env), torch_flags, warn_only)
    # Outside the handler, so the error is not shown as raised while handling the ValueError.
    pytest.fail(f"{item.nodeid}: deterministic: {problem}", pytrace=False)


def _start_deterministic(item: pytest.Item, guard: Guard, run: ItemRun, recipe: Recipe) -> None:
    from .determinism import apply

    monitor = guard.monitor

    def hold(_: tuple[str, ...] = ()) -> None:
        # Again for a library first imported during the test, seeded as its import finished.
        masked = {(name, "") for name in applied.seeded}
        masked.update(("env", name) for name in applied.env)
        if applied.flags is not None:
            masked.add(("torch.flags", ""))
        run.masked = frozenset(masked)
        if guard.watching:
            monitor.held = frozenset(applied.seeded)

    def record(name: str, before: Any) -> None:
        # The seeds are the test's changes: undone with the rest of them, after a wider
        # fixture set up during the test has had its own change kept.  An unchecked
        # source's seed is nobody else's: ``_finish_deterministic`` puts it back.
        if monitor.source(name) is not None:
            guard.ledger.record(run, name, before)

    listeners = monitor.import_listeners if monitor.watching_imports else None
    with monitor.paused():
        applied = apply(recipe, guard.seeding, adopted=hold, record=record, listeners=listeners)
    run.applied, run.seed = applied, recipe.seed
    if guard.silent or _compared(guard):
        guard.compared_ran = True
    hold()
    function = getattr(item, "obj", None)
    if function is not None and hasattr(function, "hypothesis"):
        # What ``@hypothesis.seed(n)`` does: examples are derived from the test's seed.
        run.hypothesis_seed = (function, getattr(function, "_hypothesis_internal_use_seed", None))
        function._hypothesis_internal_use_seed = recipe.seed
    if guard.watching:
        monitor.reset()


def _finish_deterministic(guard: Guard, run: ItemRun, applied: Applied) -> None:
    """Undo what the recipe set beside the sources (the environment, the flags); the seeded
    sources go back with the test's other changes."""
    if run.hypothesis_seed is not None:
        function, previous = run.hypothesis_seed
        if previous is None:
            del function._hypothesis_internal_use_seed
        else:
            function._hypothesis_internal_use_seed = previous
    from .determinism import undo

    monitor = guard.monitor
    unchecked = {n: state for n, state in applied.states.items() if monitor.source(n) is None}
    with monitor.paused():
        undo(applied, guard.seeding, restore_sources=False)
        if unchecked:
            guard.seeding.restore(unchecked)
    monitor.held = frozenset()


def _stand_in_function() -> Any:
    """The function of pytest's stand-in fixtures for ``parametrize`` arguments: they only
    return ``request.param`` and run no user code, so there is nothing to check around them.
    None where this pytest keeps it elsewhere (they are then checked like any fixture)."""
    for module in ("_pytest.python", "_pytest.fixtures"):
        function = getattr(sys.modules.get(module), "get_direct_param_fixture_func", None)
        if function is not None:
            return function
    return None


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
#: Plugins whose code in those hooks touches no global random state: pytest's own, xdist's,
#: Hypothesis's and this one's (and any module ``rngguard_ignore`` names).
_QUIET_PLUGINS = ("_pytest.*", "xdist.*", "_hypothesis_pytestplugin", "pytest_rngguard.*")
#: Hooks where only the implementations called before this plugin's wrapper count: those
#: inside it run within the checks around a fixture or a teardown.
_WRAPPED = ("pytest_fixture_setup", "pytest_runtest_teardown")


def _quiet_hooks(config: pytest.Config, ignored: tuple[str, ...]) -> bool:
    """Whether the code that runs between a test's checks, where no fixture of its own runs,
    is all known to leave global random state alone.  Then a check there would find what
    the check before it found, and is skipped (see ``Monitor.idle``).  A plugin registered
    after collection is not seen: a change it made would show at the next check, as the
    next phase's."""
    from .origins import IgnoreRules

    quiet = IgnoreRules((*_QUIET_PLUGINS, *ignored))
    for name in _BETWEEN_CHECKS:
        caller = getattr(config.hook, name, None)
        if caller is None:
            continue
        impls = caller.get_hookimpls()  # called last to first
        if name in _WRAPPED:
            ours = [i for i, impl in enumerate(impls) if isinstance(impl.plugin, Watcher)]
            impls = impls[ours[-1] + 1 :] if ours else impls
        for impl in impls:
            if isinstance(impl.plugin, Watcher):
                continue
            if not quiet(str(getattr(impl.function, "__module__", None) or "")):
                return False
    return True


#: ``ItemRun.phase`` once the test's last check is done: nothing is checked after it.
DONE = "done"


class Watcher:
    """The hooks that run for every test.

    A test is watched through as few hooks as will do, since every hook implementation costs
    time on every test: its start in a plain ``pytest_runtest_setup``, the end of its setup
    and of its call in ``pytest_runtest_makereport``, which pytest calls right after each
    phase, and the end of its teardown in a ``pytest_runtest_teardown`` wrapper.  They are
    methods of an object that ``pytest_configure`` registers, as pytest's own logging plugin
    is, so that they reach the guard as an attribute: looking it up in the config's stash
    is a Python call, and these hooks would make some thirty of them per test.
    """

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._stand_in = _stand_in_function()

    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        """Find the test's markers once for all of its runs; run a repeated deterministic
        test's earlier runs unlogged, then the last one as usual (its call report compares
        them all, see ``_check_reproducible``)."""
        guard = self.guard
        survey = _survey(item)
        guard.survey = (item, survey)
        runs = _repeats(survey[1], guard)
        if runs == 1:
            return None
        _run_repeated(item, nextitem, guard, runs)
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Start watching the test.  A plain hook runs inside every wrapper, so a bad marker
        argument raised here fails the setup and leaves the other plugins' wrappers paired."""
        guard = self.guard
        if guard.watching and not guard.settled:
            guard.monitor.reset()
            guard.fresh = guard.quiet
        guard.settled = False
        run = guard.current = ItemRun(item)
        found = guard.survey
        allow, deterministic, own_setups = (
            found[1] if found is not None and found[0] is item else _survey(item)
        )
        guard.fresh = guard.fresh and own_setups
        if allow:
            run.allowed = _allowed(item, allow, guard.known_sources)
        if guard.scoped:
            _enter_scopes(guard, run)
        if guard.package_setups and guard.watching:
            run.setup_owner = _package_setting_up(guard, item)
            if run.setup_owner is not None:
                guard.fresh = False  # its setup runs user code: the next check is needed
        if deterministic is not None:
            _start_deterministic(item, guard, run, _recipe(item, guard, deterministic))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        guard = self.guard
        run = guard.current
        if (
            run is None
            or run.phase == DONE
            or not guard.watching
            or fixturedef.func is self._stand_in
        ):
            return (yield)
        monitor = guard.monitor
        if not (guard.fresh and monitor.idle()):
            _check(guard, run)
        guard.fresh = False
        run.fixtures.append(fixturedef)
        try:
            return (yield)
        finally:
            _check(guard, run)
            run.fixtures.pop()
            # Back in pytest's own code, unless inside another fixture or the test.
            guard.fresh = guard.quiet and not run.fixtures and run.phase == "setup"

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        # A wrapper, unlike the other phases: what the test's teardown leaves must be checked
        # after every other plugin's teardown code, and the leak warning raised inside the
        # teardown (``-W error`` makes it an error of the test).
        guard = self.guard
        run = guard.current
        if run is None or run.item is not item:
            return (yield)
        run.phase = "teardown"
        try:
            return (yield)
        finally:
            _finish(item, guard, run, nextitem)

    def pytest_fixture_post_finalizer(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> None:
        """A wider fixture's changes end with it: checked up to its teardown, then undone."""
        guard = self.guard
        if id(fixturedef) not in guard.ledger.owners:
            return
        run = guard.current
        if run is not None and run.phase != DONE and guard.watching:
            _check(guard, run)
        _release(guard, fixturedef)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        guard = self.guard
        run = guard.current
        if run is None or run.item is not item:
            # The setup failed before this plugin's started (another plugin's hook raised):
            # whatever it changed shows at the next test's start.
            guard.settled = False
            return (yield)
        when = call.when
        if when == "setup":
            if guard.watching and not (guard.fresh and guard.monitor.idle()):
                _check(guard, run)
            guard.fresh = False
            run.phase = "call"
        elif when == "call":
            _end_of_call(guard, run)
        report = yield
        if run.leaks:
            _report_leaks(report, guard, run, when)
        if run.seed is not None:
            report.rngguard_seed = run.seed  # type: ignore[attr-defined]
            if guard.compared_ran:
                report.rngguard_compared = True  # type: ignore[attr-defined]
            if when == "call":
                _check_reproducible(item, guard, run, report)
            if report.failed:
                report.sections.append(("rngguard", _reproduce(item, guard, run.seed)))
        if when == "teardown" and not guard.silent:
            # The test is over: nothing of it is kept (a 50,000-test session would otherwise
            # hold 50,000 runs); an earlier run of a repeated test is left to ``_run_repeated``.
            guard.current = None
            if guard.gathering:
                guard.tests += 1
        return report


def _end_of_call(guard: Guard, run: ItemRun) -> None:
    run.called = True
    if guard.watching:
        _check(guard, run)
    if run.applied is not None and (guard.silent or _compared(guard)):
        # What the runs of a repeated test and the fingerprints compare (an earlier run is
        # silent; a test run once without fingerprints compares nothing).  Only what the
        # recipe seeded: the other sources' states depend on what else ran in this process
        # (which libraries were loaded, by which tests), not on this test.
        seeded = run.applied.seeded
        run.recorder.end_states = guard.monitor.capture(
            [s for s in guard.monitor.available() if s.name in seeded]
        )


def _finish(item: pytest.Item, guard: Guard, run: ItemRun, nextitem: pytest.Item | None) -> None:
    """After teardown: last check, put back what the test changed (and what the import of
    each collector pytest has just torn down changed), and tell the user."""
    monitor = guard.monitor
    if guard.watching:
        _check(guard, run)
    if run.applied is not None:
        _finish_deterministic(guard, run, run.applied)
    run.phase = DONE
    _release(guard, run)
    if guard.entered:
        _leave_scopes(guard, nextitem)
    if not guard.watching:
        return
    lost = monitor.resume_tracing() if guard.settings.trace else None
    if lost is not None:
        item.warn(pytest.PytestWarning(lost))
    if run.applied is None:
        monitor.settle()
    else:
        monitor.reset()  # undoing the recipe moved the environment and flags under it
    # The next test starts from this baseline: the code that runs before its start (other
    # plugins' setup wrappers) is then checked as part of its setup.
    guard.settled = True
    guard.fresh = guard.quiet
    if monitor.errors:
        _show_errors(item, guard)
    if run.leaks and not guard.silent:
        from .report import render_test

        for leak in run.leaks:
            item.user_properties.append(("rngguard_leak", _one_line(leak)))
        if guard.settings.mode == "warn":
            item.warn(RNGLeakWarning(render_test(run.nodeid, run.leaks)))


def _one_line(leak: Leak) -> str:
    from .report import render_change

    return f"{leak.phase}: " + " ".join(render_change(leak, stack=False)[0].split())


def _show_errors(node: pytest.Item | pytest.Collector, guard: Guard) -> None:
    while guard.monitor.errors:
        node.warn(pytest.PytestWarning(guard.monitor.errors.pop(0)))


def _report_leaks(report: pytest.TestReport, guard: Guard, run: ItemRun, when: str) -> None:
    """In ``fail`` mode fail the report; once the test is over, put its leaks on its last
    report (where xdist's controller reads them, each settled as far as it is) and gather
    them."""
    if guard.settings.mode == "fail":
        _fail_report(report, run, when)
    if when != "teardown" or guard.silent:
        return
    report.rngguard_leaks = [leak.to_json() for leak in run.leaks]  # type: ignore[attr-defined]
    if guard.gathering:
        guard.leaks.extend(run.leaks)
    # A wider scope's change is put back when that scope ends, later in the session.
    guard.unsettled.extend(leak for leak in run.leaks if leak.putback.done is None)


def _compared(guard: Guard) -> bool:
    """Whether a deterministic test's run is compared with anything: the earlier runs of a
    repeated test, or the fingerprint file."""
    return bool(guard.earlier or guard.settings.fingerprints)


def _check_reproducible(
    item: pytest.Item, guard: Guard, run: ItemRun, report: pytest.TestReport
) -> None:
    """Compare this run with the earlier runs of the same test and with the fingerprint
    file; a difference fails the test as not reproducible."""
    if guard.silent or not _compared(guard):
        # An earlier run of a repeated test (the last run compares them all), or a test run
        # once without a fingerprint file: nothing to compare.
        return
    from .reproducibility import RepeatOutcome, compare_fingerprint, fingerprint, version_note

    earlier = guard.earlier
    runs = len(earlier) + 1
    problem = None
    for number, (outcome, recorder) in enumerate(earlier[1:], start=2):
        problem = _difference(earlier[0], (outcome, recorder), number)
        if problem:
            break
    if problem is None and earlier:
        problem = _difference(earlier[0], (report.outcome, run.recorder), runs)
    if problem is None and report.passed and guard.settings.fingerprints:
        printed = fingerprint(run.recorder, run.seed)
        report.rngguard_fingerprint = printed  # type: ignore[attr-defined]
        if guard.gathering:
            guard.fingerprints[report.nodeid] = printed
        stored = guard.stored["tests"].get(item.nodeid) if guard.stored is not None else None
        if stored is not None:
            problem = compare_fingerprint(stored, printed)
            note = version_note(guard.stored) if problem and guard.stored else None
            if problem and note:
                problem = f"{problem}; note: {note}"
    if problem is None:
        return
    failure = RepeatOutcome(item.nodeid, runs, problem)
    report.rngguard_not_reproducible = failure.to_json()  # type: ignore[attr-defined]
    if guard.gathering:
        guard.not_reproducible.append(failure.to_json())
    text = f"{item.nodeid} is not reproducible: {problem}"
    if report.passed:
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append(("rngguard: not reproducible", text))


def _difference(
    first: tuple[str, Recorder], other: tuple[str, Recorder], number: int
) -> str | None:
    from .reproducibility import compare_runs

    if first[0] != other[0]:
        return f"run {number} {other[0]} but run 1 {first[0]}"
    return compare_runs(first[1], other[1], number)


def _fail_report(report: pytest.TestReport, run: ItemRun, when: str) -> None:
    if when == "call":
        leaks = [leak for leak in run.leaks if leak.phase in ("setup", "call")]
    elif when == "teardown":
        leaks = [leak for leak in run.leaks if leak.phase == "teardown"]
        if not run.called:
            leaks = run.leaks  # the call never ran: report setup leaks here
    else:
        return
    if not leaks:
        return
    from .report import render_test

    text = render_test(run.nodeid, leaks)
    if report.passed:
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append(("rngguard leaks", text))


def _reproduce(item: pytest.Item, guard: Guard, seed: int) -> str:
    import shlex

    args = [sys.executable, "-m", "pytest", item.nodeid, f"--rngguard-seed={guard.settings.seed}"]
    runs = len(guard.earlier) + 1
    if runs > 1:  # a repeat-gate failure shows up again only when repeated
        args.append(f"--rngguard-repeat={runs}")
    if guard.settings.fingerprints:
        args.append(f"--rngguard-fingerprints={guard.settings.fingerprints}")
    if not item.config.pluginmanager.has_plugin("rngguard") or os.environ.get(
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD"
    ):
        args[3:3] = ["-p", "rngguard"]
    return (
        f"deterministic seed: {seed}\n"
        f"re-run just this test with it (from {guard.rootdir}):\n"
        f"  {shlex.join(args)}"
    )


class Gatherer:
    """Gathers every test's leaks and results from its workers' reports on the xdist
    controller.  Registered per session, since ``pytest_runtest_logreport`` is not given the
    config."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        _gather(self._guard, report)


def _gather(guard: Guard, report: pytest.TestReport) -> None:
    leaks = getattr(report, "rngguard_leaks", None)
    if leaks:
        from .report import Leak

        guard.leaks.extend(Leak.from_json(data) for data in leaks)
    problem = getattr(report, "rngguard_not_reproducible", None)
    if problem:
        guard.not_reproducible.append(problem)
    printed = getattr(report, "rngguard_fingerprint", None)
    if printed is not None:
        guard.fingerprints[report.nodeid] = printed
    if getattr(report, "rngguard_compared", False):
        guard.compared_ran = True
    if report.when == "teardown":
        guard.tests += 1


def _repeats(marker: pytest.Mark | None, guard: Guard) -> int:
    """How many times to run a test: >1 only for deterministic tests under repeat.  A bad
    ``repeat=`` is reported by the test's setup, so it counts as one here."""
    if marker is None:
        return 1
    repeat = marker.kwargs.get("repeat")
    if repeat is None:
        return guard.settings.repeat
    return repeat if isinstance(repeat, int) and not isinstance(repeat, bool) and repeat > 1 else 1


def _run_repeated(item: pytest.Item, nextitem: pytest.Item | None, guard: Guard, runs: int) -> None:
    from .reproducibility import Recorder

    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    earlier: list[tuple[str, Recorder]] = []
    guard.silent = True
    try:
        for _ in range(runs - 1):
            # The parent as "next item" tears down this test's function-scoped fixtures but
            # keeps the wider ones, so every run gets fresh function fixtures.
            reports = runtestprotocol(item, log=False, nextitem=item.parent)  # type: ignore[arg-type]
            outcome = next(
                (r.outcome for r in reports if r.when == "call"),
                reports[0].outcome,
            )
            run, guard.current = guard.current, None
            earlier.append((outcome, run.recorder if run is not None else Recorder()))
            if item.session.shouldfail or item.session.shouldstop:
                break
    finally:
        guard.silent = False
    guard.earlier = earlier
    try:
        runtestprotocol(item, nextitem=nextitem)
    finally:
        guard.earlier = []
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


# -- end of session --------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    guard = _guard(config)
    if guard is None:
        return
    lines = _summary_lines(guard, terminalreporter.verbosity > 0)
    if lines:
        terminalreporter.write_sep("=", "rngguard")
        for line in lines:
            terminalreporter.write_line(line)
    for what, why in guard.write_errors.items():
        terminalreporter.write_line(f"rngguard: error: {what} {why}", red=True, bold=True)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from .report import github_annotations

        for line in github_annotations(
            _all_leaks(guard), guard.settings.mode, guard.not_reproducible
        ):
            terminalreporter.write_line(line)


def _all_leaks(guard: Guard) -> list[Leak]:
    return [*guard.collection_leaks, *guard.leaks]


def _summary_lines(guard: Guard, verbose: bool) -> list[str]:
    lines = []
    leaks = _all_leaks(guard)
    if leaks:
        from .report import render_summary

        tests = len({leak.nodeid for leak in leaks})
        lines.append(
            f"{len(leaks)} leak{'s' if len(leaks) != 1 else ''} of global random state in "
            f"{tests} test{'s' if tests != 1 else ''} or module{'s' if tests != 1 else ''}:"
        )
        lines.extend(render_summary(leaks, verbose))
    for problem in guard.not_reproducible:
        lines.append(f"not reproducible: {problem['nodeid']}: {problem['detail']}")
    if guard.settings.mode == "fail" and guard.collection_leaks:
        # No test failed for them: say why the run fails under its green count.
        modules = sorted({leak.nodeid for leak in guard.collection_leaks})
        lines.append(
            f"error: --rngguard=fail: the import of {', '.join(modules)} changed global "
            f"random state, so the session fails"
        )
    if guard.stored is not None:
        from .reproducibility import version_note

        note = version_note(guard.stored)
        if note:
            lines.append(f"fingerprints: {note}")
        missing = sorted(set(guard.fingerprints) - set(guard.stored["tests"]))
        if missing:
            lines.append(
                f"fingerprints: {len(missing)} deterministic test(s) are not in "
                f"{guard.settings.fingerprints}; add them with --rngguard-fingerprints-update"
            )
    elif (
        guard.settings.fingerprints
        and guard.fingerprints
        and "the fingerprints" not in guard.write_errors
    ):
        lines.append(
            f"fingerprints: wrote {len(guard.fingerprints)} to {guard.settings.fingerprints}"
        )
    if guard.compared_ran and _hash_randomised():
        lines.append(
            "note: this interpreter's str hashes are randomised, which deterministic tests "
            "cannot change at run time: set and dict-of-str iteration order can differ "
            "between runs. Run pytest with PYTHONHASHSEED=0 in the environment to fix it."
        )
    return lines


def _hash_randomised() -> bool:
    """Whether this interpreter's str hashes differ from run to run.  ``sys.flags`` says 1
    for any PYTHONHASHSEED other than 0, a fixed seed included: the variable tells."""
    if not sys.flags.hash_randomization:
        return False
    value = os.environ.get("PYTHONHASHSEED", "random")
    return value == "random" or not value.isdigit()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    guard = _guard(session.config)
    if guard is None:
        return
    run = guard.current
    if run is not None and run.applied is not None and run.phase != DONE:
        # A deterministic test cut short (KeyboardInterrupt, pytest.exit()): its teardown
        # never ran, so its environment, flags and import hook are undone here.
        _finish_deterministic(guard, run, run.applied)
        run.phase = DONE
    # Every fixture and collector is torn down by now: whatever is still recorded (a run
    # cut short) goes back, so that nothing the session's tests changed outlives it.
    if guard.ledger:
        _put_back(guard, guard.ledger.release_all())
    guard.entered.clear()
    guard.scoped.clear()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # An xdist worker: the controller reports; hand it what no test report carries.
        workeroutput["rngguard_collection_leaks"] = [
            leak.to_json() for leak in guard.collection_leaks
        ]
        workeroutput["rngguard_settled"] = [
            [list(leak.key()), leak.putback.done is True, leak.putback.why]
            for leak in guard.unsettled
        ]
        return
    settings = guard.settings
    if settings.mode == "fail" and guard.collection_leaks and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if settings.report_path:
        _write(guard, "the JSON report", settings.report_path, _report(guard))
    if (
        settings.fingerprints_path
        and guard.fingerprints
        and (guard.stored is None or settings.fingerprints_update)
    ):
        from .reproducibility import fingerprint_file

        data = fingerprint_file(guard.fingerprints)
        _write(guard, "the fingerprints", settings.fingerprints_path, data)
    if guard.write_errors and session.exitstatus == pytest.ExitCode.OK:
        # The results are all shown; the exit status says that a file the run was asked
        # for is missing.
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _write(guard: Guard, what: str, path: str, data: dict[str, Any]) -> None:
    """Write one file; a failure (the disk full, the folder gone) costs one line of the
    terminal summary, never the summary itself."""
    from .files import write_json_atomically

    try:
        write_json_atomically(path, data)
    except OSError as exc:
        guard.write_errors[what] = f"could not be written to {path}: {exc.strerror or exc}"


def _report(guard: Guard) -> dict[str, Any]:
    from .report import REPORT_VERSION

    s = guard.settings
    return {
        "version": REPORT_VERSION,
        "plugin_version": __version__,
        "mode": s.mode,
        "strict": s.strict,
        "seed": s.seed,
        "sources": list(guard.header_sources),
        "tests": guard.tests,
        "leaks": [leak.report_json() for leak in _all_leaks(guard)],
        "not_reproducible": list(guard.not_reproducible),
    }


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    """A conftest loaded during collection: its frames are the user's own (see above)."""
    path = str(getattr(plugin, "__file__", ""))
    if path.endswith("conftest.py"):
        for config_plugin in manager.get_plugins():
            if isinstance(config_plugin, Watcher):
                config_plugin.guard.test_files.add(path)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: every worker collects every module, so merge their collection
    leaks once each."""
    guard = _guard(node.config)
    if guard is None:
        return
    from .report import Leak

    output = getattr(node, "workeroutput", {})
    seen = {json.dumps(leak.to_json(), sort_keys=True) for leak in guard.collection_leaks}
    for data in output.get("rngguard_collection_leaks", []):
        key = json.dumps(data, sort_keys=True)
        if key not in seen:
            seen.add(key)
            guard.collection_leaks.append(Leak.from_json(data))
    # What became of the changes of wider scopes, which ended after their report was sent.
    settled = {tuple(key): (done, why) for key, done, why in output.get("rngguard_settled", [])}
    if settled:
        for leak in guard.leaks:
            found = settled.get(leak.key())
            if found is not None and leak.putback.done is None:
                leak.putback.settle(*found)


# -- fixtures --------------------------------------------------------------------------------


def _run_of(request: pytest.FixtureRequest) -> ItemRun | None:
    guard = _guard(request.config)
    run = guard.current if guard is not None else None
    return run if run is not None and run.item is request.node else None


@pytest.fixture
def rngguard_seed(request: pytest.FixtureRequest) -> int:
    """The integer seed of the current test: the one ``deterministic`` applied, or would."""
    guard = _guard(request.config)
    run = _run_of(request)
    if run is not None and run.seed is not None:
        return run.seed
    from .determinism import derive_seed

    base = guard.settings.seed if guard is not None else 0
    return derive_seed(base, request.node.nodeid)


@pytest.fixture
def rngguard(request: pytest.FixtureRequest) -> Rngguard:
    """Helper for the current test: ``snapshot()``, ``record(name, value)``,
    ``assert_no_leak(fn, *args, **kwargs)``."""
    from .reproducibility import Recorder, Rngguard

    run = _run_of(request)
    recorder = run.recorder if run is not None else Recorder()
    return Rngguard(recorder)
