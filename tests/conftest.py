"""Shared helpers for the end-to-end tests that run pytest inside pytest (``pytester``)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# pytester drops the modules an inner run imported, and Hypothesis's plugin imports most of
# Hypothesis at the end of every session: loaded here once, an inner run takes a tenth the time.
with contextlib.suppress(ImportError):
    import hypothesis.internal.observability  # noqa: F401

#: Inner runs auto-load every installed plugin: pytest-randomly too, unless told not to.
NO_RANDOMLY = ("-p", "no:randomly")
#: Plugins that a fresh process would spend most of its start-up importing (Hypothesis's
#: alone takes a second); left out of subprocess runs that are not about them.
UNUSED_IN_SUBPROCESS = ("-p", "no:hypothesispytest", "-p", "no:xdist", "-p", "no:anyio")


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, for runs of this suite with the plugin off (-p no:rngguard).
    config.addinivalue_line("markers", "allow_rng_leak(*sources, reason=None): see SPEC")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With the plugin on in this session too (as tox runs it), what an inner run changes on
    purpose is not the outer test's leak."""
    for item in items:
        if "pytester" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.allow_rng_leak(reason="inner runs leak on purpose"))


def require(name: str) -> None:
    """Skip unless ``name`` is installed, without importing it here: for tests whose inner
    runs are fresh processes (importing torch or transformers takes seconds)."""
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed")


@pytest.fixture(scope="session")
def numpy() -> ModuleType:
    """NumPy, imported before any pytester snapshot of ``sys.modules``, so inner runs never
    import it a second time in this process (pytester drops modules an inner run imported)."""
    numpy: ModuleType = pytest.importorskip("numpy")
    # numpy 2 loads numpy.random lazily, on first use: load it before any snapshot too.
    importlib.import_module("numpy.random")
    return numpy


@pytest.fixture(scope="session")
def torch() -> ModuleType:
    """torch, imported once for the same reason (it cannot be imported twice at all)."""
    torch: ModuleType = pytest.importorskip("torch")
    # Its first call imports hundreds of modules (torch._dynamo, _inductor) that register
    # operators: they too must load before any snapshot, or the next inner run fails.
    torch.use_deterministic_algorithms(
        torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    return torch


@pytest.fixture(autouse=True)
def _outer_state_kept(request: pytest.FixtureRequest) -> Iterator[None]:
    """In-process inner runs share this process's RNGs and environment; what an inner run
    leaves behind on purpose (``--rngguard=off``, ``--rngguard-restore=none``) must not reach
    the next test, so a pytester test gets them back as it found them."""
    if "pytester" not in request.fixturenames:
        yield
        return
    environ, states = dict(os.environ), [random.getstate()]
    numpy, torch = sys.modules.get("numpy.random"), sys.modules.get("torch")
    if numpy is not None:
        states.append(numpy.get_state())
    if torch is not None:
        states.append(torch.get_rng_state())
    yield
    random.setstate(states[0])
    if numpy is not None:
        numpy.set_state(states[1])
    if torch is not None:
        torch.set_rng_state(states[-1])
    for name in set(os.environ) - set(environ):
        del os.environ[name]
    os.environ.update(environ)


def run(
    pytester: pytest.Pytester, *args: str, subprocess: bool = False, alone: bool = False
) -> pytest.RunResult:
    """An inner run without pytest-randomly, in process unless told otherwise.

    ``alone``: a fresh process that loads no plugin but this one, for tests about what the
    test itself imports first (other installed plugins, jaxtyping's say, import numpy).
    """
    if alone:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
            return pytester.runpytest_subprocess("-p", "rngguard", *args)
    if subprocess:
        return pytester.runpytest_subprocess(*NO_RANDOMLY, *UNUSED_IN_SUBPROCESS, *args)
    return pytester.runpytest(*NO_RANDOMLY, *args)


def run_with_report(
    pytester: pytest.Pytester, *args: str, subprocess: bool = False, alone: bool = False
) -> tuple[pytest.RunResult, dict[str, Any]]:
    """An inner run that writes the JSON report; returns the result and the report."""
    path = pytester.path / "rngguard-report.json"
    result = run(pytester, f"--rngguard-report={path}", *args, subprocess=subprocess, alone=alone)
    return result, json.loads(path.read_text(encoding="utf-8"))


def torch_built_with_cuda() -> bool:
    """Whether the installed torch is a CUDA build, without importing it: there, every
    ``torch.manual_seed`` also queues a seed for CUDA, reported as ``torch.cuda`` (the GPU
    suite checks those reports; these tests expect them only to be there)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.backends.cuda.is_built())
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    return any((Path(spec.origin).parent / "lib").glob("libtorch_cuda*"))


#: What a seed queued for CUDA adds to a test's leaks, by (source, detail), on a CUDA build.
QUEUED_CUDA = (
    {("torch.cuda", "queued until CUDA initialises"): "reseeded"} if torch_built_with_cuda() else {}
)


def leak_rows(report: dict[str, Any], *fields: str) -> list[tuple[Any, ...]]:
    """The report's leaks as sorted tuples of the given fields (default: where and what)."""
    fields = fields or ("nodeid", "phase", "fixture", "source", "kind")
    return sorted(tuple(leak[field] for field in fields) for leak in report["leaks"])
