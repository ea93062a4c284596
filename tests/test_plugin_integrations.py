"""The seeders users meet, for real: transformers, accelerate, lightning and scikit-learn.

Importing these libraries takes seconds, so one inner pytest run (in a fresh process) covers
them all, shared by the tests below, also across xdist workers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import QUEUED_CUDA, require

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: each xdist worker runs its own
    fcntl = None  # type: ignore[assignment]

INNER = {
    "test_transformers.py": """\
import pytest

transformers = pytest.importorskip("transformers")


def test_set_seed():
    transformers.set_seed(42)


def test_enable_full_determinism():
    transformers.enable_full_determinism(42)
""",
    "test_accelerate.py": """\
import pytest

accelerate_utils = pytest.importorskip("accelerate.utils")


def test_set_seed():
    accelerate_utils.set_seed(42)
""",
    "test_lightning.py": """\
import os

import pytest

lightning = pytest.importorskip("lightning")


def test_seed_everything():
    lightning.seed_everything(42)


def test_the_next_test_sees_no_seed_variable():
    assert "PL_GLOBAL_SEED" not in os.environ
""",
    "test_sklearn.py": """\
import pytest

utils = pytest.importorskip("sklearn.utils")


def test_draws_from_the_global_numpy_generator():
    utils.check_random_state(None).rand(3)
    utils.shuffle([1, 2, 3, 4])
""",
}
LIBRARIES = ("transformers", "accelerate", "lightning", "sklearn")
#: Watched variables the libraries set: the inner run must start without them.
SET_BY_LIBRARIES = (
    "PL_GLOBAL_SEED",
    "PL_SEED_WORKERS",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_LAUNCH_BLOCKING",
    "HCCL_DETERMINISTIC",
    "FLASH_ATTENTION_DETERMINISTIC",
    "ASCEND_LAUNCH_BLOCKING",
)


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def run_inner(folder: Any) -> dict[str, Any]:
    for name, text in INNER.items():
        (folder / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in SET_BY_LIBRARIES}
    env.pop("GITHUB_ACTIONS", None)
    report = folder / "report.json"
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--rngguard-strict",
            f"--rngguard-report={report}",
            "-rs",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    return {"stdout": process.stdout, "report": json.loads(report.read_text())}


@pytest.fixture(scope="module")
def inner(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The inner run's output and report, made once per session (the xdist recipe:
    workers share the session's base temporary folder and take turns with a lock)."""
    if not any(installed(name) for name in LIBRARIES):
        pytest.skip("none of transformers, accelerate, lightning, scikit-learn is installed")
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    cache = shared / "rngguard-integrations.json"
    with open(shared / "rngguard-integrations.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if cache.exists():
            result: dict[str, Any] = json.loads(cache.read_text())
            return result
        folder = tmp_path_factory.mktemp("integrations")
        result = run_inner(folder)
        cache.write_text(json.dumps(result))
        return result


def leaks_of(inner: dict[str, Any], nodeid: str) -> dict[tuple[str, str], dict[str, Any]]:
    """A test's leaks by (source, detail)."""
    return {
        (leak["source"], leak["detail"]): leak
        for leak in inner["report"]["leaks"]
        if leak["nodeid"] == nodeid
    }


def where(leak: dict[str, Any]) -> tuple[str, str] | None:
    origin = leak["origin"]
    return None if origin is None else (origin["file"], origin["function"])


def test_transformers_set_seed_is_reported_inside_transformers(inner: dict[str, Any]) -> None:
    require("transformers")
    leaks = leaks_of(inner, "test_transformers.py::test_set_seed")
    assert {key: leak["kind"] for key, leak in leaks.items()} == {
        ("random", ""): "reseeded",
        ("numpy", ""): "reseeded",
        ("torch", ""): "reseeded",
        **QUEUED_CUDA,
    }
    assert {where(leak) for leak in leaks.values()} == {
        ("transformers/trainer_utils.py", "set_seed")
    }
    assert all(
        leak["origin"]["stack"][0] == "test_transformers.py:7 in test_set_seed"
        for leak in leaks.values()
    )
    summary = [line for line in inner["stdout"].splitlines() if "random reseeded" in line]
    assert any("by transformers/trainer_utils.py:" in line for line in summary)


def test_transformers_full_determinism_flips_environment_and_flags(
    inner: dict[str, Any],
) -> None:
    require("transformers")
    leaks = leaks_of(inner, "test_transformers.py::test_enable_full_determinism")
    assert {key: leak["kind"] for key, leak in leaks.items() if key[0] != "env"} == {
        ("random", ""): "reseeded",
        ("numpy", ""): "reseeded",
        ("torch", ""): "reseeded",
        ("torch.flags", "deterministic_algorithms"): "changed",
        ("torch.flags", "cudnn.deterministic"): "changed",
        **QUEUED_CUDA,
    }
    variables = {detail for source, detail in leaks if source == "env"}
    assert variables == {
        "CUBLAS_WORKSPACE_CONFIG",
        "CUDA_LAUNCH_BLOCKING",
        "HCCL_DETERMINISTIC",
        "FLASH_ATTENTION_DETERMINISTIC",
        "ASCEND_LAUNCH_BLOCKING",
    }
    for name in variables:
        assert where(leaks["env", name]) == (
            "transformers/trainer_utils.py",
            "enable_full_determinism",
        )
    assert where(leaks["torch.flags", "deterministic_algorithms"]) == (
        "transformers/trainer_utils.py",
        "enable_full_determinism",
    )


def test_accelerate_set_seed_is_reported_inside_accelerate(inner: dict[str, Any]) -> None:
    require("accelerate")
    leaks = leaks_of(inner, "test_accelerate.py::test_set_seed")
    assert {key: leak["kind"] for key, leak in leaks.items()} == {
        ("random", ""): "reseeded",
        ("numpy", ""): "reseeded",
        ("torch", ""): "reseeded",
        **QUEUED_CUDA,
    }
    assert {where(leak) for leak in leaks.values()} == {("accelerate/utils/random.py", "set_seed")}


def test_lightning_seed_everything_is_reported_with_the_variables_it_leaves(
    inner: dict[str, Any],
) -> None:
    require("lightning")
    leaks = leaks_of(inner, "test_lightning.py::test_seed_everything")
    assert {key: leak["kind"] for key, leak in leaks.items()} == {
        ("random", ""): "reseeded",
        ("numpy", ""): "reseeded",
        ("torch", ""): "reseeded",
        ("env", "PL_GLOBAL_SEED"): "changed",
        ("env", "PL_SEED_WORKERS"): "changed",
        **QUEUED_CUDA,
    }
    assert {where(leak) for leak in leaks.values()} == {
        ("lightning/fabric/utilities/seed.py", "seed_everything")
    }
    assert all(leak["restored"] for leak in leaks.values())
    # ... and the next test, which checks PL_GLOBAL_SEED is gone, passed (the run passed).
    assert not leaks_of(inner, "test_lightning.py::test_the_next_test_sees_no_seed_variable")


def test_scikit_learn_only_advances_the_global_numpy_generator(inner: dict[str, Any]) -> None:
    require("sklearn")
    leaks = leaks_of(inner, "test_sklearn.py::test_draws_from_the_global_numpy_generator")
    assert {key: leak["kind"] for key, leak in leaks.items()} == {("numpy", ""): "advanced"}
