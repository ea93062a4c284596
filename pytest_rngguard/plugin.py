"""The pytest plugin: every hook, each a few lines that call the modules doing the work.

Only the option and hook definitions load with this module, so that ``import`` stays cheap;
the guard's modules load in ``pytest_configure`` (see ``session.build``), the report's and
the reproducibility gate's when first needed, so a session pays only for the parts it uses.
The per-test hooks are methods of :class:`Watcher`, an object registered in
``pytest_configure``; the hooks of an xdist controller are ``xdist.Controller``'s.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from .settings import Settings, add_options

if TYPE_CHECKING:
    from .baseline import Baseline
    from .markers import Marks
    from .reproducibility import Rngguard
    from .session import Guard, ItemRun

guard_key = pytest.StashKey["Guard"]()


def _guard(config: pytest.Config) -> Guard | None:
    return config.stash.get(guard_key, None)


# -- configuration ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from .markers import MARKERS
    from .session import build

    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    guard = build(config)
    config.stash[guard_key] = guard
    watcher = Watcher(guard)
    config.pluginmanager.register(watcher, "rngguard-watcher")
    config.add_cleanup(lambda: config.pluginmanager.unregister(watcher))
    if guard.role.controller:
        from .xdist import Controller

        controller = Controller(guard.results, guard.baseline)
        config.pluginmanager.register(controller, "rngguard-gatherer")
        config.add_cleanup(lambda: config.pluginmanager.unregister(controller))
    if guard.baseline is not None:
        tracker = BaselineTracker(guard.baseline, str(config.rootpath))
        config.pluginmanager.register(tracker, "rngguard-baseline")
        config.add_cleanup(lambda: config.pluginmanager.unregister(tracker))
    if guard.watching:
        monitor = guard.monitor
        refused = monitor.start()
        if refused is not None:
            from .report import trace_off_text

            config.issue_config_time_warning(
                pytest.PytestConfigWarning(trace_off_text(refused)), stacklevel=2
            )
        monitor.active = True
        config.add_cleanup(monitor.stop)


def pytest_report_header(config: pytest.Config) -> str | None:
    guard = _guard(config)
    if guard is None or not _header_informs(config, guard):
        return None
    from .report import header

    return header(guard.settings, guard.role.watched, guard.role.later)


def _header_informs(config: pytest.Config, guard: Guard) -> bool:
    """Whether the settings line tells more than that the plugin is installed: a setting
    other than the defaults, or -vv.  Other plugins' pytester-based suites check their inner
    sessions' output by line position, with -v too (pytest-randomly's), and an autoloaded
    plugin must not shift it.  A session that found leaks shows the line at the top of the
    plugin's summary instead."""
    return config.option.verbose > 1 or guard.settings != Settings()


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    """A conftest loaded during collection: its frames are the user's own."""
    path = str(getattr(plugin, "__file__", ""))
    if path.endswith("conftest.py"):
        for config_plugin in manager.get_plugins():
            if isinstance(config_plugin, Watcher):
                config_plugin.guard.test_files.add(path)


# -- collection ------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    guard = _guard(collector.config)
    if guard is None or not guard.watching or not collector.nodeid:
        return (yield)
    from .watch import collection_ends, collection_starts

    leaks = collection_starts(guard, collector)
    try:
        return (yield)
    finally:
        collection_ends(guard, collector, leaks)


def pytest_collection_finish(session: pytest.Session) -> None:
    guard = _guard(session.config)
    if guard is not None and guard.watching:
        from .policy import quiet_hooks

        # The first test starts from here, so what other plugins' setup wrappers do before
        # this plugin's setup hook counts as that test's, as for every later test.
        guard.monitor.reset()
        guard.policy.tests_start(quiet_hooks(session.config, guard.settings.ignore, Watcher))
        guard.scopes.find_package_setups(session.items)


# -- running tests ---------------------------------------------------------------------------


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
        # The modules these hooks call, loaded with the guard: imported with this plugin
        # they would slow every pytest start, imported in the hooks every test.
        from . import gate, lifecycle, session, watch
        from .compat import stand_in_fixture_function
        from .xdist import put_seed

        self.guard = guard
        self._gate = gate
        self._lifecycle = lifecycle
        self._watch = watch
        self._check = watch.check  # bound: it runs several times a test
        self._new_run = session.ItemRun
        self._put_seed = put_seed
        self._stand_in = stand_in_fixture_function()
        #: The marks ``pytest_runtest_protocol`` read for the test it is about to run.
        self._marks: tuple[pytest.Item, Marks] | None = None

    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        """Read the test's markers once for all of its runs; the gate runs a repeated
        deterministic test's runs."""
        guard = self.guard
        marks = guard.markers.read(item)
        self._marks = (item, marks)
        if marks.runs == 1 or not guard.gate.run_repeated(item, nextitem, marks.runs):
            return None
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Start watching the test.  A plain hook runs inside every wrapper, so a bad marker
        argument raised here fails the setup and leaves the other plugins' wrappers paired."""
        guard = self.guard
        found = self._marks
        marks = found[1] if found is not None and found[0] is item else guard.markers.read(item)
        if guard.policy.test_starts(marks.plain_setups) and guard.watching:
            guard.monitor.reset()
        run = guard.current = self._new_run(item)
        if marks.allow_problem is not None:
            pytest.fail(marks.allow_problem, pytrace=False)
        run.allowed = marks.allowed
        scopes = guard.scopes
        if scopes.imports:
            self._enter_scopes(run)
        if scopes.package_setups and guard.watching:
            run.setup_owner = scopes.package_setting_up(item)
            if run.setup_owner is not None:
                guard.policy.user_code_ahead()
        if marks.recipe is not None:
            self._lifecycle.start_deterministic(guard, item, run, marks.recipe)
        elif marks.deterministic_problem is not None:
            pytest.fail(marks.deterministic_problem, pytrace=False)

    def _enter_scopes(self, run: ItemRun) -> None:
        """Set the state a collector's import left for its tests, as their scope begins."""
        guard = self.guard
        entering = guard.scopes.entering(run.item)
        if entering:
            if guard.watching:
                self._check(guard, run)  # what ran since the last test, seen first
            guard.scopes.enter(entering)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        guard = self.guard
        run = guard.current
        if run is None or run.over or not guard.watching or fixturedef.func is self._stand_in:
            return (yield)
        check = self._check
        policy = guard.policy
        if policy.check_due():
            check(guard, run)
        run.fixtures.append(fixturedef)
        try:
            return (yield)
        finally:
            check(guard, run)
            run.fixtures.pop()
            policy.fixture_ends(not run.fixtures and run.phase == "setup")

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
            self._watch.finish(guard, item, run, nextitem)

    def pytest_fixture_post_finalizer(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> None:
        """A wider fixture's changes end with it: checked up to its teardown, then undone."""
        guard = self.guard
        if id(fixturedef) not in guard.ledger.owners:
            return
        run = guard.current
        if run is not None and not run.over and guard.watching:
            self._check(guard, run)
        guard.scopes.release(fixturedef)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        guard = self.guard
        run = guard.current
        if run is None or run.item is not item:
            guard.policy.lost_track()
            return (yield)
        when = call.when
        if when == "setup":
            if guard.watching and guard.policy.check_due():
                self._check(guard, run)
            run.phase = "call"
        elif when == "call":
            self._call_ended(run)
        report = yield
        if run.leaks:
            self._watch.report_leaks(guard, run, report, when)
        if run.seed is not None:
            self._put_seed(report, run.seed, guard.results.compared)
            if (when == "call" and guard.gate.compares) or report.failed:
                self._gate.on_report(guard, item, run, report)
        if when == "teardown":
            # The test is over: nothing of it is kept (a 50,000-test session would otherwise
            # hold 50,000 runs); an earlier run of a repeated test leaves its records.  (No
            # test runs on the xdist controller: its count comes from its workers' reports.)
            guard.current = None
            if guard.gate.unlogged:
                guard.gate.earlier_run_ended(run)
            else:
                guard.results.tests += 1
        return report

    def _call_ended(self, run: ItemRun) -> None:
        guard = self.guard
        run.called = True
        if guard.watching:
            self._check(guard, run)
        # An earlier run is unlogged; a test run once without fingerprints compares nothing.
        if run.applied is not None and (guard.gate.unlogged or guard.gate.compares):
            self._watch.keep_end_states(guard, run)


class BaselineTracker:
    """What a session with a baseline file ran (``baseline.Ran``): only an entry whose
    owner ran can be found to no longer happen.  Registered only with a baseline file, so
    that no other session pays for these hooks."""

    def __init__(self, baseline: Baseline, rootdir: str) -> None:
        from .origins import PathShortener

        self.baseline = baseline
        self.ran = baseline.ran
        self._shorten = PathShortener(rootdir)

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        # Not ``pytest_collectreport``: pytest does not call it for the module of a test
        # named by its node id.
        report = yield
        if report.passed and collector.nodeid:
            self.ran.collectors.add(collector.nodeid)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        result = yield  # a setup that raised did not run to its end: not noted
        if fixturedef.scope != "function":
            code = fixturedef.func.__code__
            owner = ("fixture", fixturedef.argname, fixturedef.scope, fixturedef.baseid)
            self.baseline.fixture_set_up(owner, self._shorten(code.co_filename), code.co_name)
        return result

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.ran.test_report(report.nodeid, report.when, report.passed)


# -- end of session --------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    guard = _guard(config)
    if guard is None:
        return
    from .report import github_annotations, summary_lines, write_error_text

    results = guard.results
    verbose = terminalreporter.verbosity > 0
    lines = summary_lines(results, guard.settings, guard.gate.stored, verbose=verbose)
    if lines:
        terminalreporter.write_sep("=", "rngguard")
        if not _header_informs(config, guard):
            from .report import header

            lines.insert(0, header(guard.settings, guard.role.watched, guard.role.later))
        for line in lines:
            terminalreporter.write_line(line)
    for what, why in results.write_errors.items():
        terminalreporter.write_line(write_error_text(what, why), red=True, bold=True)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from .watch import told

        for line in github_annotations(
            told(guard, results.all_leaks),  # with a baseline, the new ones
            guard.settings.mode,
            results.not_reproducible,
            rootdir=guard.role.rootdir,
            workspace=os.environ.get("GITHUB_WORKSPACE"),
        ):
            terminalreporter.write_line(line)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    guard = _guard(session.config)
    if guard is None:
        return
    run = guard.current
    if run is not None and run.applied is not None and not run.over:
        from .lifecycle import finish_deterministic

        # A deterministic test cut short (KeyboardInterrupt, pytest.exit()): its teardown
        # never ran, so its environment, flags and import hook are undone here.
        finish_deterministic(guard, run, run.applied)
        run.over = True
    # Every fixture and collector is torn down by now: whatever is still recorded (a run
    # cut short) goes back, so that nothing the session's tests changed outlives it.
    guard.scopes.release_all()
    from .xdist import hand_over

    if hand_over(session.config, guard.results, guard.baseline):
        return  # an xdist worker: the controller reports
    settings, results = guard.settings, guard.results
    if guard.baseline is not None:
        stopped = session.shouldfail or session.shouldstop
        guard.baseline.ran.stopped = bool(stopped) or exitstatus == pytest.ExitCode.INTERRUPTED
        _judge(guard, guard.baseline)
    from .report import failing_collection_leaks

    if settings.mode == "fail" and failing_collection_leaks(results) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if settings.report_path:
        from .report import json_report, with_baseline

        data = json_report(results, settings, guard.role.sources)
        data = with_baseline(data, results.all_leaks, results.baseline, settings.baseline)
        _write(guard, "the JSON report", settings.report_path, data)
    if (
        settings.fingerprints_path
        and results.fingerprints
        and (guard.gate.stored is None or settings.fingerprints_update)
    ):
        from .reproducibility import fingerprint_file

        data = fingerprint_file(results.fingerprints)
        _write(guard, "the fingerprints", settings.fingerprints_path, data)
    if results.write_errors and session.exitstatus == pytest.ExitCode.OK:
        # The results are all shown; the exit status says that a file the run was asked
        # for is missing.
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _judge(guard: Guard, baseline: Baseline) -> None:
    """The session's leaks against the baseline; the file rewritten where it is updated."""
    from .baseline import file_json, judge

    settings, results = guard.settings, guard.results
    verdict = judge(
        baseline.entries,
        results.all_leaks,
        baseline.ran,
        [source.name for source in guard.monitor.sources.sources],
        strict=settings.strict,
        update=baseline.update,
    )
    results.baseline = verdict
    if verdict.written is not None and settings.baseline_path is not None:
        _write(guard, "the baseline", settings.baseline_path, file_json(verdict.written))


def _write(guard: Guard, what: str, path: str, data: dict[str, Any]) -> None:
    """Write one file; a failure (the disk full, the folder gone) costs one line of the
    terminal summary, never the summary itself."""
    from .files import write_json_atomically

    try:
        write_json_atomically(path, data)
    except OSError as exc:
        guard.results.write_errors[what] = f"could not be written to {path}: {exc.strerror or exc}"


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
