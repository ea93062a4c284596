"""Each shim of ``compat.py`` both ways: the private API it finds on the versions installed
here, and the public behaviour it falls back on where a release has moved it."""

from __future__ import annotations

import importlib.metadata
import textwrap
import types
from typing import Any

import pytest
from conftest import leak_rows, run, run_with_report

from pytest_rngguard import compat

# -- pytest's own code -----------------------------------------------------------------------


def test_pytests_own_setup_methods_are_told_from_a_custom_nodes() -> None:
    class CustomItem(pytest.Item):
        def setup(self) -> None:
            pass

    assert compat.PYTEST_PACKAGE == "_pytest"
    assert compat.defined_by_pytest(pytest.Function.setup)
    assert compat.defined_by_pytest(pytest.Module.setup)
    assert not compat.defined_by_pytest(CustomItem.setup)
    assert not compat.defined_by_pytest(None)


# -- re-running a test -----------------------------------------------------------------------

REPEATED = """
    import random

    import pytest

    RUNS = []

    @pytest.mark.deterministic(repeat=3)
    def test_repeated(rngguard):
        RUNS.append(1)
        rngguard.record("draw", random.random())

    def test_counted():
        print(f"RUNS {len(RUNS)}")
"""


def test_a_repeated_test_is_re_run_through_pytests_runtestprotocol(
    pytester: pytest.Pytester,
) -> None:
    from _pytest.runner import runtestprotocol

    assert compat.rerun_protocol() is runtestprotocol
    pytester.makepyfile(REPEATED)
    result = run(pytester, "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*RUNS 3*"])


def test_without_runtestprotocol_a_repeated_test_runs_once_and_says_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pytest_rngguard.gate.rerun_protocol", lambda: None)
    pytester.makepyfile(REPEATED)
    result = run(pytester, "-s")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*RUNS 1*",
            "*rngguard: this pytest cannot re-run a test; *.py::test_repeated runs once*",
        ]
    )
    assert "not reproducible" not in result.stdout.str()


# -- pytest's stand-in fixtures --------------------------------------------------------------

PARAMETRIZED = """
    import random

    import pytest

    @pytest.fixture
    def seeded():
        random.seed(1)

    @pytest.mark.parametrize("i", [1, 2])
    def test_one(i, seeded):
        pass
"""


def test_the_stand_in_fixture_of_a_parametrize_argument_is_pytests_own_function() -> None:
    from _pytest.python import get_direct_param_fixture_func

    assert compat.stand_in_fixture_function() is get_direct_param_fixture_func


def test_without_the_stand_in_function_every_fixture_is_checked_and_the_leaks_are_the_same(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(PARAMETRIZED)
    _, found = run_with_report(pytester)
    monkeypatch.setattr(compat, "stand_in_fixture_function", lambda: None)
    _, fallback = run_with_report(pytester)
    assert leak_rows(fallback) == leak_rows(found)
    assert [row[1:] for row in leak_rows(found)] == [
        ("setup", "seeded", "random", "reseeded"),
        ("setup", "seeded", "random", "reseeded"),
    ]


# -- pytest's setup state --------------------------------------------------------------------

PACKAGE_SETUP = {
    "pkg/__init__.py": """
        import random

        def setup_module():
            random.seed(3)
    """,
    "pkg/test_a.py": """
        def test_first():
            pass

        def test_second():
            pass
    """,
}


def test_the_setup_stack_holds_the_nodes_pytest_has_set_up(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_rngguard.compat import setup_stack

        def pytest_runtest_call(item):
            stack = setup_stack(item.session)
            print(f"STACK {all(node in stack for node in item.listchain())}")
        """
    )
    pytester.makepyfile("def test_one():\n    pass\n")
    result = run(pytester, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*STACK True*"])


@pytest.mark.parametrize("fallback", [False, True])
def test_a_packages_setup_module_leak_is_its_own_either_way(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, fallback: bool
) -> None:
    if fallback:
        monkeypatch.setattr("pytest_rngguard.scopes.setup_stack", lambda session: None)
    for path, text in PACKAGE_SETUP.items():
        (pytester.path / path).parent.mkdir(exist_ok=True)
        (pytester.path / path).write_text(textwrap.dedent(text), encoding="utf-8")
    result, report = run_with_report(pytester, "-v")
    result.assert_outcomes(passed=2, warnings=1)
    assert leak_rows(report, "nodeid", "phase", "source", "kind") == [
        ("pkg/test_a.py::test_first", "setup", "random", "reseeded")
    ]
    result.stdout.fnmatch_lines(["*random reseeded during setup (setup_module of package 'pkg')*"])


# -- Hypothesis's seed -----------------------------------------------------------------------


def _given_test() -> Any:
    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.integers())
    def test(n: int) -> None:
        pass

    return test


def test_hypothesis_keeps_the_seed_where_the_shim_puts_it() -> None:
    pytest.importorskip("hypothesis")
    assert compat._hypothesis_keeps_seed()
    test = _given_test()
    seeded = compat.seed_hypothesis(test, 1234)
    assert seeded is not None
    assert test._hypothesis_internal_use_seed == 1234
    compat.unseed_hypothesis(seeded)
    assert getattr(test, "_hypothesis_internal_use_seed", None) is None


def test_a_hypothesis_that_keeps_its_seed_elsewhere_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("hypothesis")
    monkeypatch.setattr(compat, "_hypothesis_keeps_seed", lambda: False)
    test = _given_test()
    before = dict(vars(test))
    assert compat.seed_hypothesis(test, 1234) is None
    assert vars(test) == before


def test_a_function_that_is_no_hypothesis_test_is_left_alone() -> None:
    def test() -> None:
        pass

    assert compat.seed_hypothesis(test, 1) is None
    assert compat.seed_hypothesis(None, 1) is None
    assert vars(test) == {}


# -- importlib's distribution names ----------------------------------------------------------


class _MetadataOnly:
    """A distribution as ``importlib.metadata`` promises it: its metadata, no private name."""

    def __init__(self, dist: importlib.metadata.Distribution) -> None:
        self.metadata = dist.metadata


def test_a_distributions_name_from_its_metadata_is_the_one_importlib_keeps() -> None:
    named = [
        dist
        for dist in importlib.metadata.distributions()
        if isinstance(getattr(dist, "_normalized_name", None), str)
    ]
    assert named, "importlib keeps the normalised name of installed distributions"
    for dist in named:
        assert compat.distribution_name(dist) == dist._normalized_name  # type: ignore[attr-defined]
        assert compat.distribution_name(_MetadataOnly(dist)) == dist._normalized_name  # type: ignore[attr-defined]


def test_a_distribution_without_a_name_has_none() -> None:
    assert compat.distribution_name(types.SimpleNamespace(metadata={})) is None
    assert compat.distribution_name(types.SimpleNamespace()) is None
