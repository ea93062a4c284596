"""Generated test suites for the benchmark: written fresh into a scratch folder each run.

Every suite lives in its own folder with an empty ``pytest.ini``, so the repository's own
pytest configuration (its ``addopts``) never leaks into what is measured.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TRIVIAL = "trivial"
DRAWING = "drawing"
CUDA = "cuda"
CUDA_DRAWING = "cuda-drawing"

_INI = "[pytest]\n"

# ``numpy.random`` explicitly: NumPy 2 loads it lazily, and the guard checks the legacy
# generator only once it is loaded (as it is in any suite that uses ``np.random``).
_TRIVIAL_MODULE = """\
import random

import numpy.random
import pytest
import torch
{marker}

@pytest.mark.parametrize("i", range({tests}))
def test_trivial(i):
    pass
"""

_DRAWING_CONFTEST = """\
import random

import numpy as np
import numpy.random
import pytest
import torch


@pytest.fixture(scope="session")
def session_data():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.fixture(scope="module")
def module_data(session_data):
    return [random.random() for _ in range(3)], np.random.rand(3), torch.rand(3)


@pytest.fixture
def noise(module_data):
    return random.gauss(0.0, 1.0), np.random.normal(size=2), torch.randn(2)
"""

_DRAWING_MODULE = """\
import random

import numpy as np
import pytest
import torch
{marker}

@pytest.mark.parametrize("i", range({tests}))
def test_draws(i, noise, module_data, session_data):
    x = random.random() + float(np.random.rand()) + float(torch.rand(1))
    assert 0.0 <= x < 3.0
"""

# CUDA is initialised at import, on one device, so the ``torch.cuda`` source is live in every
# phase; the drawing variant draws on the GPU in every test (its generator's offset moves).
_CUDA_MODULE = """\
import random

import numpy.random
import pytest
import torch

torch.zeros(1, device="cuda")
{marker}

@pytest.mark.parametrize("i", range({tests}))
def test_cuda(i):
    {body}
"""

_MARKER = "\npytestmark = pytest.mark.deterministic\n"


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "pytest.ini").write_text(_INI)
    return folder


def write_trivial(folder: Path, tests: int, deterministic: bool = False) -> Path:
    """``tests`` trivial parametrised tests in one module that imports random, numpy and
    torch (so every source is loaded and checked)."""
    _fresh(folder)
    marker = _MARKER if deterministic else ""
    (folder / "test_trivial.py").write_text(_TRIVIAL_MODULE.format(tests=tests, marker=marker))
    return folder


def write_drawing(folder: Path, tests: int, deterministic: bool = False, modules: int = 10) -> Path:
    """``tests`` tests over ``modules`` modules using session-, module- and function-scoped
    fixtures; fixtures and tests all draw from random, numpy and torch, so every phase sees
    changed states and classification runs."""
    _fresh(folder)
    (folder / "conftest.py").write_text(_DRAWING_CONFTEST)
    marker = _MARKER if deterministic else ""
    per_module, extra = divmod(tests, modules)
    for number in range(modules):
        count = per_module + (1 if number < extra else 0)
        if count:
            text = _DRAWING_MODULE.format(tests=count, marker=marker)
            (folder / f"test_draw_{number:02d}.py").write_text(text)
    return folder


def write_cuda(folder: Path, tests: int, deterministic: bool = False, draw: bool = False) -> Path:
    """``tests`` parametrised tests in a module that initialises CUDA when imported; with
    ``draw``, each test draws on the GPU.  Needs torch with CUDA and a GPU."""
    _fresh(folder)
    marker = _MARKER if deterministic else ""
    body = 'assert float(torch.rand(1, device="cuda")) < 1.0' if draw else "pass"
    text = _CUDA_MODULE.format(tests=tests, marker=marker, body=body)
    (folder / "test_cuda.py").write_text(text)
    return folder


def write_cuda_drawing(folder: Path, tests: int, deterministic: bool = False) -> Path:
    return write_cuda(folder, tests, deterministic, draw=True)


WRITERS = {
    TRIVIAL: write_trivial,
    DRAWING: write_drawing,
    CUDA: write_cuda,
    CUDA_DRAWING: write_cuda_drawing,
}

DESCRIPTIONS = {
    TRIVIAL: "trivial parametrised tests; the module imports random, numpy and torch",
    DRAWING: "tests with session, module and function fixtures; fixtures and tests draw "
    "from random, numpy and torch",
    CUDA: "trivial parametrised tests; the module imports random, numpy and torch and "
    "initialises CUDA on one device",
    CUDA_DRAWING: "as cuda, and every test draws on the GPU",
}
