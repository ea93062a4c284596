"""CUDA's lazy start, in fresh processes: starting CUDA is never a leak, a queued seed that
was put back never comes back, and a reseed that escapes through ``torch.random.fork_rng``
is named at its own line.

Each inner run records, with ``rng_observer``, what every test saw (CUDA's seeds included,
read by the test itself), so these checks do not rest on the plugin's report alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

OBSERVER = (Path(__file__).parent.parent / "rng_observer.py").read_text(encoding="utf-8")

#: A test that starts CUDA and records the seed each device started with.
STARTS_CUDA = """
def test_starts_cuda():
    torch.rand(3, device="cuda")
    seeds = [g.initial_seed() for g in torch.cuda.default_generators]
    with open("cuda-seeds.json", "w") as handle:
        json.dump(seeds, handle)
"""

ORDERINGS = {
    "manual_seed_all queued, then put back": "torch.cuda.manual_seed_all(5)",
    "torch.manual_seed before CUDA started": "torch.manual_seed(5)",
    "manual_seed of the current device queued": "torch.cuda.manual_seed(5)",
    "a deterministic test that never touches CUDA": None,
}


def suite(first: str | None) -> str:
    head = "import json\n\nimport pytest\nimport torch\n\n"
    if first is None:
        head += "@pytest.mark.deterministic(seed=5)\ndef test_first():\n    torch.rand(2)\n"
    else:
        head += f"def test_first():\n    {first}\n"
    return head + "\n" + STARTS_CUDA


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makepyfile(rng_observer=OBSERVER)
    report = pytester.path / "report.json"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        env.setenv("RNG_OBSERVATIONS", str(pytester.path / "seen.jsonl"))
        result = pytester.runpytest_subprocess(
            "-p", "rngguard", "-p", "rng_observer", f"--rngguard-report={report}", *args
        )
    return result, json.loads(report.read_text())


@pytest.mark.parametrize("ordering", list(ORDERINGS))
def test_starting_cuda_after_a_queued_seed_was_put_back_is_no_leak(
    pytester: pytest.Pytester, ordering: str, observe: Callable[[str, Any], None]
) -> None:
    pytester.makepyfile(test_lazy=suite(ORDERINGS[ordering]))
    result, report = run(pytester)
    result.assert_outcomes(passed=2)
    rows = sorted(
        (leak["nodeid"].rpartition("::")[2], leak["source"], leak["detail"], leak["restored"])
        for leak in report["leaks"]
    )
    observe(f"lazy start: {ordering}", rows)
    assert [row for row in rows if row[0] == "test_starts_cuda"] == []
    assert all(row[3] for row in rows)
    seeds = json.loads((pytester.path / "cuda-seeds.json").read_text())
    observe(f"lazy start: {ordering}: seeds CUDA started with", seeds)
    # The seed that was put back did not come back: CUDA started from entropy.
    assert all(seed != 5 and seed >= 2**32 for seed in seeds)


def test_a_seed_queued_by_the_test_that_starts_cuda_is_its_leak_and_is_put_back(
    pytester: pytest.Pytester, observe: Callable[[str, Any], None]
) -> None:
    pytester.makepyfile(
        test_lazy="import json\n\nimport torch\n\n"
        "def test_first():\n    torch.cuda.manual_seed_all(5)\n    torch.rand(3, device='cuda')\n"
        + STARTS_CUDA.replace("test_starts_cuda", "test_then")
    )
    result, report = run(pytester)
    result.assert_outcomes(passed=2)
    rows = sorted(
        (leak["nodeid"].rpartition("::")[2], leak["detail"], leak["kind"], leak["origin"]["line"])
        for leak in report["leaks"]
        if leak["source"] == "torch.cuda"
    )
    observe("lazy start: seed queued and CUDA started by one test", rows)
    count = len(json.loads((pytester.path / "cuda-seeds.json").read_text()))
    assert rows == [("test_first", f"cuda:{i}", "reseeded", 6) for i in range(count)]
    assert 5 not in json.loads((pytester.path / "cuda-seeds.json").read_text())


def test_the_orderings_hold_under_xdist(
    pytester: pytest.Pytester, observe: Callable[[str, Any], None]
) -> None:
    for number, first in enumerate(ORDERINGS.values()):
        pytester.makepyfile(**{f"test_lazy_{number}": suite(first)})
    result, report = run(pytester, "-p", "xdist.plugin", "-n", "4")
    result.assert_outcomes(passed=2 * len(ORDERINGS))
    starts = [leak for leak in report["leaks"] if leak["nodeid"].endswith("test_starts_cuda")]
    observe("lazy start under -n 4: leaks of the tests that start CUDA", starts)
    assert starts == []


def test_a_reseed_escaping_through_fork_rng_is_named_at_its_own_line(
    pytester: pytest.Pytester, observe: Callable[[str, Any], None]
) -> None:
    pytester.makepyfile(
        test_fork="""
        import torch

        def test_forks():
            torch.rand(1, device="cuda")
            saved = torch.get_rng_state()
            torch.manual_seed(0)
            with torch.random.fork_rng():
                torch.rand(3, device="cuda")
            torch.set_rng_state(saved)
        """
    )
    result, report = run(pytester)
    result.assert_outcomes(passed=1)
    rows = sorted(
        (
            leak["source"],
            leak["detail"],
            leak["kind"],
            leak["origin"]["file"],
            leak["origin"]["line"],
        )
        for leak in report["leaks"]
    )
    observe("fork_rng with CUDA started: leaks", rows)
    assert rows
    for source, _, kind, file, line in rows:
        assert (source, kind, file, line) == ("torch.cuda", "reseeded", "test_fork.py", 6)
