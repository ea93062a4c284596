"""What a ``deterministic`` test changes of what its own recipe set (an environment variable,
a torch flag) goes back to where it was before the recipe, not to the recipe's value: the
next test sees the session as it was, whatever ``--rngguard-restore`` says.  Observed by the
next test itself and by the outer process after the inner run."""

from __future__ import annotations

import os
from typing import Any

import pytest
from conftest import leak_rows, run_with_report

CHANGES_WHAT_THE_RECIPE_SET = """
import os

import pytest
import torch

@pytest.mark.deterministic
def test_changes_what_its_recipe_set():
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    del os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"]
    torch.backends.cudnn.deterministic = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_float32_matmul_precision("high")

def test_after():
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ
    assert torch.backends.cudnn.deterministic is False
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cuda.matmul.fp32_precision == "none"
"""


@pytest.mark.parametrize("restore", ["leaked", "all", "none"])
def test_a_deterministic_tests_change_of_what_its_recipe_set_does_not_outlive_it(
    pytester: pytest.Pytester, torch: Any, monkeypatch: pytest.MonkeyPatch, restore: str
) -> None:
    for name in ("CUBLAS_WORKSPACE_CONFIG", "VLLM_ENABLE_V1_MULTIPROCESSING", "PYTHONHASHSEED"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(CHANGES_WHAT_THE_RECIPE_SET)
    result, report = run_with_report(pytester, f"--rngguard-restore={restore}")
    result.assert_outcomes(passed=2)
    assert report["leaks"] == []  # the recipe's own settings: undone with it, not leaks
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cuda.matmul.fp32_precision == "none"


def test_a_deterministic_test_that_changes_the_default_dtype_leaks_it(
    pytester: pytest.Pytester, torch: Any
) -> None:
    # The recipe does not set the default dtype: a deterministic test that does is reported
    # like any other (and the dtype put back).
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.deterministic
        def test_doubles():
            torch.set_default_dtype(torch.float64)
            torch.backends.cudnn.benchmark = True  # the recipe's own: not reported

        def test_after():
            assert torch.get_default_dtype() is torch.float32
            assert torch.backends.cudnn.benchmark is False
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=2)
    assert leak_rows(report, "nodeid", "source", "kind", "detail") == [
        (
            "test_a_deterministic_test_that_changes_the_default_dtype_leaks_it.py::test_doubles",
            "torch.flags",
            "changed",
            "default_dtype",
        )
    ]
    assert report["leaks"][0]["origin"]["function"] == "test_doubles"
    assert report["leaks"][0]["restored"] is True
    assert torch.get_default_dtype() is torch.float32


def test_with_restore_none_a_deterministic_tests_own_leaks_stay_and_say_so(
    pytester: pytest.Pytester, torch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --rngguard-restore=none keeps what the test changed beyond the recipe (and the report
    # says it was not put back); the recipe's own settings are undone all the same.
    for name in ("CUBLAS_WORKSPACE_CONFIG", "PL_GLOBAL_SEED"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(
        """
        import os

        import pytest
        import torch

        @pytest.mark.deterministic
        def test_leaks():
            os.environ["PL_GLOBAL_SEED"] = "1"
            torch.set_default_dtype(torch.float64)
            torch.backends.cudnn.benchmark = True

        def test_after():
            assert os.environ["PL_GLOBAL_SEED"] == "1"
            assert torch.get_default_dtype() is torch.float64
            assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
            assert torch.backends.cudnn.benchmark is False
            assert not torch.are_deterministic_algorithms_enabled()
        """
    )
    try:
        result, report = run_with_report(pytester, "--rngguard-restore=none")
    finally:
        torch.set_default_dtype(torch.float32)
    result.assert_outcomes(passed=2)
    assert sorted((leak["detail"], leak["restored"]) for leak in report["leaks"]) == [
        ("PL_GLOBAL_SEED", False),
        ("default_dtype", False),
    ]
