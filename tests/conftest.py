"""Shared helpers for the end-to-end tests that run pytest inside pytest (``pytester``)."""

from __future__ import annotations

import contextlib
import json
from types import ModuleType
from typing import Any

import pytest

# pytester drops the modules an inner run imported, and Hypothesis's plugin imports most of
# Hypothesis at the end of every session: loaded here once, an inner run takes a tenth the time.
with contextlib.suppress(ImportError):
    import hypothesis.internal.observability  # noqa: F401

#: Inner runs auto-load every installed plugin: pytest-randomly too, unless told not to.
NO_RANDOMLY = ("-p", "no:randomly")


@pytest.fixture(scope="session")
def numpy() -> ModuleType:
    """NumPy, imported before any pytester snapshot of ``sys.modules``, so inner runs never
    import it a second time in this process (pytester drops modules an inner run imported)."""
    numpy = pytest.importorskip("numpy")
    import numpy.random  # numpy 2 loads it lazily: the inner runs' numpy source needs it

    return numpy


@pytest.fixture(scope="session")
def torch() -> ModuleType:
    """torch, imported once for the same reason (it cannot be imported twice at all)."""
    return pytest.importorskip("torch")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An in-process inner run without pytest-randomly."""
    return pytester.runpytest(*NO_RANDOMLY, *args)


def run_with_report(
    pytester: pytest.Pytester, *args: str, subprocess: bool = False
) -> tuple[pytest.RunResult, dict[str, Any]]:
    """An inner run that writes the JSON report; returns the result and the report."""
    path = pytester.path / "rngguard-report.json"
    runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    result = runner(*NO_RANDOMLY, f"--rngguard-report={path}", *args)
    return result, json.loads(path.read_text(encoding="utf-8"))


def leak_rows(report: dict[str, Any], *fields: str) -> list[tuple[Any, ...]]:
    """The report's leaks as sorted tuples of the given fields (default: where and what)."""
    fields = fields or ("nodeid", "phase", "fixture", "source", "kind")
    return sorted(tuple(leak[field] for field in fields) for leak in report["leaks"])
