"""The reproducibility gate: ``--rngguard-repeat``, ``deterministic(repeat=)`` and
fingerprint files.

Every inner run here is a fresh process: the gate compares the state of every loaded
source, so what other tests loaded into this process must not take part.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from conftest import require, run, run_with_report


def run_fresh(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return run(pytester, *args, subprocess=True)


def run_fresh_with_report(
    pytester: pytest.Pytester, *args: str
) -> tuple[pytest.RunResult, dict[str, Any]]:
    return run_with_report(pytester, *args, subprocess=True)


# -- repeat in process ---------------------------------------------------------------------


COUNTING = """
    import random

    import pytest

    calls = []

    @pytest.fixture
    def fresh():
        calls.append("fresh")

    @pytest.fixture(scope="module")
    def shared():
        calls.append("shared")

    @pytest.mark.deterministic
    def test_deterministic(fresh, shared, rngguard):
        calls.append("deterministic")
        rngguard.record("draws", [random.random() for _ in range(3)])

    def test_plain(fresh):
        calls.append("plain")

    def test_zz_counts():
        assert calls == {expected}
    """


def test_repeat_runs_deterministic_tests_n_times_with_fresh_function_fixtures(
    pytester: pytest.Pytester,
) -> None:
    expected = ["shared"] + ["fresh", "deterministic"] * 3 + ["fresh", "plain"]
    pytester.makepyfile(COUNTING.format(expected=expected))
    result, report = run_fresh_with_report(pytester, "--rngguard-repeat=3", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*::test_deterministic PASSED*"])
    assert len([x for x in result.stdout.lines if "::test_deterministic " in x]) == 1
    assert report["not_reproducible"] == []
    assert report["tests"] == 3


def test_without_repeat_every_test_runs_once(pytester: pytest.Pytester) -> None:
    expected = ["shared", "fresh", "deterministic", "fresh", "plain"]
    pytester.makepyfile(COUNTING.format(expected=expected))
    run_fresh(pytester).assert_outcomes(passed=3)


def test_the_marker_can_ask_for_repeats_itself(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        calls = []

        @pytest.mark.deterministic(repeat=2)
        def test_twice():
            calls.append("twice")

        @pytest.mark.deterministic
        def test_once():
            calls.append("once")

        def test_zz_counts():
            assert calls == ["twice", "twice", "once"]
        """
    )
    run_fresh(pytester).assert_outcomes(passed=3)


PLANTED = """
    import itertools
    import os
    import time

    import numpy as np
    import pytest

    run_number = itertools.count()

    @pytest.mark.deterministic
    def test_clock(rngguard):
        rngguard.record("elapsed", time.perf_counter_ns())

    @pytest.mark.deterministic
    def test_entropy(rngguard):
        rngguard.record("token", os.urandom(8))

    @pytest.mark.deterministic
    def test_one_element(rngguard):
        logits = np.zeros((2, 3))
        logits[1, 2] = next(run_number)
        rngguard.record("logits", logits)

    def test_not_deterministic(rngguard):
        rngguard.record("elapsed", time.perf_counter_ns())
    """


def test_repeat_fails_a_test_whose_recorded_values_differ_naming_run_record_and_values(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makepyfile(test_planted=PLANTED)
    result, report = run_fresh_with_report(pytester, "--rngguard-repeat=3")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_planted.py::test_clock is not reproducible: run 2 differs from run 1 at "
            "record 'elapsed': * != *",
            "*test_planted.py::test_entropy is not reproducible: run 2 differs from run 1 at "
            "record 'token': b* != b*",
            "*test_planted.py::test_one_element is not reproducible: run 2 differs from run 1 "
            "at record 'logits'[[]1, 2[]]: 0.0 != 1.0",
        ]
    )
    problems = {p["nodeid"]: p for p in report["not_reproducible"]}
    assert sorted(problems) == [
        "test_planted.py::test_clock",
        "test_planted.py::test_entropy",
        "test_planted.py::test_one_element",
    ]
    assert problems["test_planted.py::test_one_element"] == {
        "nodeid": "test_planted.py::test_one_element",
        "runs": 3,
        "detail": "run 2 differs from run 1 at record 'logits'[1, 2]: 0.0 != 1.0",
    }
    elapsed = problems["test_planted.py::test_clock"]["detail"].rpartition(": ")[2]
    first, _, second = elapsed.partition(" != ")
    assert int(first) < int(second)


def test_a_test_that_does_not_touch_torch_is_reproducible_with_torch_loaded(
    pytester: pytest.Pytester,
) -> None:
    require("torch")
    pytester.makepyfile(
        """
        import random

        import pytest
        import torch

        @pytest.mark.deterministic(torch_flags=False)
        def test_draws_from_random_only(rngguard):
            rngguard.record("draws", [random.random() for _ in range(3)])
        """
    )
    run_fresh(pytester, "--rngguard-repeat=2").assert_outcomes(passed=1)


def test_repeat_catches_a_different_amount_of_randomness_drawn(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import itertools
        import random

        import pytest

        run_number = itertools.count(1)

        @pytest.mark.deterministic
        def test_draws_more_each_time():
            for _ in range(next(run_number)):
                random.random()
        """
    )
    result, report = run_fresh_with_report(pytester, "--rngguard-repeat=2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*is not reproducible: run 2 differs from run 1 in the state of 'random' after "
            "the call: the test drew a different amount of randomness*"
        ]
    )
    assert [p["runs"] for p in report["not_reproducible"]] == [2]


def test_repeat_fails_a_test_that_only_sometimes_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import itertools

        import pytest

        run_number = itertools.count(1)

        @pytest.mark.deterministic
        def test_flaky():
            assert next(run_number) != 2
        """
    )
    result, report = run_fresh_with_report(pytester, "--rngguard-repeat=3")
    result.assert_outcomes(failed=1)
    assert report["not_reproducible"][0]["detail"] == "run 2 failed but run 1 passed"


# -- fingerprints --------------------------------------------------------------------------


FINGERPRINTED = """
    import random

    import numpy
    import pytest

    @pytest.mark.deterministic
    def test_sample(rngguard):
        rngguard.record("sample", [random.random() for _ in range(3)])
        rngguard.record("label", "{label}")

    @pytest.mark.deterministic
    def test_stable(rngguard):
        rngguard.record("value", 1)

    def test_not_deterministic():
        pass
    """


def fingerprint_run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return run_fresh(pytester, "--rngguard-fingerprints=fingerprints.json", *args)


def test_fingerprints_are_written_then_compared(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fp=FINGERPRINTED.format(label="a"))
    path = pytester.path / "fingerprints.json"

    first = fingerprint_run(pytester)
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines(["fingerprints: wrote 2 to fingerprints.json"])
    text = path.read_text()
    data = json.loads(text)
    assert list(data) == ["version", "versions", "tests"]
    assert data["version"] == 1
    # only the libraries the run loaded: numpy is imported by the test file, torch is not
    assert set(data["versions"]) == {"python", "numpy"}
    assert list(data["tests"]) == ["test_fp.py::test_sample", "test_fp.py::test_stable"]
    assert set(data["tests"]["test_fp.py::test_sample"]["records"]) == {"sample", "label"}

    second = fingerprint_run(pytester)
    second.assert_outcomes(passed=3)
    assert path.read_text() == text  # compared, not rewritten


def test_a_changed_record_fails_the_fingerprint_comparison_naming_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_fp=FINGERPRINTED.format(label="a"))
    fingerprint_run(pytester).assert_outcomes(passed=3)
    pytester.makepyfile(test_fp=FINGERPRINTED.format(label="b"))
    result, report = run_fresh_with_report(pytester, "--rngguard-fingerprints=fingerprints.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_fp.py::test_sample is not reproducible: differs from the fingerprint file "
            "in record 'label'"
        ]
    )
    assert [p["nodeid"] for p in report["not_reproducible"]] == ["test_fp.py::test_sample"]


def test_fingerprints_update_rewrites_the_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fp=FINGERPRINTED.format(label="a"))
    fingerprint_run(pytester)
    pytester.makepyfile(test_fp=FINGERPRINTED.format(label="b"))
    fingerprint_run(pytester, "--rngguard-fingerprints-update").assert_outcomes(passed=3)
    fingerprint_run(pytester).assert_outcomes(passed=3)


def test_a_file_made_with_other_versions_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fp=FINGERPRINTED.format(label="a"))
    fingerprint_run(pytester)
    path = pytester.path / "fingerprints.json"
    data = json.loads(path.read_text())
    data["versions"]["python"] = "2.7.18"
    path.write_text(json.dumps(data))
    pytester.makepyfile(test_fp=FINGERPRINTED.format(label="b"))
    result = fingerprint_run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*differs from the fingerprint file in record 'label'; note: the fingerprints "
            "were made with other versions (python 2.7.18 -> *)",
            "fingerprints: the fingerprints were made with other versions (python 2.7.18 -> *)",
        ]
    )


def test_a_file_that_is_not_a_fingerprint_file_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    (pytester.path / "fingerprints.json").write_text('{"something": "else"}')
    result = fingerprint_run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--rngguard-fingerprints='fingerprints.json' cannot be read*"])


def test_str_hash_order_passes_repeat_but_fails_fingerprints_across_hash_seeds(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deterministic
        def test_set_order(rngguard):
            rngguard.record("order", list({f"word{i}" for i in range(20)}))
        """
    )
    args = ("--rngguard-repeat=2", "--rngguard-fingerprints=fingerprints.json")
    monkeypatch.setenv("PYTHONHASHSEED", "1")
    run_fresh(pytester, *args).assert_outcomes(passed=1)
    monkeypatch.setenv("PYTHONHASHSEED", "2")
    result = run_fresh(pytester, *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*differs from the fingerprint file in record 'order'*"])


def test_a_fingerprint_does_not_depend_on_which_other_tests_ran(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makepyfile(
        test_a="""
        import random

        import pytest

        @pytest.mark.deterministic
        def test_draws_from_random_only(rngguard):
            rngguard.record("draws", [random.random() for _ in range(4)])
        """,
        test_b="""
        import numpy as np

        def test_uses_numpy():
            np.random.rand()
        """,
    )
    args = ("--rngguard-fingerprints=fingerprints.json",)
    run_fresh(pytester, *args, "test_b.py", "test_a.py").assert_outcomes(passed=2)
    # The same test, alone (as a CI shard or -k would run it).
    run_fresh(pytester, *args, "test_a.py").assert_outcomes(passed=1)


def test_the_rerun_command_of_a_not_reproducible_test_repeats_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import time

        import pytest

        @pytest.mark.deterministic
        def test_clock(rngguard):
            rngguard.record("now", time.perf_counter_ns())
        """
    )
    result = run(pytester, "--rngguard-repeat=2")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    command = lines[lines.index(next(x for x in lines if "re-run just this test" in x)) + 1]
    argv = shlex.split(command.strip())
    assert "--rngguard-repeat=2" in argv
    # Without the repeat the failure would not show again; with it, it does.
    rerun = pytester.run(*argv, "-p", "no:randomly")
    assert rerun.ret == pytest.ExitCode.TESTS_FAILED
    rerun.stdout.fnmatch_lines(["*is not reproducible: run 2 differs from run 1*"])
