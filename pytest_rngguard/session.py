"""A session's state, split by owner, and the guard that holds the parts.

* :class:`Role` and :class:`~pytest_rngguard.settings.Settings`: frozen at configure.
* :class:`Results`: what the session found, only ever added to, read by the report.
* :class:`ItemRun`: the test that is running; the plugin's ``Watcher`` makes one at the
  start of a test's setup and drops it after its teardown report, and nothing else sets it.
* The check-skipping rules (:mod:`.policy`), the scopes that hold changes (:mod:`.scopes`),
  the markers (:mod:`.markers`) and the reproducibility gate (:mod:`.gate`) own their state
  in their own modules.

Nothing here runs per test but ``ItemRun``'s constructor: the hooks read these objects'
attributes directly, since every call on the hot path costs time on every test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    from .baseline import Baseline, Verdict
    from .determinism import Applied
    from .gate import Gate
    from .ledger import Ledger
    from .markers import MarkReader
    from .monitor import Monitor
    from .policy import CheckPolicy
    from .report import Leak
    from .reproducibility import Recorder, RepeatOutcome
    from .scopes import Scopes
    from .settings import Settings
    from .sourceset import SourceSet


class Role(NamedTuple):
    """What this process does in the session, known at configure."""

    #: The xdist controller: its tests run in the workers, whose reports bring their
    #: results (``xdist.Controller``); every other process gathers its own as they are made.
    controller: bool = False
    #: An xdist worker: its tests' leaks travel to the controller on their reports.
    worker: bool = False
    #: The directory the session runs from (the re-run command names it).
    rootdir: str = ""
    #: The sources available and seedable at the start: the JSON report's.
    sources: tuple[str, ...] = ()
    #: Every source checked: those available at the start, then those checked once their
    #: library is imported (the header's).
    watched: tuple[str, ...] = ()
    later: tuple[str, ...] = ()


class Results:
    """What the session found: only ever added to, and read by the summary and the files."""

    __slots__ = (
        "baseline",
        "collection_leaks",
        "compared",
        "fingerprints",
        "leaks",
        "not_reproducible",
        "tests",
        "unsettled",
        "write_errors",
    )

    def __init__(self) -> None:
        #: Leaks of test modules' (and conftests') imports.
        self.collection_leaks: list[Leak] = []
        #: Leaks of tests, fixtures and package setups, in the order their tests ended.
        self.leaks: list[Leak] = []
        self.not_reproducible: list[RepeatOutcome] = []
        #: Fingerprints of the passing deterministic tests, by node id.
        self.fingerprints: dict[str, dict[str, Any]] = {}
        #: The tests run to their teardown's report.
        self.tests = 0
        #: Whether a deterministic test's run was compared with another (repeats,
        #: fingerprints): the summary then says whether str hashes were randomised.
        self.compared = False
        #: Leaks told (to the xdist controller, on their test's report) before their scope
        #: ended: their put-back is told at the end of the session.
        self.unsettled: list[Leak] = []
        #: Why a file could not be written at the end of the session, by what it holds.
        self.write_errors: dict[str, str] = {}
        #: The leaks against the baseline file, judged once at the end of the session.
        self.baseline: Verdict | None = None

    @property
    def all_leaks(self) -> list[Leak]:
        return [*self.collection_leaks, *self.leaks]


class ItemRun:
    """What the guard knows about the test that is running."""

    __slots__ = (
        "_recorder",
        "allowed",
        "applied",
        "called",
        "fixtures",
        "hypothesis",
        "item",
        "leaks",
        "nodeid",
        "over",
        "phase",
        "recipe_set",
        "seed",
        "setup_owner",
    )

    def __init__(self, item: pytest.Item) -> None:
        self.item = item
        self.nodeid = item.nodeid
        self.phase = "setup"
        #: Whether the test's last check is done: nothing is checked after it.
        self.over = False
        #: The fixtures being set up, innermost last.
        self.fixtures: list[pytest.FixtureDef[Any]] = []
        #: A package pytest sets up for this test first, whose ``setup_module`` runs then:
        #: what the setup's first stretch changes is that package's (its tests' scope).
        self.setup_owner: pytest.Collector | None = None
        self.leaks: list[Leak] = []
        self.allowed: frozenset[str] | None = frozenset()  # None: every source
        #: What a ``deterministic`` recipe set, as (source, detail): never the test's leak.
        self.recipe_set: frozenset[tuple[str, str]] = frozenset()
        self.applied: Applied | None = None
        self.seed: int | None = None
        #: What undoes the seed given to a Hypothesis test (``compat.seed_hypothesis``).
        self.hypothesis: tuple[object, Any] | None = None
        #: Whether the test's call phase ran (its setup passed).
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
    """The session's parts, kept in ``config.stash`` (``plugin.guard_key``); each part owns
    its own state."""

    __slots__ = (
        "baseline",
        "current",
        "gate",
        "ledger",
        "markers",
        "monitor",
        "policy",
        "results",
        "role",
        "scopes",
        "seeding",
        "settings",
        "test_files",
        "watching",
    )

    def __init__(
        self,
        settings: Settings,
        role: Role,
        monitor: Monitor,
        ledger: Ledger,
        *,
        seeding: SourceSet,
        markers: MarkReader,
        scopes: Scopes,
        policy: CheckPolicy,
        gate: Gate,
        test_files: set[str],
        baseline: Baseline | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        #: Whether tests are checked (not ``--rngguard=off``); read several times a test.
        self.watching = settings.enabled
        self.monitor = monitor
        #: Every change not undone yet, with the scope (test, fixture, collector) it belongs to.
        self.ledger = ledger
        #: What the ``deterministic`` marker seeds: every source, also those that
        #: ``rngguard_sources`` leaves unchecked (the monitor's set when it names none).
        self.seeding = seeding
        self.markers = markers
        self.scopes = scopes
        self.policy = policy
        self.gate = gate
        self.results = Results()
        #: The files of the collected test modules and conftests: their frames are always
        #: the caller, even where the library's own test suite lives inside the library.
        self.test_files = test_files
        #: The test being run, from the start of its setup to its teardown's report.  Kept
        #: here rather than in the item's stash: every stash lookup is a Python call, and
        #: the hooks would make about thirty of them per test.
        self.current: ItemRun | None = None
        #: The known leaks (``--rngguard-baseline``), when the session has a baseline file.
        self.baseline = baseline


def build(config: pytest.Config) -> Guard:
    """The guard for this session, from its options: every part made, nothing started."""
    from .gate import Gate
    from .ledger import Ledger
    from .markers import MarkReader
    from .monitor import Monitor
    from .origins import IgnoreRules, PathShortener
    from .policy import CheckPolicy
    from .scopes import Scopes
    from .settings import check_sources, resolve
    from .sources import build_sources
    from .sources.base import import_module_of
    from .sourceset import SourceSet
    from .xdist import is_controller

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
    seeding = monitor.sources
    if only is not None:
        seeding = SourceSet(every)
        seeding.errors = sources.errors  # a source that fails is shown like any other
        # The marker seeds the unchecked ones too, also when first imported in a test.
        monitor.watch({import_module_of(s) for s in every if s.name not in only})
    available = monitor.available()
    role = Role(
        controller=is_controller(config),
        worker=hasattr(config, "workerinput"),
        rootdir=str(config.rootpath),
        sources=tuple(s.name for s in available if s.seedable),
        watched=tuple(s.name for s in available),
        later=tuple(s.name for s in monitor.sources.sources if s not in available),
    )
    ledger = Ledger()
    return Guard(
        settings,
        role,
        monitor,
        ledger,
        seeding=seeding,
        markers=MarkReader(settings, frozenset(s.name for s in every)),
        scopes=Scopes(monitor, ledger),
        policy=CheckPolicy(monitor),
        gate=Gate(settings.fingerprints, _stored_fingerprints(config, settings)),
        test_files=test_files,
        baseline=_baseline(config, settings),
    )


def _stored_fingerprints(config: pytest.Config, settings: Settings) -> dict[str, Any] | None:
    """The fingerprint file's content, when this session compares with it."""
    if not settings.fingerprints_path or settings.fingerprints_update:
        return None
    from .reproducibility import load_fingerprints
    from .settings import given_as

    try:
        return load_fingerprints(settings.fingerprints_path)
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(
            f"rngguard: {given_as(config, 'fingerprints')}={settings.fingerprints!r} "
            f"cannot be read: {exc}"
        ) from None


def _baseline(config: pytest.Config, settings: Settings) -> Baseline | None:
    """The baseline file's entries (none yet where it is to be made), when the session has
    one; a missing file is a usage error unless the session makes it."""
    path = settings.baseline_path
    if path is None or not settings.enabled:
        return None
    from .baseline import Baseline, load
    from .settings import given_as

    try:
        entries = load(path)
    except FileNotFoundError:
        if not settings.baseline_update:
            raise pytest.UsageError(
                f"rngguard: {given_as(config, 'baseline')}={settings.baseline!r}: {path} does "
                f"not exist; record the current leaks in it with --rngguard-baseline-update"
            ) from None
        entries = frozenset()
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(
            f"rngguard: {given_as(config, 'baseline')}={settings.baseline!r} cannot be read: {exc}"
        ) from None
    return Baseline(entries, update=settings.baseline_update)
