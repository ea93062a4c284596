"""The real vLLM's seeding under the plugin, and the example's stand-in against it.

vLLM's in-process worker (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) calls
``vllm.utils.torch_utils.set_random_seed`` in the user's process.  These tests call that real
function, from vLLM 0.32.0 as the ``vllm`` tox environment installs it (``--no-deps``, on the
CPU build of torch 2.13.0, with ``VLLM_TARGET_DEVICE=cpu``); they skip where vLLM is not
installed.  What the plugin reports is checked against the report, what it puts back against
the state the next test actually starts from (``rng_observer``).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import rng_observer
from conftest import leak_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "vllm_like"
VLLM = importlib.util.find_spec("vllm")
SOURCES = ("random", "numpy", "torch")
SEED = 1234

pytestmark = pytest.mark.skipif(
    VLLM is None, reason="needs vLLM (tox -e vllm installs vllm==0.32.0 --no-deps)"
)

PROJECT = """
import random

import numpy as np
import pytest
import torch
from vllm.utils.torch_utils import set_random_seed


def test_before():
    pass


def test_in_process_worker_seeds_this_process():
    set_random_seed(SEED)  # what vLLM's worker runs when the engine is in this process
    assert random.random() == random.Random(SEED).random()


@pytest.mark.deterministic
def test_seeded_engine_is_reproducible(rngguard, rngguard_seed):
    set_random_seed(rngguard_seed % 2**32, data_parallel_index=1)
    rngguard.record("draws", [random.random(), np.random.random(), torch.rand(3)])


def test_after():
    pass
""".replace("SEED", str(SEED))
BEFORE, LEAKING, DETERMINISTIC, AFTER = (
    f"test_engine.py::{name}"
    for name in (
        "test_before",
        "test_in_process_worker_seeds_this_process",
        "test_seeded_engine_is_reproducible",
        "test_after",
    )
)


def seeding_lines() -> dict[str, int]:
    """The line of each seeding call in the installed vLLM's ``set_random_seed``."""
    assert VLLM is not None
    assert VLLM.submodule_search_locations
    path = Path(next(iter(VLLM.submodule_search_locations))) / "utils" / "torch_utils.py"
    calls = {"random.seed": "random", "np.random.seed": "numpy", "torch.manual_seed": "torch"}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    function = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "set_random_seed"
    )
    lines = {
        calls[ast.unparse(node.func)]: node.lineno
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in calls
    }
    assert set(lines) == set(SOURCES), lines
    return lines


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The inner project, with the observer; runs see vLLM's CPU platform."""
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cpu")
    monkeypatch.setenv("RNG_OBSERVATIONS", str(pytester.path / "observations.jsonl"))
    shutil.copy(Path(rng_observer.__file__), pytester.path / "rng_observer.py")
    pytester.makepyfile(test_engine=PROJECT)
    pytester.syspathinsert()
    return pytester.path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A fresh process (vLLM and torch load once per process), observed; numpy.random loaded
    first (numpy 2 loads it on first use) so that the observer sees it from the first test."""
    observer = ("-p", "rng_observer", "-p", "numpy.random", "-p", "no:randomly")
    return pytester.runpytest_subprocess(*observer, "-p", "no:xdist", *args)


def first_seen(path: Path) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for line in rng_observer.read(path / "observations.jsonl"):
        seen.setdefault(line["nodeid"], line["seen"])
    return seen


def test_reports_real_vllm_seeding_puts_it_back_and_passes_a_deterministic_test_in_fail_mode(
    pytester: pytest.Pytester, project: Path
) -> None:
    result = run(
        pytester, "--rngguard=fail", "--rngguard-repeat=2", "--rngguard-report=report.json"
    )
    # Fail mode fails the leaking test only: the deterministic one that seeds through vLLM
    # passes both runs, and nothing it did is reported.
    result.assert_outcomes(failed=1, passed=3)
    failed = [line.split()[1] for line in result.outlines if line.startswith("FAILED ")]
    assert failed == [LEAKING]
    report = json.loads((project / "report.json").read_text(encoding="utf-8"))
    assert report["not_reproducible"] == []
    assert leak_rows(report) == [(LEAKING, "call", None, s, "reseeded") for s in sorted(SOURCES)]
    lines = seeding_lines()
    for leak in report["leaks"]:
        origin = leak["origin"]
        where = (origin["file"], origin["line"], origin["function"])
        assert where == ("vllm/utils/torch_utils.py", lines[leak["source"]], "set_random_seed")
        assert leak["restored"] is True
    # What the plugin says it put back, read from the state the next tests start from.
    seen = first_seen(project)
    for source in SOURCES:
        assert seen[LEAKING][source] == seen[BEFORE][source], source
        assert seen[AFTER][source] == seen[BEFORE][source], source


def test_without_the_plugin_the_next_test_starts_from_vllms_seed(
    pytester: pytest.Pytester, project: Path, torch: ModuleType, numpy: ModuleType
) -> None:
    """What the plugin prevents, seen the same way: the checks above can fail."""
    result = run(pytester, "-p", "no:rngguard", "-k", "not deterministic")
    result.assert_outcomes(passed=3, deselected=1)
    seeded = random.Random(SEED)
    seeded.random()  # the leaking test's own draw
    expected = {
        "random": rng_observer.random_print(seeded.getstate()),
        "numpy": rng_observer.numpy_print(numpy.random.RandomState(SEED).get_state()),
        "torch": rng_observer.torch_print(torch.Generator().manual_seed(SEED).get_state()),
    }
    seen = first_seen(project)
    assert {source: seen[AFTER][source] for source in SOURCES} == expected


# -- the example's stand-in, against vLLM itself ------------------------------------------------


@pytest.fixture
def seeders(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, numpy: ModuleType
) -> tuple[Any, Any]:
    """vLLM's ``set_random_seed`` and the example's, imported here."""
    request.getfixturevalue("torch")  # imported once, before any inner run (conftest)
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cpu")  # read when vLLM picks its platform
    monkeypatch.syspath_prepend(str(EXAMPLE))
    real = importlib.import_module("vllm.utils.torch_utils").set_random_seed
    return real, importlib.import_module("vllm_like").set_random_seed


@contextlib.contextmanager
def kept_generators() -> Iterator[None]:
    numpy, torch = sys.modules["numpy"], sys.modules["torch"]
    saved = random.getstate(), numpy.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(saved[0])
        numpy.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


def generators_after(seeder: Any, seed: int, data_parallel_index: int) -> tuple[Any, ...]:
    """Every global generator's state after ``seeder``, which then is undone."""
    numpy, torch = sys.modules["numpy"], sys.modules["torch"]
    with kept_generators():
        seeder(seed, data_parallel_index)
        return (
            rng_observer.random_print(random.getstate()),
            rng_observer.numpy_print(numpy.random.get_state()),
            rng_observer.torch_print(torch.get_rng_state()),
            torch.initial_seed(),
        )


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), data_parallel_index=st.integers(0, 16))
def test_the_example_seeds_every_generator_as_vllm_does(
    seeders: tuple[Any, Any], seed: int, data_parallel_index: int
) -> None:
    real, stand_in = seeders
    expected = generators_after(real, seed, data_parallel_index)
    assert generators_after(stand_in, seed, data_parallel_index) == expected
