"""The checks of ``bench/realworld.py`` (run by ``tox -e realworld``) catch what they are
for: an origin in pytest, an origin on a line that seeds nothing, a hand-seeded test reported
elsewhere, an outcome that changed.  Fast, and without the real suites."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st


def _load() -> ModuleType:
    name = "rngguard_bench_realworld"  # the name tests/real_suites/conftest.py loads it under
    if name not in sys.modules:
        path = Path(__file__).parent.parent / "bench" / "realworld.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


realworld = _load()

TEST_MODULE = """\
import numpy as np


class TestDraws:
    def test_seeds(self):
        np.random.seed(
            1
        )
        np.random.rand()

    def test_only_draws(self):
        np.random.rand()


def test_replaces(bg):
    np.random.set_bit_generator(bg)
"""


def leak(nodeid: str, file: str, line: int, *, phase: str = "call", kind: str = "reseeded") -> Any:
    origin = {"file": file, "line": line, "function": "f", "stack": [f"{file}:{line} in f"]}
    return {"nodeid": nodeid, "phase": phase, "source": "numpy", "kind": kind, "origin": origin}


@pytest.fixture
def test_module(tmp_path: Path) -> str:
    path = tmp_path / "test_mod.py"
    path.write_text(TEST_MODULE, encoding="utf-8")
    return str(path)


def suite(**fields: Any) -> Any:
    return realworld.Suite(name="s", distributions=(), args=(), long_args=(), **fields)


def test_an_origin_in_pytest_is_a_problem(test_module: str) -> None:
    """What the NumPy defect of 2026-12-02 looked like."""
    problems = realworld.check_origins(
        suite(), [leak(f"{test_module}::test_x", "_pytest/python.py", 187)]
    )
    assert "names the test runner" in problems[0]


def test_an_origin_on_a_line_that_seeds_nothing_is_a_problem(test_module: str) -> None:
    nodeid = f"{test_module}::TestDraws::test_seeds"
    assert realworld.check_origins(suite(), [leak(nodeid, test_module, 6)]) == []
    [problem] = realworld.check_origins(suite(), [leak(nodeid, test_module, 9)])
    assert "np.random.rand()" in problem
    drawn = leak(nodeid, test_module, 9, kind="advanced")
    assert realworld.check_origins(suite(), [drawn]) == []


def test_an_origin_outside_the_tests_own_file_is_a_problem_where_the_suite_says_so(
    test_module: str, tmp_path: Path
) -> None:
    helper = tmp_path / "helper.py"
    helper.write_text("np.random.seed(0)\n", encoding="utf-8")
    elsewhere = leak(f"{test_module}::test_replaces", str(helper), 1)
    assert realworld.check_origins(suite(), [elsewhere]) == []
    [problem] = realworld.check_origins(suite(origins_in_own_file=True), [elsewhere])
    assert "not the test's own file" in problem


def test_the_seeding_lines_of_a_test_are_read_from_its_source(test_module: str) -> None:
    assert realworld.seeding_lines(f"{test_module}::TestDraws::test_seeds") == {6, 7, 8}
    assert realworld.seeding_lines(f"{test_module}::TestDraws::test_only_draws") == set()
    assert realworld.seeding_lines(f"{test_module}::test_replaces[pcg]") == {16}
    assert realworld.seeding_lines(f"{test_module}::test_missing") == set()


def test_a_hand_seeded_test_must_be_reported_at_its_own_seeding_line(test_module: str) -> None:
    nodeid = f"{test_module}::TestDraws::test_seeds"
    seeded = suite(hand_seeded=(nodeid,))
    assert realworld.check_hand_seeded(seeded, [leak(nodeid, test_module, 7)], [nodeid]) == []
    [wrong] = realworld.check_hand_seeded(seeded, [leak(nodeid, test_module, 9)], [nodeid])
    assert "is not its own seeding call" in wrong
    [missing] = realworld.check_hand_seeded(seeded, [], [nodeid])
    assert "no leak in its call was reported" in missing
    [not_run] = realworld.check_hand_seeded(seeded, [], [])
    assert "did not run" in not_run


def test_an_outcome_that_differs_is_unexplained_unless_the_suite_gives_a_reason() -> None:
    off = {"a::t1": {"setup": "passed", "call": "passed"}, "a::t2": {"setup": "passed"}}
    on = {"a::t1": {"setup": "passed", "call": "failed"}, "a::t2": {"setup": "passed"}}
    [difference] = realworld.compare_outcomes(off, on, {})
    assert (difference.nodeid, difference.off, difference.on) == ("a::t1", "passed", "failed")
    assert difference.reason is None
    assert "UNEXPLAINED" in difference.describe()
    [explained] = realworld.compare_outcomes(off, on, {"a::t*": "draws what t0 seeded"})
    assert explained.reason == "draws what t0 seeded"


phases = st.fixed_dictionaries(
    {},
    optional={
        "setup": st.sampled_from(["passed", "failed", "skipped"]),
        "call": st.sampled_from(["passed", "failed", "skipped", "xfailed", "xpassed"]),
        "teardown": st.sampled_from(["passed", "failed"]),
    },
)


@given(st.dictionaries(st.sampled_from(["a::t1", "a::t2", "b::t3"]), phases), st.data())
def test_only_the_tests_whose_outcome_changed_are_differences(
    outcomes: dict[str, dict[str, str]], data: st.DataObject
) -> None:
    assert realworld.compare_outcomes(outcomes, outcomes, {}) == []
    changed = dict(outcomes)
    if outcomes:
        nodeid = data.draw(st.sampled_from(sorted(outcomes)))
        changed[nodeid] = data.draw(phases)
        same = realworld.summarize(outcomes[nodeid]) == realworld.summarize(changed[nodeid])
        found = [d.nodeid for d in realworld.compare_outcomes(outcomes, changed, {})]
        assert found == ([] if same else [nodeid])


def test_the_recorder_sees_every_outcome_pytest_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script loaded as a plugin (as ``-p realworld`` loads it in every run): pluggy
    accepts every ``pytest_`` name in it, and its recorder sees each outcome."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken_setup():
            raise RuntimeError("setup")

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("teardown")

        def test_passes(): pass
        def test_fails(): assert False
        def test_skips(): pytest.skip("no")
        @pytest.mark.xfail(strict=False)
        def test_xfails(): assert False
        @pytest.mark.xfail(strict=False)
        def test_xpasses(): pass
        def test_setup_errors(broken_setup): pass
        def test_teardown_errors(broken_teardown): pass
        """
    )
    path = pytester.path / "outcomes.json"
    monkeypatch.setenv(realworld.OUTCOMES_ENV, str(path))
    result = pytester.runpytest("-p", "no:randomly", plugins=[realworld])
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    recorded = json.loads(path.read_text(encoding="utf-8"))
    words = {
        nodeid.rpartition("::")[2]: realworld.summarize(p)
        for nodeid, p in recorded["tests"].items()
    }
    assert words == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_skips": "skipped",
        "test_xfails": "xfailed",
        "test_xpasses": "xpassed",
        "test_setup_errors": "error in setup",
        "test_teardown_errors": "passed, error in teardown",
    }
    messages = {key.rpartition("::")[2]: text for key, text in recorded["messages"].items()}
    assert messages["test_setup_errors (setup)"].endswith("RuntimeError: setup")


def test_the_table_shows_the_median_ratio_and_its_range_over_the_rounds() -> None:
    result = realworld.SuiteResult(
        suite="numpy.random",
        versions={"numpy": "2.4.6"},
        args=["--pyargs", "numpy.random", "-k", "not slow"],
        tests=3,
        outcomes={"passed": 3},
        leaks=[leak("a.py::t", "a.py", 3), leak("a.py::u", "a.py", 3)],
        differences=[realworld.Difference("a.py::v", "passed", "failed", "it draws t's seed")],
        problems={},
        folder="",
        wall_off=[10.0, 10.0, 10.0],
        wall_on=[11.0, 13.0, 12.0],
        cpu_off=[4.0, 4.0, 4.0],
        cpu_on=[4.4, 4.4, 4.8],
    )
    table = realworld.markdown([result], long=False, minutes=1.0)
    assert "3 pairs of runs per suite" in table
    assert (
        "| numpy.random | 3 | 2 | `a.py:3` (2) | 1 | 1.20 (1.10-1.30) | 1.10 (1.10-1.20) |" in table
    )
    assert "`--pyargs numpy.random -k 'not slow'`; 3 passed." in table
    assert "a.py::v: passed without the plugin, failed with it (it draws t's seed)" in table
