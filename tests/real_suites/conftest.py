"""The real-world suites: the plugin over test suites that ship inside NumPy, SciPy and
scikit-learn (``bench/realworld.py`` runs them).  They take minutes and need SciPy and
scikit-learn, so they run only where ``RNGGUARD_REALWORLD`` is set (``tox -e realworld``
sets it to ``ci``; ``long`` runs whole test folders); elsewhere they are skipped.

The session prints the table of ``docs/realworld.md`` at the end.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from realworld import SuiteResult  # bench/realworld.py, as mypy names it

HERE = Path(__file__).parent


def _load_bench() -> ModuleType:
    """``bench/realworld.py``, by path: ``bench`` on ``sys.path`` would put its other
    modules (``run``, ``suites``) before everything else in this session."""
    name = "rngguard_bench_realworld"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE.parent.parent / "bench/realworld.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


realworld = _load_bench()
results_key = pytest.StashKey[list["SuiteResult"]]()
MODE = os.environ.get(realworld.MODE_ENV, "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if MODE:
        return
    skip = pytest.mark.skip(
        reason=f"the real-world suites run with {realworld.MODE_ENV}=ci or long (tox -e realworld)"
    )
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(results_key, [])
    if not found:
        return
    terminalreporter.section("rngguard on real suites")
    for line in realworld.render(found).splitlines():
        terminalreporter.line(line)
    terminalreporter.line("")
    minutes = sum(sum(r.wall_off) + sum(r.wall_on) for r in found) / 60
    for line in realworld.markdown(found, long=MODE == "long", minutes=minutes).splitlines():
        terminalreporter.line(line)
