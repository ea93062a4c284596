"""transformers' ``enable_full_determinism()``, for real: the plugin reports every environment
variable and torch setting it changes, and puts all of them back.

The oracle is a run of the same test without the plugin (``-p no:rngguard``): what the call
changes there, read from the whole ``os.environ`` and every public torch getter before and
after it, is what the plugin must report; and with the plugin, the test after it must see
``os.environ`` and every getter exactly as the test before it did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import UNUSED_IN_SUBPROCESS, require

TESTS = Path(__file__).parent
SNAPSHOTS = ("before", "call_start", "call_end", "after")
#: The variables transformers sets: the runs start without them, as a fresh shell would.
SET_BY_TRANSFORMERS = (
    "CUDA_LAUNCH_BLOCKING",
    "CUBLAS_WORKSPACE_CONFIG",
    "ASCEND_LAUNCH_BLOCKING",
    "HCCL_DETERMINISTIC",
    "FLASH_ATTENTION_DETERMINISTIC",
)

CONFTEST = """
import json
import os

import pytest
import torch
from torch_settings import observe

# The first use_deterministic_algorithms() call imports torch's compiler config, which sets
# TORCHINDUCTOR_CACHE_DIR for good: torch's own one-time import, not transformers' call.
torch.use_deterministic_algorithms(False)

def snapshot(name):
    environ = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    seen = {k: repr(v) for k, v in observe().items()}
    with open(f"{name}.json", "w") as out:
        json.dump({"environ": environ, "torch": seen}, out)

@pytest.fixture
def snap():
    return snapshot
"""

INNER = """
from transformers.trainer_utils import enable_full_determinism

def test_0_before(snap):
    snap("before")

def test_1_enable_full_determinism(snap):
    snap("call_start")
    enable_full_determinism(42)
    snap("call_end")

def test_2_after(snap):
    snap("after")
"""


def run_inner(folder: Path, guarded: bool) -> dict[str, Any]:
    """Run the three tests in a fresh process, with the plugin or without it."""
    folder.mkdir()
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "test_full_determinism.py").write_text(INNER)
    env = {k: v for k, v in os.environ.items() if k not in SET_BY_TRANSFORMERS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
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
            *UNUSED_IN_SUBPROCESS,
            *([f"--rngguard-report={report}"] if guarded else ["-p", "no:rngguard"]),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    seen = {name: json.loads((folder / f"{name}.json").read_text()) for name in SNAPSHOTS}
    return {"seen": seen, "report": json.loads(report.read_text()) if guarded else None}


def changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def test_the_plugin_reports_and_puts_back_everything_enable_full_determinism_changes(
    tmp_path: Path,
) -> None:
    require("transformers")
    require("torch")
    from torch_settings import GETTERS

    without = run_inner(tmp_path / "without", guarded=False)
    start, end = without["seen"]["call_start"], without["seen"]["call_end"]
    variables = changed(start["environ"], end["environ"])
    settings = {GETTERS[name][1] for name in changed(start["torch"], end["torch"])}
    assert "ASCEND_LAUNCH_BLOCKING" in variables  # transformers still sets it
    assert settings  # and turns on torch's determinism

    guarded = run_inner(tmp_path / "with", guarded=True)
    leaks = guarded["report"]["leaks"]
    assert all(leak["nodeid"].endswith("test_1_enable_full_determinism") for leak in leaks)
    assert {leak["detail"] for leak in leaks if leak["source"] == "env"} == variables
    assert {leak["detail"] for leak in leaks if leak["source"] == "torch.flags"} == settings
    assert all(leak["restored"] for leak in leaks)
    seen = guarded["seen"]
    assert seen["after"] == seen["before"]
    # The call did change them in the guarded run too (the plugin only watched).
    assert changed(seen["call_start"]["environ"], seen["call_end"]["environ"]) == variables
