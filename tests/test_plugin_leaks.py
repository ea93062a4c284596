"""Leaks as a user sees them: where they happen, what kind they are, and where they came from."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import rng_observer
from conftest import QUEUED_CUDA, leak_rows, run, run_with_report

# -- where ---------------------------------------------------------------------------------


def test_reports_a_test_module_that_seeds_at_import_as_a_collection_leak(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_seeds_at_import="""
        import random

        random.seed(1234)

        def test_nothing():
            pass
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=1, warnings=1)
    assert leak_rows(report, "nodeid", "phase", "fixture", "source", "kind", "restored") == [
        ("test_seeds_at_import.py", "collection", None, "random", "reseeded", True)
    ]
    assert report["leaks"][0]["origin"]["function"] == "<module>"


def test_a_test_module_seeding_at_import_keeps_its_seed_for_its_own_tests_only(
    pytester: pytest.Pytester,
) -> None:
    # Each module's tests start from what their own import left, whatever the other
    # modules' imports did; the next module's tests never see it.
    pytester.makeconftest(
        """
        import random

        BEFORE = random.getstate()
        """
    )
    pytester.makepyfile(
        test_a_seeds_at_import="""
        import random

        random.seed(4321)

        def test_sees_its_own_import_seed():
            assert random.random() == __import__("random").Random(4321).random()
        """,
        test_b_seeds_too="""
        import random

        random.seed(99)

        def test_sees_its_own_import_seed_too():
            assert random.random() == random.Random(99).random()
        """,
        test_c_plain="""
        import random

        import conftest

        def test_sees_the_state_from_before_any_import():
            assert random.getstate() == conftest.BEFORE
        """,
    )
    run(pytester, "-W", "ignore::pytest_rngguard.RNGLeakWarning").assert_outcomes(passed=3)


def test_reports_a_function_fixture_by_name_in_setup(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import random

        import pytest

        @pytest.fixture
        def seeded():
            random.seed(7)

        def test_uses_it(seeded):
            pass
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=1, warnings=1)
    assert leak_rows(report) == [
        (
            "test_reports_a_function_fixture_by_name_in_setup.py::test_uses_it",
            "setup",
            "seeded",
            "random",
            "reseeded",
        ),
    ]
    result.stdout.fnmatch_lines(["*random reseeded during setup (fixture 'seeded')*"])


def test_reports_module_and_session_fixtures_on_the_first_test_that_ran_them(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makeconftest(
        """
        import random

        import pytest

        @pytest.fixture(scope="session")
        def session_seed():
            random.seed(1)
        """
    )
    pytester.makepyfile(
        test_first="""
        import numpy as np
        import pytest

        @pytest.fixture(scope="module")
        def module_seed():
            np.random.seed(2)

        def test_one(session_seed, module_seed):
            pass

        def test_two(session_seed, module_seed):
            pass
        """,
        test_second="""
        def test_three(session_seed):
            pass
        """,
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=3, warnings=1)
    assert leak_rows(report) == [
        ("test_first.py::test_one", "setup", "module_seed", "numpy", "reseeded"),
        ("test_first.py::test_one", "setup", "session_seed", "random", "reseeded"),
    ]


def test_reports_the_test_body_in_call(pytester: pytest.Pytester, numpy: object) -> None:
    pytester.makepyfile(
        """
        import numpy as np

        def test_seeds():
            np.random.seed(3)
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=1, warnings=1)
    assert leak_rows(report) == [
        ("test_reports_the_test_body_in_call.py::test_seeds", "call", None, "numpy", "reseeded")
    ]


def test_reports_a_yield_fixture_teardown_in_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import random

        import pytest

        @pytest.fixture
        def reseeds_on_exit():
            yield
            random.seed(99)

        def test_uses_it(reseeds_on_exit):
            pass
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=1, warnings=1)
    assert leak_rows(report, "phase", "source", "kind") == [("teardown", "random", "reseeded")]
    result.stdout.fnmatch_lines(["*random reseeded during teardown*"])


# -- what ----------------------------------------------------------------------------------


def test_reports_a_foreign_state_as_replaced(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import random

        def test_sets_a_foreign_state():
            random.setstate(random.Random(5).getstate())
        """
    )
    _, report = run_with_report(pytester)
    assert leak_rows(report, "source", "kind") == [("random", "replaced")]


def test_reports_a_watched_environment_variable_as_changed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    pytester.makepyfile(
        """
        import os

        def test_sets_a_seed_variable():
            os.environ["PL_GLOBAL_SEED"] = "42"
            os.environ["NOT_WATCHED_AT_ALL"] = "1"
        """
    )
    result, report = run_with_report(pytester)
    assert leak_rows(report, "source", "kind", "detail") == [("env", "changed", "PL_GLOBAL_SEED")]
    result.stdout.fnmatch_lines(["*env[[]PL_GLOBAL_SEED[]] changed during call*"])


def test_reports_a_torch_flag_as_changed(pytester: pytest.Pytester, torch: object) -> None:
    pytester.makepyfile(
        """
        import torch

        def test_turns_on_benchmark():
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark

        def test_turns_on_deterministic_algorithms():
            torch.use_deterministic_algorithms(True)
        """
    )
    _, report = run_with_report(pytester)
    assert leak_rows(report, "nodeid", "source", "kind", "detail") == [
        (
            "test_reports_a_torch_flag_as_changed.py::test_turns_on_benchmark",
            "torch.flags",
            "changed",
            "cudnn.benchmark",
        ),
        (
            "test_reports_a_torch_flag_as_changed.py::test_turns_on_deterministic_algorithms",
            "torch.flags",
            "changed",
            "deterministic_algorithms",
        ),
    ]


def test_reports_a_torch_reseed(pytester: pytest.Pytester, torch: object) -> None:
    pytester.makepyfile(
        """
        import torch

        def test_seeds():
            torch.manual_seed(0)
        """
    )
    _, report = run_with_report(pytester)
    rows = leak_rows(report, "source", "kind")
    assert rows == [("torch", "reseeded"), *(("torch.cuda", "reseeded") for _ in QUEUED_CUDA)]


DRAWS = """
    import random

    import numpy as np
    import torch

    def test_draws():
        random.random()
        np.random.rand(3)
        torch.rand(3)
    """


def test_does_not_report_draws_by_default(
    pytester: pytest.Pytester, numpy: object, torch: object
) -> None:
    pytester.makepyfile(DRAWS)
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=1)
    assert report["leaks"] == []


def test_reports_draws_as_advanced_with_strict(
    pytester: pytest.Pytester, numpy: object, torch: object
) -> None:
    pytester.makepyfile(DRAWS)
    result, report = run_with_report(pytester, "--rngguard-strict")
    result.assert_outcomes(passed=1, warnings=1)
    assert leak_rows(report, "source", "kind") == [
        ("numpy", "advanced"),
        ("random", "advanced"),
        ("torch", "advanced"),
    ]


def test_does_not_report_a_change_put_back_within_the_phase(
    pytester: pytest.Pytester, numpy: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import os
        import random

        import numpy as np

        def test_puts_everything_back():
            state, np_state = random.getstate(), np.random.get_state()
            random.seed(1)
            np.random.seed(1)
            os.environ["PYTHONHASHSEED"] = "1"
            random.setstate(state)
            np.random.set_state(np_state)
            del os.environ["PYTHONHASHSEED"]
        """
    )
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    result, report = run_with_report(pytester, "--rngguard-strict")
    result.assert_outcomes(passed=1)
    assert report["leaks"] == []


def test_never_reports_local_numpy_generators(pytester: pytest.Pytester, numpy: object) -> None:
    pytester.makepyfile(
        """
        import numpy as np

        def test_uses_local_generators():
            np.random.default_rng().random(10)
            np.random.default_rng(5).integers(0, 10, 10)
        """
    )
    result, report = run_with_report(pytester, "--rngguard-strict")
    result.assert_outcomes(passed=1)
    assert report["leaks"] == []


# -- where from ----------------------------------------------------------------------------


def test_shows_the_origin_and_stack_in_the_warning_and_the_summary(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makepyfile(
        helpers="""
        import numpy as np

        def set_random_seed(seed):
            np.random.seed(seed)
        """,
        test_origin="""
        import helpers

        def build():
            helpers.set_random_seed(1)

        def test_builds():
            build()
        """,
    )
    result, report = run_with_report(pytester)
    result.stdout.fnmatch_lines(
        [
            "*RNGLeakWarning: test_origin.py::test_builds changed global random state:",
            "*numpy reseeded during call at helpers.py:4 in set_random_seed",
            "*test_origin.py:7 in test_builds",
            "*test_origin.py:4 in build",
            "*helpers.py:4 in set_random_seed",
            "*= rngguard =*",
            "test_origin.py::test_builds: numpy reseeded during call by "
            "helpers.py:4 in set_random_seed",
        ]
    )
    assert report["leaks"][0]["origin"] == {
        "file": "helpers.py",
        "line": 4,
        "function": "set_random_seed",
        "stack": [
            "test_origin.py:7 in test_builds",
            "test_origin.py:4 in build",
            "helpers.py:4 in set_random_seed",
        ],
    }


def test_attributes_a_library_first_imported_in_the_middle_of_a_test(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makepyfile(
        test_late_import="""
        import sys

        def test_imports_numpy_late():
            assert "numpy" not in sys.modules
            import numpy
            numpy.random.seed(5)
        """
    )
    # A fresh process: numpy must really be imported for the first time inside the test.
    result, report = run_with_report(pytester, alone=True)
    result.assert_outcomes(passed=1, warnings=1)
    [leak] = report["leaks"]
    assert (leak["phase"], leak["source"], leak["kind"]) == ("call", "numpy", "reseeded")
    assert leak["origin"]["file"] == "test_late_import.py"
    assert (leak["origin"]["line"], leak["origin"]["function"]) == (6, "test_imports_numpy_late")


def test_names_the_line_that_called_the_library_api_not_the_library(
    pytester: pytest.Pytester,
) -> None:
    # Only the session's own guard is paused around its own seeding; the library's context
    # managers run for the user's code, which is where their changes come from.
    pytester.makepyfile(
        test_fixture="""
        import pytest
        import pytest_rngguard

        @pytest.fixture
        def reproducible():
            with pytest_rngguard.deterministic(0):
                yield

        def test_uses_it(reproducible):
            pass
        """
    )
    _, report = run_with_report(pytester)
    setup = [leak for leak in report["leaks"] if leak["source"] == "env" and leak["fixture"]]
    assert {leak["detail"] for leak in setup} >= {"VLLM_ENABLE_V1_MULTIPROCESSING"}
    assert {(leak["origin"]["file"], leak["origin"]["line"]) for leak in setup} == {
        ("test_fixture.py", 6)
    }


# -- other plugins that seed -----------------------------------------------------------------


def test_reports_a_reseed_in_another_plugins_setup_wrapper_on_that_tests_setup(
    pytester: pytest.Pytester,
) -> None:
    # The wrapper runs before this plugin's own setup hook, also right after a
    # deterministic test (whose undone recipe moves every state) and before the first test.
    pytester.makeconftest(
        """
        import random

        import pytest

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_setup(item):
            if item.name in ("test_first", "test_after_a_deterministic_one"):
                random.seed(item.name)
            return (yield)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        def test_first():
            pass

        @pytest.mark.deterministic
        def test_deterministic():
            pass

        def test_after_a_deterministic_one():
            pass
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=3, warnings=2)
    module = "test_reports_a_reseed_in_another_plugins_setup_wrapper_on_that_tests_setup.py"
    assert leak_rows(report, "nodeid", "phase", "source", "kind") == [
        (f"{module}::test_after_a_deterministic_one", "setup", "random", "reseeded"),
        (f"{module}::test_first", "setup", "random", "reseeded"),
    ]
    assert {leak["origin"]["file"] for leak in report["leaks"]} == {"conftest.py"}


def test_a_test_another_plugin_skips_before_this_one_starts_changes_nothing_else(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_setup(item):
            if item.name == "test_skipped":
                pytest.skip("skipped by a hook that runs first")
        """
    )
    pytester.makepyfile(
        """
        import random

        def test_skipped():
            pass

        def test_leaks():
            random.seed(3)

        def test_clean():
            random.random()
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=2, skipped=1, warnings=1)
    assert leak_rows(report, "nodeid", "phase", "source") == [
        (
            "test_a_test_another_plugin_skips_before_this_one_starts_changes_nothing_else.py"
            "::test_leaks",
            "call",
            "random",
        )
    ]


def test_pytest_randomly_reseeds_are_never_leaks_but_the_tests_own_still_are(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytest.importorskip("pytest_randomly")
    pytester.makepyfile(
        """
        import random

        import numpy as np
        import pytest

        @pytest.fixture
        def draws():
            random.random()
            yield
            np.random.rand()

        def test_clean(draws):
            random.random()

        def test_leaks(draws):
            np.random.seed(17)
        """
    )
    path = pytester.path / "report.json"
    result = pytester.runpytest("-p", "randomly", "--randomly-seed=3", f"--rngguard-report={path}")
    result.stdout.fnmatch_lines(["Using --randomly-seed=3"])
    result.assert_outcomes(passed=2, warnings=1)
    report = json.loads(path.read_text())
    assert leak_rows(report) == [
        (
            "test_pytest_randomly_reseeds_are_never_leaks_but_the_tests_own_still_are.py::"
            "test_leaks",
            "call",
            None,
            "numpy",
            "reseeded",
        )
    ]


NESTED_SESSION = """
    import json
    import os
    import random

    import rng_observer

    pytest_plugins = ["pytester"]

    def test_runs_an_inner_session(pytester):
        pytester.makepyfile(test_inner="import random\\ndef test_leaks():\\n    random.seed(1)\\n")
        for seed in (15, 16):  # the second starts from what the first put back, unseen
            result = pytester.runpytest_inprocess("-p", "randomly", f"--randomly-seed={seed}")
            result.assert_outcomes(passed=1, warnings=1)  # the inner guard's own report
        with open(os.environ["AFTER_INNER"], "w") as handle:
            json.dump(rng_observer.random_print(random.getstate()), handle)

    def test_next():
        pass
    """


def test_an_inner_session_with_pytest_randomly_and_its_own_guard_is_no_leak_of_the_outer(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytester-based suites of other plugins (pytest-randomly's own) run such sessions: the
    # inner guard puts its test's start back, past pytest-randomly's reseeds, unseen by the
    # outer one, whose stretch saw those reseeds only as an ignored module's.
    pytest.importorskip("pytest_randomly")
    shutil.copy(Path(rng_observer.__file__), pytester.path / "rng_observer.py")
    monkeypatch.setenv("RNG_OBSERVATIONS", str(pytester.path / "seen.jsonl"))
    monkeypatch.setenv("AFTER_INNER", str(pytester.path / "after_inner.json"))
    pytester.makepyfile(test_outer=NESTED_SESSION)
    result, report = run_with_report(pytester, "-p", "rng_observer")
    result.assert_outcomes(passed=2)
    assert report["leaks"] == []
    # What the inner sessions left is what pytest-randomly seeded the last with for the
    # session (its per-test reseeds and the inner test's own seed were put back by the inner
    # guard)...
    left = json.loads((pytester.path / "after_inner.json").read_text())
    assert left == rng_observer.random_print(random.Random(16).getstate())
    # ...and the outer guard put back the outer test's start all the same.
    observed = rng_observer.read(pytester.path / "seen.jsonl")
    seen = {line["nodeid"]: line["seen"]["random"] for line in observed}
    assert seen["test_outer.py::test_next"] == seen["test_outer.py::test_runs_an_inner_session"]


def test_hypothesis_tests_that_draw_are_not_leaks(pytester: pytest.Pytester, numpy: object) -> None:
    pytest.importorskip("hypothesis")
    pytester.makepyfile(
        """
        import random

        import numpy as np
        from hypothesis import given, settings, strategies as st

        @settings(max_examples=10, database=None)
        @given(st.integers(0, 2**32 - 1))
        def test_property(seed):
            random.random()
            np.random.rand()
            st.randoms()

        @settings(max_examples=5, database=None)
        @given(st.randoms(use_true_random=False))
        def test_with_a_random(rnd):
            rnd.random()
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=2)
    assert report["leaks"] == []


def test_a_flag_set_by_assignment_is_not_blamed_on_the_call_that_set_another(
    pytester: pytest.Pytester, torch: object
) -> None:
    # What transformers.enable_full_determinism does.
    pytester.makepyfile(
        test_flags="""
        import torch

        def test_sets_two_flags():
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
        """
    )
    _, report = run_with_report(pytester)
    origins = {leak["detail"]: leak["origin"] for leak in report["leaks"]}
    assert origins["deterministic_algorithms"]["line"] == 4
    cudnn = origins["cudnn.deterministic"]
    assert cudnn is None or cudnn["line"] == 5


def test_blames_os_environ_update_and_setdefault_on_the_callers_line(
    pytester: pytest.Pytester,
) -> None:
    # Both run in the collection ABCs' mixin methods, between the caller and os.putenv.
    pytester.makepyfile(
        test_env="""
        import os

        def test_update():
            os.environ.update({"CUBLAS_WORKSPACE_CONFIG": ":16:8"})

        def test_setdefault():
            os.environ.setdefault("CUDA_LAUNCH_BLOCKING", "1")
        """
    )
    _, report = run_with_report(pytester)
    origins = {
        leak["nodeid"].partition("::")[2]: (leak["origin"]["file"], leak["origin"]["line"])
        for leak in report["leaks"]
    }
    assert origins == {"test_update": ("test_env.py", 4), "test_setdefault": ("test_env.py", 7)}


def test_keeps_nothing_of_a_finished_test(pytester: pytest.Pytester) -> None:
    # A 50,000-test session would otherwise hold 50,000 runs (states, leaks, records).
    pytester.makeconftest(
        """
        import gc

        from pytest_rngguard.plugin import guard_key
        from pytest_rngguard.session import ItemRun

        def pytest_sessionfinish(session):
            guard = session.config.stash[guard_key]
            names = {item.nodeid for item in session.items}
            alive = [o.nodeid for o in gc.get_objects()
                     if type(o) is ItemRun and o.nodeid in names]
            held = (guard.current, guard.gate.earlier)
            print(f"kept: {alive} {held}")
        """
    )
    pytester.makepyfile(
        """
        import random
        import pytest

        def test_leaks():
            random.seed(1)

        @pytest.mark.deterministic(repeat=2)
        def test_repeated(rngguard):
            rngguard.record("x", random.random())

        def test_plain():
            pass
        """
    )
    result = run(pytester, "-s")
    result.assert_outcomes(passed=3, warnings=1)
    assert "kept: [] (None, [])" in result.stdout.str()
    result.stdout.fnmatch_lines(["*1 leak of global random state*"])


def test_recognises_pytests_stand_in_fixture_for_a_parametrize_argument(
    pytester: pytest.Pytester,
) -> None:
    # No check runs around it (it runs no user code); a real fixture is still checked.
    from pytest_rngguard.compat import stand_in_fixture_function

    items = pytester.getitems(
        """
        import pytest

        @pytest.fixture(params=[1, 2])
        def indirect(request):
            return request.param

        @pytest.mark.parametrize("i", [1])
        def test_one(i, indirect):
            pass
        """
    )
    definitions = items[0]._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
    stand_in = stand_in_fixture_function()
    assert stand_in is not None
    assert definitions["i"][-1].func is stand_in
    assert definitions["indirect"][-1].func is not stand_in


def test_blames_the_fixture_of_a_parametrized_test_not_its_argument(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import random
        import pytest

        @pytest.fixture
        def reseeds():
            random.seed(3)

        @pytest.mark.parametrize("i", [1, 2])
        def test_draws(reseeds, i):
            pass
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=2, warnings=2)
    assert [(leak["phase"], leak["fixture"]) for leak in report["leaks"]] == [
        ("setup", "reseeds"),
        ("setup", "reseeds"),
    ]


CHECK_COUNTER = """
import pytest

from pytest_rngguard.monitor import Monitor

checks = []
real = Monitor.checkpoint

def counted(self):
    checks.append(1)
    return real(self)

def pytest_configure(config):
    Monitor.checkpoint = counted
    config.add_cleanup(lambda: setattr(Monitor, "checkpoint", real))

def pytest_collection_finish(session):
    checks.clear()  # only the tests' own

def pytest_sessionfinish(session):
    print(f"checks: {len(checks)}")
"""


def checks_made(result: pytest.RunResult) -> int:
    import re

    match = re.search(r"checks: (\d+)", result.stdout.str())
    assert match is not None
    return int(match[1])


@pytest.mark.parametrize(
    ("conftest_hook", "checks_per_test"),
    [
        # Only pytest's own code runs in these setups: two checks (end of call, end of
        # teardown) rather than three.
        ("", 2),
        # A conftest's setup hook could change a source: the end of every setup is checked.
        ("def pytest_runtest_setup(item):\n    pass\n", 3),
    ],
    ids=["only-pytest", "conftest-setup-hook"],
)
def test_skips_the_check_at_the_end_of_a_setup_in_which_only_pytest_ran(
    pytester: pytest.Pytester, conftest_hook: str, checks_per_test: int
) -> None:
    pytester.makeconftest(CHECK_COUNTER + "\n\n" + conftest_hook)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(10))
        def test_nothing(i):
            pass
        """
    )
    # Alone: which plugins are installed decides whether only known-quiet code runs there.
    result = run(pytester, "-s", alone=True)
    result.assert_outcomes(passed=10)
    assert checks_made(result) == 10 * checks_per_test


def test_puts_each_draw_on_its_fixture_when_checks_are_skipped(pytester: pytest.Pytester) -> None:
    # Draws announce themselves through no call the guard sees, so only the checks place
    # them: the ones skipped (before a fixture that follows another, at the end of the
    # setup) must be those nothing but pytest ran before, and a fixture that requests
    # another from its body is still checked before the inner one starts.
    pytester.makepyfile(
        """
        import random

        import numpy as np
        import pytest

        @pytest.fixture
        def quiet():
            return 1

        @pytest.fixture
        def draws(quiet):
            np.random.random()

        @pytest.fixture
        def inner():
            return 2

        @pytest.fixture
        def outer(request):
            random.random()
            return request.getfixturevalue("inner")

        def test_one(draws, outer):
            np.random.random()
            random.random()
        """
    )
    result, report = run_with_report(pytester, "-p", "no:xdist", "--rngguard-strict")
    result.assert_outcomes(passed=1, warnings=1)
    assert leak_rows(report, "phase", "fixture", "source", "kind") == [
        ("call", None, "numpy", "advanced"),
        ("call", None, "random", "advanced"),
        ("setup", "draws", "numpy", "advanced"),
        ("setup", "outer", "random", "advanced"),
    ]


def test_reports_a_reseed_in_a_custom_items_own_setup_on_its_setup(
    pytester: pytest.Pytester,
) -> None:
    # A custom item's setup() is not pytest's own code: the end of its setup is checked,
    # also for a change no intercepted call announces (a draw, reported in strict mode).
    pytester.makeconftest(
        """
        import random

        import pytest

        class ReseedingItem(pytest.Item):
            def setup(self):
                random.random()

            def runtest(self):
                pass

            def reportinfo(self):
                return self.path, 0, self.name

        class SpecFile(pytest.File):
            def collect(self):
                yield ReseedingItem.from_parent(self, name="spec")

        def pytest_collect_file(parent, file_path):
            if file_path.suffix == ".spec":
                return SpecFile.from_parent(parent, path=file_path)
        """
    )
    pytester.path.joinpath("case.spec").write_text("", encoding="utf-8")
    result, report = run_with_report(pytester, "-p", "no:xdist", "--rngguard-strict")
    result.assert_outcomes(passed=1, warnings=1)
    assert leak_rows(report, "nodeid", "phase", "source", "kind") == [
        ("case.spec::spec", "setup", "random", "advanced"),
    ]
