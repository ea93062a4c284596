"""Determinism for real: operations that CUDA runs with float atomics or cuBLAS, repeated by
the reproducibility gate, seeded only and then under ``@pytest.mark.deterministic``.

The observed table (operation by operation) is printed at the end of the GPU run and goes
into the docs.  What must hold: under the marker each operation either gives the same result
in every run or raises torch's own "does not have a deterministic implementation" error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from conftest import NO_RANDOMLY

OPERATIONS = """
    import pytest
    import torch

    N = 1 << 22


    def data():
        generator = torch.Generator(device="cuda")
        generator.manual_seed(0)
        values = torch.randn(N, device="cuda", generator=generator)
        index = torch.randint(0, 64, (N,), device="cuda", generator=generator)
        return values, index


    def index_add():
        values, index = data()
        return torch.zeros(64, device="cuda").index_add_(0, index, values)


    def scatter_add():
        values, index = data()
        return torch.zeros(64, device="cuda").scatter_add_(0, index, values)


    def index_put_accumulate():
        values, index = data()
        return torch.zeros(64, device="cuda").index_put_((index,), values, accumulate=True)


    def bincount_weights():
        values, index = data()
        return torch.bincount(index, weights=values, minlength=64)


    def histc():
        values, _ = data()
        return torch.histc(values, bins=64)


    def cublas_matmul():
        generator = torch.Generator(device="cuda")
        generator.manual_seed(0)
        a = torch.randn(4096, 4096, device="cuda", generator=generator)
        return a @ a


    def dropout():
        return torch.nn.functional.dropout(torch.ones(N, device="cuda"), 0.5)


    OPERATIONS = {
        "index_add_": index_add,
        "scatter_add_": scatter_add,
        "index_put_(accumulate=True)": index_put_accumulate,
        "bincount(weights=)": bincount_weights,
        "histc": histc,
        "matmul (cuBLAS)": cublas_matmul,
        "dropout (CUDA generator)": dropout,
    }
    NAMES = list(OPERATIONS)


    @pytest.mark.deterministic(torch_flags=False)
    @pytest.mark.parametrize("op", NAMES)
    def test_seeded_only(op, rngguard):
        rngguard.record("result", OPERATIONS[op]().cpu())


    @pytest.mark.deterministic
    @pytest.mark.parametrize("op", NAMES)
    def test_deterministic(op, rngguard):
        rngguard.record("result", OPERATIONS[op]().cpu())


    @pytest.mark.deterministic(warn_only=True)
    @pytest.mark.parametrize("op", NAMES)
    def test_deterministic_warn_only(op, rngguard):
        rngguard.record("result", OPERATIONS[op]().cpu())


    @pytest.mark.deterministic(env={"CUBLAS_WORKSPACE_CONFIG": ""})
    def test_deterministic_without_cublas_workspace_config(rngguard):
        rngguard.record("result", cublas_matmul().cpu())
"""

NO_DETERMINISTIC_IMPLEMENTATION = "does not have a deterministic implementation"


def _error(longrepr: str) -> str:
    """The line of torch's error, shortened for the table."""
    for line in longrepr.splitlines():
        if line.startswith("E ") and "Error" in line:
            return line[2:].strip()[:160]
    return longrepr.strip().splitlines()[-1][:160]


def test_operation_by_operation_under_the_reproducibility_gate(
    pytester: pytest.Pytester, torch: ModuleType, observe: Callable[[str, Any], None]
) -> None:
    torch.zeros(1, device="cuda")
    pytester.makepyfile(test_operations=OPERATIONS)
    path = pytester.path / "report.json"
    recorded = pytester.inline_run(*NO_RANDOMLY, "--rngguard-repeat=3", f"--rngguard-report={path}")
    report = json.loads(path.read_text())
    differing = {entry["nodeid"]: entry["detail"] for entry in report["not_reproducible"]}
    warned: dict[str, list[str]] = {}
    for call in recorded.getcalls("pytest_warning_recorded"):
        text = str(call.warning_message.message)
        if NO_DETERMINISTIC_IMPLEMENTATION in text:
            warned.setdefault(call.nodeid, []).append(text)
    table: dict[str, dict[str, str]] = {}
    for entry in recorded.getreports("pytest_runtest_logreport"):
        if entry.when != "call":
            continue
        function, _, op = entry.nodeid.partition("::")[2].partition("[")
        op = op.rstrip("]") or "matmul (cuBLAS)"
        variant = function.removeprefix("test_")
        if entry.nodeid in differing:
            seen = f"not reproducible: {differing[entry.nodeid]}"
        elif entry.failed:
            seen = f"raised: {_error(entry.longreprtext)}"
        else:
            seen = "reproducible in 3 runs"
        if entry.nodeid in warned:
            seen += " (warned: no deterministic implementation)"
        table.setdefault(op, {})[variant] = seen
    observe("determinism table", table)
    for op, variants in table.items():
        if "deterministic" in variants:
            result = variants["deterministic"]
            assert result == "reproducible in 3 runs" or (
                result.startswith("raised") and NO_DETERMINISTIC_IMPLEMENTATION in result
            ), (op, result)
    assert any(
        table[op]["seeded_only"].startswith("not reproducible")
        for op in ("index_add_", "scatter_add_", "index_put_(accumulate=True)")
    ), table
