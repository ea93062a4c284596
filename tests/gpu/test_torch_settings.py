"""torch's numerics settings on a real GPU: reading, restoring and setting them never starts
CUDA nor warns (on whatever torch the machine has), and the ``deterministic`` recipe's
"highest" precision with TF32 off reaches cuBLAS and cuDNN: inside the block a float32
matmul and convolution agree with a float64 reference to float32 precision, before and after
it (TF32 on, as the test set it) only to TF32 precision.

Each check runs in a fresh process, so that CUDA starts (or not) there and nothing earlier in
the session set the settings it measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

NEVER_STARTS_CUDA = """
import json
import warnings

import torch

from pytest_rngguard import deterministic, isolated
from pytest_rngguard.sources.torch_flags import TorchFlagsSource, current_flags

warnings.simplefilter("error")  # a warning of torch's (a deprecation) raised in the plugin

seen = {"torch": torch.__version__}
source = TorchFlagsSource()
state = source.capture()
seen["after capture"] = torch.cuda.is_initialized()
torch.set_float32_matmul_precision("high")
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.fp32_precision = "ieee"  # the legacy getters now raise
torch.set_default_dtype(torch.float64)
seen["changes"] = [d.detail for d in source.classify(state, source.capture())]
source.restore(state)
seen["restored"] = source.capture() == state
seen["after restore"] = torch.cuda.is_initialized()
with deterministic(3):
    seen["inside deterministic"] = torch.cuda.is_initialized()
    seen["precision inside"] = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
seen["after deterministic"] = torch.cuda.is_initialized()
seen["restored after deterministic"] = source.capture() == state
with isolated():
    torch.backends.cudnn.conv.fp32_precision = "ieee"
seen["after isolated"] = torch.cuda.is_initialized()
seen["flags"] = repr(current_flags())
print(json.dumps(seen))
"""

PRECISION = """
import json

import torch
import torch.nn.functional as F

from pytest_rngguard import deterministic

def error(result, reference):
    # Root mean square, relative: about 3e-4 with TF32 (10 mantissa bits), 1e-7 to 1e-6
    # in float32 (23), whatever the size of the sums.
    squared = (result.double() - reference).pow(2).mean() / reference.pow(2).mean()
    return squared.sqrt().item()

generator = torch.Generator(device="cuda").manual_seed(0)
a = torch.randn(2048, 2048, device="cuda", generator=generator)
b = torch.randn(2048, 2048, device="cuda", generator=generator)
images = torch.randn(8, 64, 64, 64, device="cuda", generator=generator)
weights = torch.randn(64, 64, 3, 3, device="cuda", generator=generator)
matmul_reference = a.double() @ b.double()
conv_reference = F.conv2d(images.double(), weights.double(), padding=1)

def errors():
    return {
        "matmul": error(a @ b, matmul_reference),
        "conv": error(F.conv2d(images, weights, padding=1), conv_reference),
        "get_float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
    }

# TF32 on for both, the way a training script turns it on.
torch.set_float32_matmul_precision("high")
torch.backends.cudnn.allow_tf32 = True
seen = {"device": torch.cuda.get_device_name(), "before": errors()}
with deterministic(1):
    seen["inside"] = errors()
seen["after"] = errors()
print(json.dumps(seen))
"""


def run_script(code: str) -> dict[str, Any]:
    env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def test_reading_restoring_and_setting_the_settings_never_starts_cuda_nor_warns(
    observe: Callable[[str, Any], None],
) -> None:
    seen = run_script(NEVER_STARTS_CUDA)
    observe("torch settings: without starting CUDA", seen)
    for moment in (
        "after capture",
        "after restore",
        "inside deterministic",
        "after deterministic",
        "after isolated",
    ):
        assert seen[moment] is False, moment
    assert {
        "float32_matmul_precision",
        "cudnn.allow_tf32",
        "cuda.matmul.allow_tf32",
        "cuda.matmul.fp32_precision",
        "default_dtype",
    } <= set(seen["changes"])
    assert seen["restored"] is True
    assert seen["precision inside"] == "highest"
    assert seen["restored after deterministic"] is True


def test_the_recipe_makes_cublas_and_cudnn_compute_float32_in_float32(
    observe: Callable[[str, Any], None],
) -> None:
    seen = run_script(PRECISION)
    observe("torch settings: relative error vs float64, TF32 on / recipe / TF32 on", seen)
    if seen["before"]["matmul"] < 2e-5:
        pytest.skip(f"{seen['device']} has no TF32: the recipe cannot be told from TF32 here")
    for stage in ("before", "after"):
        assert seen[stage]["matmul"] > 5e-5, stage
        assert seen[stage]["conv"] > 5e-5, stage
        assert seen[stage]["get_float32_matmul_precision"] == "high"
        assert seen[stage]["cudnn.allow_tf32"] is True
    assert seen["inside"]["matmul"] < 1e-5
    assert seen["inside"]["conv"] < 2e-5  # a Winograd or FFT kernel errs a little more
    assert seen["inside"]["get_float32_matmul_precision"] == "highest"
    assert seen["inside"]["cudnn.allow_tf32"] is False


def test_restore_is_exact_with_cuda_started_too(observe: Callable[[str, Any], None]) -> None:
    # The Hypothesis tests of the CPU suite (any setter calls, restored; the recipe), in a
    # process where CUDA has started before them.
    code = (
        "import sys, torch, pytest; torch.zeros(1, device='cuda'); "
        "assert torch.cuda.is_initialized(); "
        "sys.exit(pytest.main(['-p', 'no:randomly', '-p', 'no:cacheprovider', '-q', "
        "'tests/test_torch_settings.py', 'tests/test_marker_undo.py']))"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    observe("torch settings: CPU suite's tests with CUDA started", done.stdout.splitlines()[-1:])
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
