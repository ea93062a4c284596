"""Scoped restore, checked against what the tests themselves see.

Every test here runs an inner suite with ``rng_observer`` loaded, which records the state each
test's body starts from (``getstate``, never the plugin's report), and compares that with what
it must be: a change belongs to the scope that made it (a test module's import, a fixture of
scope S, the test), holds inside it and is undone when it ends.  Each test is also a
regression test for a defect found by observing the state instead of the report.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import leak_rows, require, run_with_report
from rng_observer import numpy_print, random_print

OBSERVER = (Path(__file__).parent / "rng_observer.py").read_text(encoding="utf-8")


def observed(
    pytester: pytest.Pytester, *args: str, plugins: tuple[str, ...] = ()
) -> tuple[pytest.RunResult, dict[str, Any], list[dict[str, Any]]]:
    """An inner run in a fresh process loading only this plugin, the observer and
    ``plugins``: its result, its JSON report and what each test saw, in the order run."""
    pytester.makepyfile(rng_observer=OBSERVER)
    report = pytester.path / "report.json"
    seen = pytester.path / "seen.jsonl"
    seen.unlink(missing_ok=True)
    loaded = [arg for name in ("rngguard", "rng_observer", *plugins) for arg in ("-p", name)]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        env.setenv("RNG_OBSERVATIONS", str(seen))
        env.delenv("PL_GLOBAL_SEED", raising=False)
        result = pytester.runpytest_subprocess(*loaded, f"--rngguard-report={report}", *args)
    lines = [json.loads(line) for line in seen.read_text().splitlines()] if seen.exists() else []
    data = json.loads(report.read_text()) if report.exists() else {}
    return result, data, lines


def by_test(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["nodeid"].rpartition("::")[2]: line["seen"] for line in lines}


def seeded_random(seed: int) -> str:
    return random_print(random.Random(seed).getstate())


# -- test modules' imports -------------------------------------------------------------------


def test_a_module_seeded_at_import_passes_its_first_draw_assertion_as_without_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_seeded_module="""
        import random

        random.seed(0)
        STREAM = random.Random(0)

        def test_first_draw_is_the_seeded_one():
            assert random.random() == STREAM.random()

        def test_the_next_draw_continues_the_stream():
            assert random.random() == STREAM.random()
        """,
        test_other="""
        def test_other_module():
            pass
        """,
    )
    result, report, lines = observed(pytester)
    result.assert_outcomes(passed=3, warnings=1)
    seen = by_test(lines)
    assert seen["test_first_draw_is_the_seeded_one"]["random"] == seeded_random(0)
    assert seen["test_other_module"]["random"] != seeded_random(0)
    (leak,) = report["leaks"]
    assert (leak["phase"], leak["source"], leak["kind"], leak["restored"]) == (
        "collection",
        "random",
        "reseeded",
        True,
    )


def test_allow_rng_leak_on_a_module_excuses_its_import_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_excused="""
        import random

        import pytest

        pytestmark = pytest.mark.allow_rng_leak("random")
        random.seed(5)

        def test_sees_it():
            pass
        """,
        test_later="""
        def test_does_not():
            pass
        """,
    )
    result, report, lines = observed(pytester)
    result.assert_outcomes(passed=2)
    assert report["leaks"] == []
    seen = by_test(lines)
    assert seen["test_sees_it"]["random"] == seeded_random(5)
    assert seen["test_does_not"]["random"] != seeded_random(5)


# -- fixtures of wider scopes ----------------------------------------------------------------


def test_a_session_fixture_that_seeds_numpy_holds_for_every_later_test(
    pytester: pytest.Pytester, numpy: Any
) -> None:
    pytester.makeconftest(
        """
        import numpy as np
        import pytest

        @pytest.fixture(scope="session", autouse=True)
        def seeded():
            np.random.seed(0)
        """
    )
    pytester.makepyfile(
        test_a="def test_one():\n    pass\n\ndef test_two():\n    pass\n",
        test_b="def test_three():\n    pass\n",
    )
    result, report, lines = observed(pytester)
    result.assert_outcomes(passed=3, warnings=1)
    expected = numpy_print(numpy.random.RandomState(0).get_state())
    assert {name: seen["numpy"] for name, seen in by_test(lines).items()} == {
        "test_one": expected,
        "test_two": expected,
        "test_three": expected,
    }
    (leak,) = report["leaks"]
    assert (leak["nodeid"], leak["phase"], leak["fixture"], leak["restored"]) == (
        "test_a.py::test_one",
        "setup",
        "seeded",
        True,
    )


def test_a_module_fixture_holds_for_the_tests_of_its_module_and_is_undone_after(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_a="""
        import random

        import pytest

        @pytest.fixture(scope="module")
        def seeded():
            random.seed(3)

        def test_one(seeded):
            pass

        def test_two(seeded):
            pass
        """,
        test_b="def test_three():\n    pass\n",
    )
    result, report, lines = observed(pytester)
    result.assert_outcomes(passed=3, warnings=1)
    seen = by_test(lines)
    assert seen["test_one"]["random"] == seen["test_two"]["random"] == seeded_random(3)
    assert seen["test_three"]["random"] != seeded_random(3)
    assert [(leak["fixture"], leak["restored"]) for leak in report["leaks"]] == [("seeded", True)]


def test_a_test_reseeding_under_a_module_fixture_goes_back_to_the_fixtures_seed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_a="""
        import random

        import pytest

        @pytest.fixture(scope="module")
        def seeded():
            random.seed(3)

        def test_one(seeded):
            random.seed(4)

        def test_two(seeded):
            pass
        """
    )
    result, report, lines = observed(pytester)
    result.assert_outcomes(passed=2, warnings=1)
    assert by_test(lines)["test_two"]["random"] == seeded_random(3)
    assert sorted((leak["phase"], leak["restored"]) for leak in report["leaks"]) == [
        ("call", True),
        ("setup", True),
    ]


# -- libraries first imported by a test ------------------------------------------------------


def test_a_library_first_imported_by_a_leaking_test_goes_back_to_its_state_at_import(
    pytester: pytest.Pytester,
) -> None:
    require("torch")
    pytester.makepyfile(
        test_first_import="""
        import json
        import os
        import sys

        def test_imports_and_seeds():
            import numpy.random
            import torch

            with open("at-import.json", "w") as handle:
                json.dump([torch.initial_seed()], handle)
            torch.manual_seed(42)
            numpy.random.seed(42)

        def test_sees_the_import_state():
            import torch

            with open("at-import.json") as handle:
                (at_import,) = json.load(handle)
            assert torch.initial_seed() == at_import

        def test_reseeds_the_same_way():
            import torch

            torch.manual_seed(42)
        """
    )
    result, report, lines = observed(pytester)
    result.assert_outcomes(passed=3, warnings=2)
    rows = sorted(
        (leak["nodeid"].rpartition("::")[2], leak["source"], leak["restored"])
        for leak in report["leaks"]
        if leak["source"] in ("numpy", "torch")
    )
    # The second identical reseed is a leak too: the first was really put back.
    assert rows == [
        ("test_imports_and_seeds", "numpy", True),
        ("test_imports_and_seeds", "torch", True),
        ("test_reseeds_the_same_way", "torch", True),
    ]
    seen = by_test(lines)
    assert seen["test_sees_the_import_state"]["torch_seed"] != 42


def test_restore_all_puts_a_lazily_loaded_numpy_back_for_every_test(
    pytester: pytest.Pytester,
) -> None:
    require("numpy")
    pytester.makepyfile(
        test_lazy="""
        import json

        import numpy as np
        import pytest

        @pytest.mark.parametrize("i", range(20))
        def test_draws_first(i):
            with open("draws.jsonl", "a") as handle:
                handle.write(json.dumps(float(np.random.rand())) + "\\n")
        """
    )
    result, _, _ = observed(pytester, "--rngguard-restore=all")
    result.assert_outcomes(passed=20)
    draws = (pytester.path / "draws.jsonl").read_text().split()
    assert len(draws) == 20
    assert len(set(draws)) == 1


# -- what was put back is what is said to be -------------------------------------------------


def test_a_source_whose_restore_raises_is_reported_as_not_put_back(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import pytest_rngguard
        from pytest_rngguard.sources import RESEEDED, Difference, ModuleSource

        class Stubborn(ModuleSource):
            name = "stubborn"
            module = "os"
            value = 0

            def capture(self):
                return Stubborn.value

            def restore(self, state):
                raise RuntimeError("cannot go back")

            def seed(self, seed):
                Stubborn.value = seed

            def classify(self, before, after):
                return [Difference(RESEEDED)]

        pytest_rngguard.register_source(Stubborn())
        """
    )
    pytester.makepyfile(
        """
        import conftest

        def test_changes_it():
            conftest.Stubborn.value += 1
        """
    )
    result, report, _ = observed(pytester, "-p", "conftest")
    result.assert_outcomes(passed=1, warnings=2)
    (leak,) = report["leaks"]
    assert (leak["source"], leak["restored"]) == ("stubborn", False)
    result.stdout.fnmatch_lines(["*not put back: stubborn (restoring it raised RuntimeError*"])
    result.stdout.no_fnmatch_line("*put back after the test: stubborn*")


# -- the kind and the line -------------------------------------------------------------------


def test_a_numpy_seed_followed_by_millions_of_draws_is_still_a_reseed(
    pytester: pytest.Pytester,
) -> None:
    require("numpy")
    pytester.makepyfile(
        """
        import numpy as np

        def test_seeds_then_draws_a_lot():
            np.random.seed(7)
            np.random.standard_normal(3_000_000)
        """
    )
    result, report, _ = observed(pytester)
    result.assert_outcomes(passed=1, warnings=1)
    ((kind, line),) = [(leak["kind"], leak["origin"]["line"]) for leak in report["leaks"]]
    assert (kind, line) == ("reseeded", 4)


def test_through_fork_rng_the_reseed_is_named_at_its_own_line(pytester: pytest.Pytester) -> None:
    require("torch")
    pytester.makepyfile(
        """
        import torch

        def test_forks():
            torch.manual_seed(0)
            with torch.random.fork_rng(devices=[]):
                torch.rand(5)
            torch.rand(2)
        """
    )
    result, report, _ = observed(pytester)
    result.assert_outcomes(passed=1, warnings=1)
    rows = [
        (leak["source"], leak["kind"], leak["origin"]["file"], leak["origin"]["line"])
        for leak in report["leaks"]
        if leak["source"] == "torch"
    ]
    assert rows == [
        ("torch", "reseeded", "test_through_fork_rng_the_reseed_is_named_at_its_own_line.py", 4)
    ]
    for leak in report["leaks"]:
        assert "contextlib" not in (leak["origin"] or {}).get("file", "")


# -- Hypothesis ------------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True])
def test_what_hypothesis_puts_back_after_each_example_never_escaped(
    pytester: pytest.Pytester, strict: bool
) -> None:
    require("hypothesis")
    pytester.makepyfile(
        """
        import random

        from hypothesis import given, settings, strategies as st

        @settings(max_examples=20, database=None)
        @given(st.integers(0, 100))
        def test_reseeds_in_every_example(n):
            random.seed(n)
            random.random()

        @settings(max_examples=20, database=None)
        @given(st.integers())
        def test_draws_in_every_example(n):
            random.random()

        def test_after():
            pass
        """
    )
    args = ["--rngguard-strict"] if strict else []
    result, report, lines = observed(pytester, *args, plugins=("hypothesispytest",))
    result.assert_outcomes(passed=3)
    assert report["leaks"] == []
    seen = by_test(lines)
    assert seen["test_after"]["random"] == seen["test_reseeds_in_every_example"]["random"]


# -- real suites -----------------------------------------------------------------------------


def test_numpy_linalg_tests_start_from_the_same_state_in_every_run(
    pytester: pytest.Pytester, numpy: Any
) -> None:
    """NumPy's own ``numpy.linalg`` tests seed once, at the import of ``test_linalg.py``:
    with the plugin, each of that module's tests starts from the same NumPy state run after
    run, as without it; and the leaks name the suite's own lines, although its files live
    inside the numpy package."""
    require("numpy")
    args = ("--pyargs", "numpy.linalg", "-k", "TestCholesky or TestCond", "-p", "no:cacheprovider")
    runs = []
    for _ in range(2):
        result, report, lines = observed(pytester, *args)
        assert result.ret == 0, result.stdout.str()[-2000:]
        runs.append(
            {x["nodeid"]: x["seen"]["numpy"] for x in lines if "test_linalg" in x["nodeid"]}
        )
    assert len(runs[0]) > 20
    assert runs[0] == runs[1]
    origins = {
        (leak["phase"], leak["origin"]["file"], leak["origin"]["line"]) for leak in report["leaks"]
    }
    import importlib.util

    spec = importlib.util.find_spec("numpy.linalg.tests.test_linalg")
    assert spec is not None
    assert spec.origin is not None
    source = Path(spec.origin).read_text(encoding="utf-8").splitlines()
    at_import = next(n for n, line in enumerate(source, 1) if line.startswith("np.random.seed("))
    assert ("collection", "numpy/linalg/tests/test_linalg.py", at_import) in origins
    assert all(file == "numpy/linalg/tests/test_linalg.py" for _, file, _ in origins)


@pytest.mark.skipif(
    os.environ.get("RNGGUARD_SKIP_SKLEARN") == "1", reason="RNGGUARD_SKIP_SKLEARN=1"
)
def test_scikit_learn_seeded_by_sklearn_seed_starts_every_test_from_the_same_state(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scikit-learn's package-level ``setup_module`` seeds ``random`` and NumPy from
    ``SKLEARN_SEED`` (its switch for reproducible runs): that holds for the whole package."""
    require("sklearn")
    monkeypatch.setenv("SKLEARN_SEED", "42")
    args = ("--pyargs", "sklearn.utils.tests.test_random", "-q", "-p", "no:cacheprovider")
    runs = []
    for _ in range(2):
        result, _, lines = observed(pytester, *args)
        assert result.ret == 0, result.stdout.str()[-2000:]
        runs.append(
            {line["nodeid"]: (line["seen"]["random"], line["seen"].get("numpy")) for line in lines}
        )
    assert len(runs[0]) > 3
    assert runs[0] == runs[1]


def make_package_that_seeds_in_setup_module(pytester: pytest.Pytester, *, first: str) -> None:
    """A package whose ``__init__.py`` seeds ``random`` in ``setup_module`` (as
    scikit-learn's does), and whose first test is ``first``."""
    package = pytester.mkpydir("pkg")
    (package / "__init__.py").write_text(
        "import random\n\ndef setup_module(module):\n    random.seed(42)\n", encoding="utf-8"
    )
    (package / "test_a.py").write_text(
        f"import random\n\n\ndef test_first():\n    {first}\n\n\n"
        "def test_second():\n    random.random()\n",
        encoding="utf-8",
    )


def test_names_a_packages_setup_module_not_the_first_test_as_who_changed_the_state(
    pytester: pytest.Pytester,
) -> None:
    """pytest runs a package's ``setup_module`` in the setup of the package's first test:
    the warning, the failure and the JSON report name the setup, not the test."""
    make_package_that_seeds_in_setup_module(pytester, first="pass")
    result, report = run_with_report(pytester, "--rngguard=fail", subprocess=True)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "setup_module of package 'pkg', run before pkg/test_a.py::test_first, changed "
            "global random state:",
            "  random reseeded during setup (setup_module of package 'pkg') at "
            "pkg/__init__.py:4 in setup_module",
        ]
    )
    assert "pkg/test_a.py::test_first changed global random state" not in result.stdout.str()
    assert leak_rows(report, "nodeid", "phase", "fixture", "scope") == [
        ("pkg/test_a.py::test_first", "setup", None, "setup_module of package 'pkg'")
    ]


def test_names_the_first_test_and_its_packages_setup_module_when_both_changed_the_state(
    pytester: pytest.Pytester,
) -> None:
    make_package_that_seeds_in_setup_module(pytester, first="random.seed(7)")
    result, report = run_with_report(pytester, subprocess=True)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*pkg/test_a.py::test_first and setup_module of package 'pkg' (run before it) "
            "changed global random state:",
        ]
    )
    assert leak_rows(report, "phase", "scope") == [
        ("call", "test"),
        ("setup", "setup_module of package 'pkg'"),
    ]
