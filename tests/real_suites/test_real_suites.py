"""The plugin over test suites nobody here wrote: NumPy's ``numpy.random`` (and two classes of
``numpy.linalg``), a SciPy ``scipy.stats`` subset and a scikit-learn subset, as installed.

Each suite runs twice in fresh processes, plugin off and on (``bench/realworld.py``); what is
compared is what pytest itself recorded for every test, and where a leak's origin is checked,
the line it must name is read from the test's own source (``seeding_lines``), never taken
from the plugin's report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import MODE, realworld, results_key

LONG = MODE == "long"
NUMPY = realworld.SUITES["numpy.random"]
SKLEARN = realworld.SUITES["scikit-learn"]

#: Test files of numpy.random the tracer run covers: the hand-seeded tests that take seconds.
TRACED = (
    "--pyargs",
    "numpy.random.tests.test_regression",
    "numpy.random.tests.test_randomstate_regression",
    "numpy.random.tests.test_randomstate",
    "-k",
    "not test_randomstate.py or swap or bit_gen or integer_dtype or vonmises",
)


@pytest.fixture(scope="session")
def suite_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Any]:
    """Runs a suite (both runs and every check) the first time it is asked for."""
    done: dict[str, Any] = {}

    def suite_run(name: str) -> Any:
        if name not in done:
            out = tmp_path_factory.mktemp("realworld")
            done[name] = realworld.run_suite(realworld.SUITES[name], long=LONG, out=out)
            request.config.stash.setdefault(results_key, []).append(done[name])
        return done[name]

    return suite_run


@pytest.fixture(params=list(realworld.SUITES))
def result(request: pytest.FixtureRequest, suite_run: Callable[[str], Any]) -> Any:
    return suite_run(request.param)


def test_the_session_ends_without_a_crash_or_a_traceback_from_the_plugin(result: Any) -> None:
    assert result.problems["session"] == []
    assert result.tests > 300, result.outcomes


def test_every_test_ends_as_it_does_without_the_plugin_or_the_difference_is_explained(
    result: Any,
) -> None:
    assert result.problems["outcomes"] == []
    assert all(difference.reason for difference in result.differences)


def test_every_origin_names_a_seeding_line_and_never_the_test_runner(result: Any) -> None:
    assert result.leaks, "every suite here seeds somewhere"
    assert result.problems["origins"] == []
    unknown = [leak for leak in result.leaks if leak["origin"] is None]
    assert unknown == []


def test_tests_that_seed_by_hand_are_reported_at_their_own_line(result: Any) -> None:
    suite = realworld.SUITES[result.suite]
    if not suite.hand_seeded:
        pytest.skip(f"{suite.name}: no test of the subset seeds by hand")
    assert result.problems["hand-seeded"] == []


# -- NumPy: its tests live inside the numpy package ------------------------------------------


def assert_names_the_tests_own_lines(leaks: list[dict[str, Any]]) -> None:
    """Every leak names the file of the test it is reported for, at a seeding call: for a
    test's call, a seeding call in that test's own body (read from its source)."""
    for leak in leaks:
        origin = leak["origin"]
        assert origin is not None, leak
        assert origin["file"] == realworld.test_file(leak["nodeid"]), leak
        assert not any(f.startswith(realworld.RUNNER_FILES) for f in realworld.origin_lines(origin))
        if leak["phase"] == "call":
            assert origin["line"] in realworld.seeding_lines(leak["nodeid"]), leak
        else:  # a fixture's teardown, a module's import: a seeding line of the same file
            assert realworld.SEEDING_CALL.search(
                realworld.line_at(origin["file"], origin["line"])
            ), leak


def test_numpy_tests_seeding_by_hand_are_named_at_their_own_line_not_at_pytests(
    suite_run: Callable[[str], Any],
) -> None:
    """The defect of 2026-12-02: all of NumPy's leaks were reported at
    ``_pytest/python.py:187 in pytest_pyfunc_call``, since the frames of the library that
    owns the source are skipped and NumPy's tests are inside NumPy."""
    result = suite_run(NUMPY.name)
    calls = [leak for leak in result.leaks if leak["phase"] == "call"]
    assert len(calls) >= 25
    assert_names_the_tests_own_lines(result.leaks)
    imports = [leak for leak in result.leaks if leak["phase"] == "collection"]
    assert [leak["nodeid"] for leak in imports] == ["numpy/linalg/tests/test_linalg.py"]


def test_numpy_origins_are_the_same_with_the_tracer(
    suite_run: Callable[[str], Any], tmp_path: Path
) -> None:
    """``--rngguard-trace`` sees the same calls from the same lines."""
    plain = {
        (leak["nodeid"], leak["phase"], leak["source"], leak["kind"]): leak["origin"]
        for leak in suite_run(NUMPY.name).leaks
    }
    traced = realworld.run_pytest(TRACED, tmp_path, plugin=True, extra=("--rngguard-trace",))
    assert traced.returncode == 0, traced.output[-3000:]
    assert traced.report is not None
    leaks = traced.report["leaks"]
    assert len(leaks) >= 20
    assert_names_the_tests_own_lines(leaks)
    for leak in leaks:
        key = (leak["nodeid"], leak["phase"], leak["source"], leak["kind"])
        assert leak["origin"] == plain[key], key


# -- scikit-learn: a package-level setup_module ----------------------------------------------


def test_scikit_learns_setup_module_is_named_as_what_seeded_not_the_first_test(
    suite_run: Callable[[str], Any],
) -> None:
    """``sklearn/__init__.py``'s ``setup_module`` seeds ``random`` and NumPy when pytest sets
    the package up, in the setup of its first test: the report and the warning say so."""
    result = suite_run(SKLEARN.name)
    setup = [leak for leak in result.leaks if leak["origin"]["function"] == "setup_module"]
    assert sorted(leak["source"] for leak in setup) == ["numpy", "random"]
    first = setup[0]["nodeid"]
    expected_lines = realworld.seeding_lines("sklearn/__init__.py::setup_module")
    for leak in setup:
        assert (leak["nodeid"], leak["phase"], leak["fixture"]) == (first, "setup", None)
        assert leak["scope"] == "setup_module of package 'sklearn'"
        assert leak["origin"]["file"] == "sklearn/__init__.py"
        assert leak["origin"]["line"] in expected_lines
    output = (Path(result.folder) / "output.txt").read_text(encoding="utf-8")
    heading = f"setup_module of package 'sklearn', run before {first}, changed global random state:"
    assert heading in output
    assert f"{first} changed global random state" not in output
