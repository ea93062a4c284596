"""The floor: what any guard built like this one costs before it does its own work.

Loaded by the benchmark (``-p rngguard_floor``, with ``-p no:rngguard``) in two forms, to
show how much of the guard's cost is the shape of the job rather than its code:

* ``floor-hooks``: the five hook implementations the guard runs for every test, with the
  same placement (a plain ``pytest_runtest_protocol`` and ``pytest_runtest_setup``, wrappers
  of ``pytest_fixture_setup``, ``pytest_runtest_teardown`` and ``pytest_runtest_makereport``)
  and empty bodies;
* ``floor-checks`` (``--floor-checks``): the same hooks, plus a bare check at the end of every
  fixture's setup, of the call and of the teardown: the guard's own capture functions for
  every loaded source into a dictionary, compared with the last one.  No run record, no
  markers, no classification, no report: what is left of the guard once everything that
  tells the user anything is taken out;
* ``floor-classify`` (``--floor-checks --floor-classify``): as ``floor-checks``, and each
  source whose state differs is classified by the guard's own ``classify`` (a draw, a
  reseed, a replacement): the least a guard must do to tell a test that draws numbers from
  one that reseeds.

* ``floor-warn`` (``--floor-checks --floor-classify --floor-warn``): as ``floor-classify``,
  and a test whose checks found a change gets one warning of one line (through pytest's
  ``item.warn``, shown in its warnings summary): the least ``--rngguard-strict`` must do on a
  suite whose every test draws, where every test has leaks to tell;
* ``floor-putback`` (``--floor-checks --floor-classify --floor-warn --floor-putback``): as
  ``floor-warn``, and at the end of a test whose checks found a change, every source that
  reads otherwise than at the start of its setup is put back by its own ``restore`` and
  read again to confirm it: the least ``--rngguard-strict`` must do, since it puts back
  the draws it reports (fixtures of wider scopes aside: here everything goes back after
  each test, one restore per source);
* ``floor-recipe`` (``--floor-checks --floor-recipe``, on the suite's marked variant): as
  ``floor-checks``, and around every test the guard's own ``determinism.apply`` and ``undo``
  of the test's recipe (its seed derived from the node id): the least the ``deterministic``
  marker must do, with no monitor, ledger or report around it.

Not part of the plugin and never installed; ``bench/run.py`` and ``bench/instructions.py``
copy it next to the frozen package they measure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from typing import Any

import pytest

_captures: list[tuple[str, Callable[[], Any]]] = []
_sources: list[Any] = []
_classify: dict[str, Callable[[Any, Any], Any]] = {}
_by_name: dict[str, Any] = {}
_seen = -1
_last: dict[str, Any] = {}
changed = 0  # checks that found a difference (read by nobody: it keeps the compare honest)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--floor-checks", action="store_true", help="bench: also check states")
    parser.addoption("--floor-classify", action="store_true", help="bench: and classify changes")
    parser.addoption("--floor-warn", action="store_true", help="bench: and warn of them")
    parser.addoption("--floor-recipe", action="store_true", help="bench: apply/undo the recipe")
    parser.addoption("--floor-putback", action="store_true", help="bench: and put changes back")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("floor_checks"):
        from pytest_rngguard.sources import build_sources

        _sources.extend(build_sources(()))
        _by_name.update((s.name, s) for s in _sources)
        if config.getoption("floor_classify"):
            _classify.update((s.name, s.classify) for s in _sources)
        from pytest_rngguard.compat import stand_in_fixture_function

        checks = _Checks(stand_in_fixture_function())
        checks.warn = bool(config.getoption("floor_warn"))
        checks.putback = bool(config.getoption("floor_putback"))
        if config.getoption("floor_recipe"):
            from pytest_rngguard.sourceset import SourceSet

            config.addinivalue_line("markers", "deterministic: bench floor")
            checks.seeding = SourceSet(build_sources(()))
        config.pluginmanager.register(checks, "rngguard-floor-checks")
    else:
        config.pluginmanager.register(_Hooks(), "rngguard-floor-hooks")


def _check() -> bool:
    global _seen, _last, changed
    if len(sys.modules) != _seen:  # a library loaded since: its source is live now
        _seen = len(sys.modules)
        _captures[:] = [(s.name, s.capture) for s in _sources if s.available()]
    current = {name: capture() for name, capture in _captures}
    found = current != _last
    if found:
        changed += 1
        if _classify:
            for name, after in current.items():
                before = _last.get(name)
                if before is None or before != after:
                    _classify[name](before, after)
    _last = current
    return found


def _put_back(start: dict[str, Any]) -> None:
    """Restore each source that reads otherwise than in ``start``, and read it again."""
    for name, before in start.items():
        if _last.get(name) != before:
            source = _by_name[name]
            source.restore(before)
            _last[name] = now = source.capture()
            if now != before:
                raise AssertionError(f"floor: {name} did not read back as put back")


class _Hooks:
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        return None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        return (yield)


class _Checks(_Hooks):
    def __init__(self, stand_in: Any) -> None:
        self._stand_in = stand_in  # parametrize's stand-in fixtures run no code: not checked
        self.warn = False
        self.putback = False
        self._start: dict[str, Any] = {}  # the states at the start of the test's setup
        self.seeding: Any = None  # the recipe's SourceSet, with --floor-recipe
        self._changed = False
        self._applied: Any = None

    def _checked(self) -> None:
        self._changed = _check() or self._changed

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self._changed = False
        self._start = _last
        if self.seeding is not None and item.get_closest_marker("deterministic") is not None:
            from pytest_rngguard.determinism import Recipe, apply, derive_seed

            self._applied = apply(Recipe(derive_seed(0, item.nodeid)), self.seeding)
            _check()  # the recipe's own changes are not the test's

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        if fixturedef.func is self._stand_in:
            return (yield)
        try:
            return (yield)
        finally:
            self._checked()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            self._checked()
            if self._applied is not None:
                from pytest_rngguard.determinism import undo

                undo(self._applied, self.seeding)
                self._applied = None
                _check()
            if self.warn and self._changed:
                item.warn(UserWarning(f"{item.nodeid} changed global random state"))
            if self.putback and self._changed:
                _put_back(self._start)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        if call.when == "call":
            self._checked()
        return (yield)
