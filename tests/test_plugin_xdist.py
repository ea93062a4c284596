"""With pytest-xdist the controller shows and reports what a serial run would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import NO_RANDOMLY

pytest.importorskip("xdist")

#: Every worker is a fresh process: leave out the plugins these runs do not need.
LEAN = (*NO_RANDOMLY, "-p", "no:hypothesispytest", "-p", "no:anyio")

SUITE = {
    "helpers": """
        import numpy as np
        import numpy.random  # see test_seeds_numpy_before_numpy_random_is_loaded

        def set_random_seed(seed):
            np.random.seed(seed)
        """,
    "test_models": """
        import itertools
        import os
        import random

        import helpers
        import pytest

        run_number = itertools.count()

        @pytest.fixture
        def seeded():
            helpers.set_random_seed(1)
            yield
            random.seed(2)

        def test_fixture_leaks(seeded):
            pass

        def test_body_leaks():
            helpers.set_random_seed(3)

        def test_env_leaks():
            os.environ["PL_GLOBAL_SEED"] = "3"

        @pytest.mark.parametrize("n", range(6))
        def test_clean(n):
            random.random()

        @pytest.mark.deterministic
        def test_reproducible(rngguard):
            rngguard.record("draws", [random.random() for _ in range(4)])

        @pytest.mark.deterministic
        def test_not_reproducible(rngguard):
            rngguard.record("run", next(run_number))
        """,
    "test_more": """
        import random

        import helpers

        def test_more_leaks():
            helpers.set_random_seed(4)
            random.seed(4)

        def test_more_clean():
            pass
        """,
}


def run_suite(pytester: pytest.Pytester, name: str, *args: str) -> tuple[Any, dict[str, Any]]:
    report = pytester.path / f"{name}.json"
    result = pytester.runpytest_subprocess(
        *LEAN,
        f"--rngguard-report={report}",
        "--rngguard-repeat=2",
        "--rngguard-fingerprints=fingerprints.json",
        *args,
    )
    return result, json.loads(report.read_text())


def canonical(items: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(item, sort_keys=True) for item in items)


def test_the_controller_reports_what_a_serial_run_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, numpy: object
) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    pytester.makepyfile(**SUITE)
    serial, serial_report = run_suite(pytester, "serial")
    serial.assert_outcomes(passed=12, failed=1, warnings=4)
    assert len(serial_report["leaks"]) == 6

    # The serial run wrote the fingerprints; the workers' seeds must match them.
    parallel, parallel_report = run_suite(pytester, "parallel", "-n", "2")
    parallel.assert_outcomes(passed=12, failed=1, warnings=4)
    parallel.stdout.fnmatch_lines(["*2 workers*"])
    assert canonical(parallel_report["leaks"]) == canonical(serial_report["leaks"])
    assert parallel_report["not_reproducible"] == serial_report["not_reproducible"]
    assert {k: v for k, v in parallel_report.items() if k not in ("leaks", "sources")} == {
        k: v for k, v in serial_report.items() if k not in ("leaks", "sources")
    }
    summary = [
        "6 leaks of global random state in 4 tests or modules:",
        "2 tests: numpy reseeded during call by helpers.py:5 in set_random_seed",
        "  test_models.py::test_body_leaks, test_more.py::test_more_leaks",
        "test_models.py::test_fixture_leaks: random reseeded during teardown by "
        "test_models.py:14 in seeded",
    ]
    for result in (serial, parallel):
        for line in summary:  # the order of groups follows the order tests finished in
            result.stdout.fnmatch_lines(["*= rngguard =*", line])


def test_collection_leaks_are_reported_once_although_every_worker_collects(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_seeds_at_import="""
        import random

        random.seed(8)

        def test_one():
            pass

        def test_two():
            pass
        """
    )
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        *LEAN, "-n", "2", "--rngguard=fail", f"--rngguard-report={report}"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    leaks = json.loads(report.read_text())["leaks"]
    assert [(leak["nodeid"], leak["phase"]) for leak in leaks] == [
        ("test_seeds_at_import.py", "collection")
    ]


def test_fail_mode_fails_leaking_tests_on_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import random

        def test_leaks():
            random.seed(1)

        def test_clean():
            pass
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "-n", "2", "--rngguard=fail")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test_leaks changed global random state:*"])
