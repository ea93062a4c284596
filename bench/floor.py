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
_seen = -1
_last: dict[str, Any] = {}
changed = 0  # checks that found a difference (read by nobody: it keeps the compare honest)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--floor-checks", action="store_true", help="bench: also check states")
    parser.addoption("--floor-classify", action="store_true", help="bench: and classify changes")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("floor_checks"):
        from pytest_rngguard.sources import build_sources

        _sources.extend(build_sources(()))
        if config.getoption("floor_classify"):
            _classify.update((s.name, s.classify) for s in _sources)
        from pytest_rngguard.compat import stand_in_fixture_function

        config.pluginmanager.register(_Checks(stand_in_fixture_function()), "rngguard-floor-checks")
    else:
        config.pluginmanager.register(_Hooks(), "rngguard-floor-hooks")


def _check() -> None:
    global _seen, _last, changed
    if len(sys.modules) != _seen:  # a library loaded since: its source is live now
        _seen = len(sys.modules)
        _captures[:] = [(s.name, s.capture) for s in _sources if s.available()]
    current = {name: capture() for name, capture in _captures}
    if current != _last:
        changed += 1
        if _classify:
            for name, after in current.items():
                before = _last.get(name)
                if before is None or before != after:
                    _classify[name](before, after)
    _last = current


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

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        if fixturedef.func is self._stand_in:
            return (yield)
        try:
            return (yield)
        finally:
            _check()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            _check()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        if call.when == "call":
            _check()
        return (yield)
