"""The GPU suite: skipped as a whole, before importing torch, where no CUDA device is usable.

Tests here record what they saw with the ``observe`` fixture; the session prints those
observations as a table at the end and, with ``RNGGUARD_GPU_OUT=path.json`` in the
environment, writes them there (for the docs).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
observations_key = pytest.StashKey[dict[str, Any]]()


def _why_no_gpu() -> str | None:
    if not (os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi")):
        return "no NVIDIA driver on this machine"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():  # asks the driver; does not initialise CUDA
        return "torch sees no usable CUDA device"
    _load_before_inner_runs(torch)
    return None


def _load_before_inner_runs(torch: Any) -> None:
    """pytester drops the modules an in-process inner run imported, and torch's compiler
    stack cannot be imported twice (its operator libraries register once per process): load
    what an inner run would load, here, before any of them (as ``tests/conftest.py`` does)."""
    import contextlib

    with contextlib.suppress(ImportError):
        import numpy.random  # noqa: F401
    torch.use_deterministic_algorithms(
        torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if HERE in item.path.parents]
    if not ours:
        return
    reason = _why_no_gpu()
    for item in ours:
        item.add_marker(pytest.mark.gpu)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"GPU suite: {reason}"))


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """Record an observation (a JSON-able value) under ``key`` for the end-of-run table."""
    found = request.config.stash.setdefault(observations_key, {})

    def observe(key: str, value: Any) -> None:
        found[key] = value
        print(f"observed {key}: {value}")

    return observe


def _machine() -> dict[str, Any]:
    import torch

    return {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(observations_key, None)
    if not found:
        return
    document = {"machine": _machine(), "observations": found}
    terminalreporter.section("rngguard GPU observations")
    for key, value in document["machine"].items():
        terminalreporter.line(f"{key:>40}  {value}")
    for key, value in sorted(found.items()):
        terminalreporter.line(f"{key:>40}  {json.dumps(value)}")
    path = os.environ.get("RNGGUARD_GPU_OUT")
    if path:
        Path(path).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        terminalreporter.line(f"written to {path}")
