"""The ``deterministic`` marker and the ``rngguard_seed`` fixture, end to end."""

from __future__ import annotations

import os
import re
import shlex
import sys

import pytest
from conftest import NO_RANDOMLY, leak_rows, require, run, run_with_report

DRAWING_TESTS = """
    import random

    import numpy as np
    import numpy.random  # loaded now: see test_seeds_numpy_before_numpy_random_is_loaded
    import pytest

    def draws(name):
        print(f"DRAWS {name} {random.random()!r} {np.random.rand()!r}")

    @pytest.mark.deterministic
    def test_one():
        draws("one")

    @pytest.mark.deterministic
    def test_two():
        draws("two")

    @pytest.mark.deterministic
    class TestInAClass:
        def test_three(self):
            draws("three")
    """


def draws(result: pytest.RunResult) -> dict[str, str]:
    """What each inner test printed as ``DRAWS name values``."""
    found = re.findall(r"DRAWS (\w+) (\S+ \S+)", result.stdout.str())
    return dict(found)


# -- seeding -------------------------------------------------------------------------------


def test_draws_are_the_same_across_separate_runs_and_differ_between_tests(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makepyfile(DRAWING_TESTS)
    first = run(pytester, "-s", subprocess=True)
    second = run(pytester, "-s", subprocess=True)
    first.assert_outcomes(passed=3)
    assert draws(first) == draws(second)
    assert len(set(draws(first).values())) == 3


def test_seeds_every_source_as_seeding_by_hand_with_the_test_seed_would(
    pytester: pytest.Pytester, numpy: object, torch: object
) -> None:
    pytester.makepyfile(
        """
        import random

        import numpy as np
        import pytest
        import torch

        def expected(seed):
            generator = torch.Generator().manual_seed(seed)
            return (
                random.Random(seed).random(),
                np.random.RandomState(seed).rand(),
                torch.rand(1, generator=generator).item(),
            )

        def drawn():
            return random.random(), np.random.rand(), torch.rand(1).item()

        @pytest.mark.deterministic
        def test_derived_seed(rngguard_seed):
            assert drawn() == expected(rngguard_seed)

        @pytest.mark.deterministic(seed=42)
        def test_explicit_seed(rngguard_seed):
            assert rngguard_seed == 42
            assert drawn() == expected(42)

        @pytest.mark.deterministic(7)
        def test_positional_seed(rngguard_seed):
            assert rngguard_seed == 7
            assert drawn() == expected(7)
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=3)
    assert report["leaks"] == []


def test_seeds_numpy_before_numpy_random_is_loaded(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makepyfile(
        """
        import sys

        import numpy as np
        import pytest

        assert "numpy.random" not in sys.modules

        @pytest.mark.deterministic(seed=1)
        def test_first_use_of_np_random():
            assert np.random.rand() == np.random.RandomState(1).rand()
        """
    )
    # A fresh process, where numpy 2 has not loaded numpy.random yet.
    run(pytester, subprocess=True).assert_outcomes(passed=1)


def test_seeds_a_library_first_imported_inside_the_test_and_puts_it_back(
    pytester: pytest.Pytester,
) -> None:
    require("numpy")
    require("torch")
    pytester.makepyfile(
        """
        import sys

        import pytest

        assert "numpy" not in sys.modules and "torch" not in sys.modules

        @pytest.mark.deterministic(seed=5)
        def test_imports_numpy_and_torch(rngguard):
            import numpy as np
            import torch

            assert np.random.rand() == np.random.RandomState(5).rand()
            generator = torch.Generator().manual_seed(5)
            assert torch.rand(1).item() == torch.rand(1, generator=generator).item()
            assert torch.are_deterministic_algorithms_enabled()
            rngguard.record("draws", [np.random.rand(), torch.rand(1).item()])

        def test_after_it():
            import numpy as np
            import torch

            # Not left seeded: the states were put back as the imports had made them.
            assert np.random.rand() != np.random.RandomState(5).rand()
            assert torch.initial_seed() != 5
            assert not torch.are_deterministic_algorithms_enabled()
        """
    )
    # A fresh process, so that run 1 is the first to import them; run 2 finds them loaded.
    result, report = run_with_report(pytester, "--rngguard-repeat=2", alone=True)
    result.assert_outcomes(passed=2)
    assert report["leaks"] == []
    assert report["not_reproducible"] == []


def test_the_context_manager_seeds_a_library_first_imported_inside_the_block(
    pytester: pytest.Pytester,
) -> None:
    require("numpy")
    script = pytester.makepyfile(
        """
        import sys

        import pytest_rngguard

        assert "numpy" not in sys.modules
        with pytest_rngguard.deterministic(3):
            import numpy as np

            inside = np.random.rand()
        assert inside == np.random.RandomState(3).rand()
        assert np.random.rand() != np.random.RandomState(3).rand()  # put back on exit
        assert not any(type(f).__name__ == "ImportWatcher" for f in sys.meta_path)
        print("OK")
        """
    )
    result = pytester.runpython(script)
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.lines == ["OK"]


def test_module_marker_seeds_every_test_of_the_module(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import random

        import pytest

        pytestmark = pytest.mark.deterministic(seed=3)

        def test_one():
            assert random.random() == random.Random(3).random()

        def test_two():
            assert random.random() == random.Random(3).random()
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_tests_sharing_a_marker_each_get_their_own_seed_and_each_fail_a_bad_one(
    pytester: pytest.Pytester,
) -> None:
    # The plugin checks a marker's arguments once per marker object; every test still gets
    # the seed derived from its own node id, and every test of a bad marker fails.
    pytester.makepyfile(
        test_shared="""
        import pytest
        from pytest_rngguard.determinism import derive_seed

        @pytest.mark.deterministic
        @pytest.mark.parametrize("i", range(3))
        def test_derived(i, rngguard_seed, request):
            assert rngguard_seed == derive_seed(5, request.node.nodeid)

        @pytest.mark.deterministic(seed=11)
        @pytest.mark.parametrize("i", range(2))
        def test_explicit(i, rngguard_seed):
            assert rngguard_seed == 11

        @pytest.mark.deterministic
        def test_derived_again(rngguard_seed, request):
            assert rngguard_seed == derive_seed(5, request.node.nodeid)
        """,
        test_bad="""
        import pytest

        pytestmark = pytest.mark.deterministic(warn_only="yes")

        @pytest.mark.parametrize("i", range(3))
        def test_bad(i):
            pass
        """,
    )
    result = run(pytester, "--rngguard-seed=5")
    result.assert_outcomes(passed=6, errors=3)
    for number in range(3):
        result.stdout.fnmatch_lines(
            [f"*test_bad[[]{number}]: deterministic: warn_only must be True or False, got 'yes'"]
        )
    result.stdout.no_fnmatch_line("*During handling of the above exception*")


def test_the_base_seed_changes_every_derived_seed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deterministic
        def test_marked(rngguard_seed):
            print(f"SEED {rngguard_seed}")

        def test_unmarked_would_get(rngguard_seed):
            print(f"SEED {rngguard_seed}")
        """
    )

    def seeds(*args: str) -> list[str]:
        result = run(pytester, "-s", *args)
        result.assert_outcomes(passed=2)
        return re.findall(r"SEED (\d+)", result.stdout.str())

    base = seeds()
    assert len(set(base)) == 2
    assert seeds() == base
    other = seeds("--rngguard-seed=1")
    assert set(other).isdisjoint(base)


# -- environment and torch flags -----------------------------------------------------------


ENV_TESTS = """
    import os

    import pytest

    pytestmark = pytest.mark.deterministic(seed=5, env={"EXTRA_FLAG": "yes"})

    def check_inside():
        assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert os.environ["PYTHONHASHSEED"] == "5"
        assert os.environ["INI_FLAG"] == "on"
        assert os.environ["EXTRA_FLAG"] == "yes"

    def test_passes():
        check_inside()

    def test_fails():
        check_inside()
        assert False, "fails on purpose"

    def test_is_skipped():
        check_inside()
        pytest.skip("skipped on purpose")
    """

AFTER_TESTS = """
    import os

    import pytest

    @pytest.mark.parametrize("name", ["1", "2", "3"])
    def test_sees_the_environment_from_before(name):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        for name in ("VLLM_ENABLE_V1_MULTIPROCESSING", "PYTHONHASHSEED", "INI_FLAG",
                     "EXTRA_FLAG"):
            assert name not in os.environ
    """


def test_sets_the_environment_inside_and_puts_it_back_after_pass_fail_and_skip(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    for name in ("VLLM_ENABLE_V1_MULTIPROCESSING", "PYTHONHASHSEED", "INI_FLAG", "EXTRA_FLAG"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini(
        """
        [pytest]
        rngguard_env =
            INI_FLAG=on
        """
    )
    # test_a runs first, then every check in test_b; -p no:randomly keeps the order.
    pytester.makepyfile(test_a=ENV_TESTS, test_b=AFTER_TESTS)
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=4, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*AssertionError: fails on purpose*"])
    assert report["leaks"] == []
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert "PYTHONHASHSEED" not in os.environ


def test_sets_torch_flags_inside_and_puts_them_back(
    pytester: pytest.Pytester, torch: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch as torch_module

    monkeypatch.setattr(torch_module.backends.cudnn, "benchmark", True)
    pytester.makepyfile(
        """
        import pytest
        import torch

        def flags():
            return (
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic,
                torch.backends.cudnn.benchmark,
            )

        @pytest.mark.deterministic
        def test_strict():
            assert flags() == (True, False, True, False)

        @pytest.mark.deterministic(warn_only=True)
        def test_warn_only():
            assert flags() == (True, True, True, False)

        @pytest.mark.deterministic(torch_flags=False)
        def test_without_flags():
            assert flags() == (False, False, False, True)

        def test_after():
            assert flags() == (False, False, False, True)
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=4)
    assert report["leaks"] == []
    assert torch_module.backends.cudnn.benchmark is True
    assert not torch_module.are_deterministic_algorithms_enabled()


def test_reports_a_leak_of_what_the_marker_did_not_set_but_not_its_own_seeding(
    pytester: pytest.Pytester, numpy: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    pytester.makepyfile(
        """
        import os
        import random

        import numpy as np
        import pytest

        @pytest.mark.deterministic
        def test_seeds_and_sets_a_variable():
            random.seed(1)
            np.random.rand(3)
            os.environ["PL_GLOBAL_SEED"] = "1"
        """
    )
    result, report = run_with_report(pytester, "--rngguard-strict")
    result.assert_outcomes(passed=1, warnings=1)
    assert leak_rows(report, "phase", "source", "kind", "detail") == [
        ("call", "env", "changed", "PL_GLOBAL_SEED")
    ]
    assert "PL_GLOBAL_SEED" not in os.environ


# -- with other plugins --------------------------------------------------------------------


def test_pytest_randomly_does_not_change_what_a_deterministic_test_draws(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytest.importorskip("pytest_randomly")
    pytester.makepyfile(DRAWING_TESTS)
    without = draws(run(pytester, "-s"))
    for seed in ("1", "2"):
        # After run_with_report's "-p no:randomly", "-p randomly" turns it back on.
        args = ("-p", "randomly", f"--randomly-seed={seed}", "-s")
        result, report = run_with_report(pytester, *args)
        result.stdout.fnmatch_lines([f"Using --randomly-seed={seed}"])
        result.assert_outcomes(passed=3)
        assert draws(result) == without
        assert report["leaks"] == []


def test_a_deterministic_hypothesis_test_gets_the_same_examples_in_every_run(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("hypothesis")
    pytester.makepyfile(
        """
        import pytest
        from hypothesis import given, settings, strategies as st

        @pytest.mark.deterministic
        @settings(max_examples=20, database=None)
        @given(st.integers(), st.floats(allow_nan=False))
        def test_property(n, x):
            print(f"EXAMPLE {n} {x!r}")
        """
    )

    def examples() -> list[str]:
        result = pytester.runpytest_subprocess(*NO_RANDOMLY, "-s")
        result.assert_outcomes(passed=1)
        return re.findall(r"EXAMPLE .+", result.stdout.str())

    first = examples()
    assert len(set(first)) > 5
    assert examples() == first


# -- failures and bad use ------------------------------------------------------------------


def test_a_failing_deterministic_test_shows_its_seed_and_a_command_that_reruns_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import random

        import pytest

        @pytest.mark.deterministic
        def test_unlucky(rngguard_seed):
            print(f"SEED {rngguard_seed} DRAW {random.random()!r}")
            assert False

        def test_other():
            pass
        """
    )
    result = run(pytester, "--rngguard-seed=9")
    result.assert_outcomes(passed=1, failed=1)
    [seed] = re.findall(r"SEED (\d+) ", result.stdout.str())
    result.stdout.fnmatch_lines(
        [f"*deterministic seed: {seed}", "*re-run just this test with it (from *):"]
    )
    lines = result.stdout.lines
    command = lines[lines.index(next(x for x in lines if "re-run just this test" in x)) + 1]
    argv = shlex.split(command.strip())
    assert argv[:3] == [sys.executable, "-m", "pytest"]
    assert "--rngguard-seed=9" in argv

    rerun = pytester.run(*argv, "-p", "no:randomly")
    assert rerun.ret == pytest.ExitCode.TESTS_FAILED
    rerun.stdout.fnmatch_lines(["*1 failed in*"])
    assert re.findall(r"SEED .+", rerun.stdout.str()) == re.findall(r"SEED .+", result.stdout.str())


SEED_RULE = "seed must be an integer from 0 to 2**64 - 1, or None"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('seed="x"', f"*::test_bad: deterministic: {SEED_RULE}, got 'x'"),
        ("seed=-1", f"*::test_bad: deterministic: {SEED_RULE}, got -1"),
        ("env=[1]", "*::test_bad: deterministic: env must be a mapping of str to str, got [[]1[]]"),
        ("speed=1", "*::test_bad: deterministic takes (seed=None, *got*kwargs=[[]'speed'[]]*"),
        (
            "torch_flags='yes'",
            "*::test_bad: deterministic: torch_flags must be True or False, got 'yes'",
        ),
    ],
)
def test_bad_marker_arguments_fail_that_test_naming_it_and_the_argument(
    pytester: pytest.Pytester, arguments: str, expected: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.deterministic({arguments})
        def test_bad():
            pass

        def test_good():
            pass
        """
    )
    result = run(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes()["passed"] == 1
    result.stdout.fnmatch_lines(["*ERROR at setup of test_bad*", expected])


def test_a_bad_deterministic_marker_gives_one_clean_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deterministic(seed="x")
        def test_bad():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.no_fnmatch_line("*KeyError*")


# -- PYTHONHASHSEED ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hash_seed", "args", "noted"),
    [
        (None, ("--rngguard-repeat=2",), True),
        (None, (), False),  # nothing compared across runs: hash order cannot matter
        ("0", ("--rngguard-repeat=2",), False),
        ("1", ("--rngguard-repeat=2",), False),
    ],
)
def test_notes_randomised_str_hashes_when_deterministic_tests_ran(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    hash_seed: str | None,
    args: tuple[str, ...],
    noted: bool,
) -> None:
    if hash_seed is None:
        monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    else:
        monkeypatch.setenv("PYTHONHASHSEED", hash_seed)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deterministic
        def test_marked():
            pass
        """
    )
    result = run(pytester, *args, subprocess=True)
    result.assert_outcomes(passed=1)
    note = "*str hashes are randomised*Run pytest with PYTHONHASHSEED=0*"
    if noted:
        result.stdout.fnmatch_lines([note])
    else:
        result.stdout.no_fnmatch_line(note)


def test_pytest_markers_lists_both_markers_with_every_argument(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers", "-p", "no:randomly")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.allow_rng_leak(*sources, reason=None):*",
            "@pytest.mark.deterministic(seed=None, *, env=None, torch_flags=True, warn_only=False,"
            " repeat=None):*repeat=N runs it N times*",
        ]
    )
