"""Options and ini keys as a user sets them: modes, restore, excuses, sources, bad values."""

from __future__ import annotations

import re

import pytest
from conftest import leak_rows, run, run_with_report

from pytest_rngguard.sources import BUILTIN_NAMES

BAD_ALLOW = """
    import pytest

    @pytest.mark.allow_rng_leak("nunpy")
    def test_typo():
        pass

    def test_other():
        pass
    """

TWO_LEAKY_TESTS = """
    import os
    import random

    def test_reseeds_and_sets_a_variable():
        random.seed(1)
        os.environ["PL_GLOBAL_SEED"] = "1"

    def test_reseeds_too():
        random.seed(2)

    def test_clean():
        pass
    """


# -- header --------------------------------------------------------------------------------


def test_shows_mode_strictness_seed_and_sources_in_the_header(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    run(pytester, "-vv").stdout.fnmatch_lines(
        ["rngguard: mode=warn strict=no seed=0 sources=random,numpy*"]
    )
    run(pytester, "--rngguard=fail", "--rngguard-strict", "--rngguard-seed=7").stdout.fnmatch_lines(
        ["rngguard: mode=fail strict=yes seed=7 sources=random,numpy*"]
    )


def test_the_header_line_is_left_out_where_it_would_only_repeat_the_defaults(
    pytester: pytest.Pytester,
) -> None:
    # Other plugins' pytester-based suites read their inner sessions' output by line number.
    pytester.makepyfile("def test_nothing(): pass")
    for verbosity in ([], ["-v"]):
        with_it, without = run(pytester, *verbosity), run(pytester, "-p", "no:rngguard", *verbosity)
        assert _same_but_plugins(with_it, without)
    pytester.makeini("[pytest]\nrngguard_seed = 3\n")
    run(pytester).stdout.fnmatch_lines(["rngguard: mode=warn strict=no seed=3 sources=*"])


def _same_but_plugins(one: pytest.RunResult, other: pytest.RunResult) -> bool:
    """Whether two runs printed the same lines, but for the durations and the list of
    plugins (which names this one where it is loaded)."""

    def kept(result: pytest.RunResult) -> list[str]:
        return [
            re.sub(r" in [\d.]+s ", " in Ns ", line)
            for line in result.stdout.lines
            if not line.startswith("plugins:")
        ]

    return kept(one) == kept(other)


def test_a_session_with_leaks_shows_the_settings_at_the_top_of_its_summary(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("import random\n\ndef test_seeds():\n    random.seed(1)\n")
    result = run(pytester)
    result.stdout.fnmatch_lines(
        ["*= rngguard =*", "rngguard: mode=warn strict=no seed=0 sources=*", "1 leak of *"],
        consecutive=True,
    )
    assert sum(line.startswith("rngguard: mode=") for line in result.stdout.lines) == 1


def test_the_header_names_the_sources_checked_once_their_library_is_imported(
    pytester: pytest.Pytester,
) -> None:
    # A fresh process that has imported no RNG library: all but random and env come later,
    # and are checked then (test_plugin_leaks: a library first imported in a test).
    pytester.makepyfile("def test_nothing(): pass")
    later = ",".join(name for name in BUILTIN_NAMES if name not in ("random", "env"))
    run(pytester, "-vv", alone=True).stdout.fnmatch_lines(
        [f"rngguard: mode=warn strict=no seed=0 sources=random,env (and {later} once imported)"]
    )


def test_reads_every_setting_from_the_ini_file_and_lets_the_command_line_win(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        """
        [pytest]
        rngguard_mode = fail
        rngguard_strict = true
        rngguard_seed = 11
        """
    )
    pytester.makepyfile("def test_nothing(): pass")
    run(pytester).stdout.fnmatch_lines(["rngguard: mode=fail strict=yes seed=11 sources=*"])
    run(pytester, "--rngguard=warn", "--rngguard-seed=3").stdout.fnmatch_lines(
        ["rngguard: mode=warn strict=yes seed=3 sources=*"]
    )


# -- modes ---------------------------------------------------------------------------------


def test_warn_mode_gives_one_warning_per_leaking_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    pytester.makepyfile(TWO_LEAKY_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=3, warnings=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*RNGLeakWarning: test_warn_mode_gives_one_warning_per_leaking_test.py::"
            "test_reseeds_and_sets_a_variable changed global random state:",
            "*random reseeded during call*",
            "*env[[]PL_GLOBAL_SEED[]] changed during call: unset -> '1'*",
        ]
    )


def test_warnings_as_errors_make_leaking_tests_fail(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    pytester.makepyfile(TWO_LEAKY_TESTS)
    result = run(pytester, "-W", "error::pytest_rngguard.RNGLeakWarning")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*RNGLeakWarning*test_reseeds_too changed global random state*"])
    # The warning comes after teardown: the leaking tests pass their call and error there.
    result.assert_outcomes(passed=3, errors=2)


def test_fail_mode_fails_the_leaking_tests_with_the_leak_text(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    pytester.makepyfile(TWO_LEAKY_TESTS)
    result = run(pytester, "--rngguard=fail")
    result.assert_outcomes(passed=1, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*test_reseeds_too changed global random state:",
            "*random reseeded during call at *:9 in test_reseeds_too",
        ]
    )


def test_fail_mode_errors_a_test_whose_fixture_leaks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import random

        import pytest

        @pytest.fixture
        def seeded():
            yield
            random.seed(3)

        def test_uses_it(seeded):
            pass
        """
    )
    result = run(pytester, "--rngguard=fail")
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*random reseeded during teardown*"])


def test_fail_mode_exits_non_zero_for_a_collection_leak(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import random

        random.seed(5)

        def test_clean():
            pass
        """
    )
    result = run(pytester, "--rngguard=fail")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*random reseeded during collection*",
            "error: --rngguard=fail: the import of test_fail_mode_exits_non_zero_for_a_collection_"
            "leak.py changed global random state, so the session fails",
            "*1 passed*",
        ]
    )


def test_off_mode_reports_nothing_and_patches_nothing(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makeconftest(
        """
        import random

        import numpy as np

        # Imported before the plugin configures itself, and so before it could patch.
        ORIGINALS = (random.seed, np.random.seed)
        """
    )
    pytester.makepyfile(
        """
        import random

        import numpy as np
        from conftest import ORIGINALS

        def test_sees_the_original_functions():
            assert (random.seed, np.random.seed) == ORIGINALS

        def test_leaks():
            random.seed(1)
            np.random.seed(1)
        """
    )
    result, report = run_with_report(pytester, "--rngguard=off")
    result.assert_outcomes(passed=2)
    assert "RNGLeakWarning" not in result.stdout.str()
    assert "= rngguard =" not in result.stdout.str()
    assert report["leaks"] == []
    # The same check fails when the plugin is on: it does see its wrappers.
    run(pytester, "-k", "original").assert_outcomes(failed=1)


# -- restore -------------------------------------------------------------------------------


RESTORE_CHECK = """
    import random

    import numpy as np

    before = {{}}

    def numpy_state():
        _, key, position, *_ = np.random.get_state()
        return key.tolist(), position

    def test_reseeds_random_and_draws_from_numpy():
        before["random"], before["numpy"] = random.getstate(), numpy_state()
        random.seed(12345)
        np.random.random(5)

    def test_sees_what_the_last_test_left():
        random_back = random.getstate() == before["random"]
        numpy_back = numpy_state() == before["numpy"]
        random_seeded = random.getstate() == random.Random(12345).getstate()
        assert (random_back, numpy_back, random_seeded) == {expected}
    """


@pytest.mark.parametrize(
    ("restore", "expected"),
    [
        ("leaked", (True, False, False)),
        ("all", (True, True, False)),
        ("none", (False, False, True)),
    ],
)
def test_restore_decides_what_the_next_test_sees(
    pytester: pytest.Pytester, numpy: object, restore: str, expected: tuple[bool, ...]
) -> None:
    pytester.makepyfile(RESTORE_CHECK.format(expected=expected))
    result, report = run_with_report(pytester, f"--rngguard-restore={restore}")
    result.assert_outcomes(passed=2, warnings=1)
    assert [leak["restored"] for leak in report["leaks"]] == [restore != "none"]


# -- allow_rng_leak ------------------------------------------------------------------------


def test_allow_rng_leak_excuses_the_named_sources_of_a_function(
    pytester: pytest.Pytester, numpy: object
) -> None:
    pytester.makepyfile(
        """
        import random

        import numpy as np
        import pytest

        @pytest.mark.allow_rng_leak("random", reason="the API under test seeds on purpose")
        def test_named():
            random.seed(1)
            np.random.seed(1)

        @pytest.mark.allow_rng_leak
        def test_every_source():
            random.seed(1)
            np.random.seed(1)
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=2, warnings=1)
    assert leak_rows(report, "nodeid", "source") == [
        ("test_allow_rng_leak_excuses_the_named_sources_of_a_function.py::test_named", "numpy")
    ]


def test_allow_rng_leak_works_on_classes_and_modules(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_module="""
        import random

        import pytest

        pytestmark = pytest.mark.allow_rng_leak("random")

        def test_reseeds():
            random.seed(1)
        """,
        test_class="""
        import random

        import pytest

        @pytest.mark.allow_rng_leak("random", reason="seeds on purpose")
        class TestSeeding:
            def test_reseeds(self):
                random.seed(1)

        def test_outside_the_class():
            random.seed(2)
        """,
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=3, warnings=1)
    assert leak_rows(report, "nodeid") == [("test_class.py::test_outside_the_class",)]


def test_allow_rng_leak_with_an_unknown_source_fails_naming_test_and_name(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(BAD_ALLOW)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes()["passed"] == 1
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_typo*",
            "test_*.py::test_typo: allow_rng_leak got 'nunpy', which is not a source; "
            "known sources are *numpy*",
        ]
    )


def test_a_bad_marker_gives_one_clean_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BAD_ALLOW)
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.no_fnmatch_line("*KeyError*")


# -- rngguard_ignore, rngguard_env, rngguard_sources ---------------------------------------

LEAKY_LIB = """
    import random

    def set_seed(seed):
        random.seed(seed)
    """


def test_reports_a_library_unless_rngguard_ignore_excuses_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        leaky_lib=LEAKY_LIB,
        test_uses_lib="""
        import leaky_lib

        def test_calls_the_library():
            leaky_lib.set_seed(3)
        """,
    )
    result, report = run_with_report(pytester)
    assert leak_rows(report, "source", "kind") == [("random", "reseeded")]
    assert report["leaks"][0]["origin"]["file"] == "leaky_lib.py"

    pytester.makeini(
        """
        [pytest]
        rngguard_ignore = leaky_*
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=1)
    assert report["leaks"] == []


def test_rngguard_env_watches_extra_variables(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MY_SEED", raising=False)
    monkeypatch.delenv("MY_OTHER_SEED", raising=False)
    pytester.makeini(
        """
        [pytest]
        rngguard_env =
            MY_SEED
        """
    )
    pytester.makepyfile(
        """
        import os

        def test_sets_variables():
            os.environ["MY_SEED"] = "3"
            os.environ["MY_OTHER_SEED"] = "3"
            os.environ["PYTHONHASHSEED"] = "123"
        """
    )
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    result, report = run_with_report(pytester)
    assert leak_rows(report, "source", "kind", "detail") == [
        ("env", "changed", "MY_SEED"),
        ("env", "changed", "PYTHONHASHSEED"),
    ]
    result.stdout.fnmatch_lines(["*env[[]MY_SEED[]] changed during call: unset -> '3'*"])


def test_rngguard_sources_limits_what_is_checked(pytester: pytest.Pytester, numpy: object) -> None:
    pytester.makeini(
        """
        [pytest]
        rngguard_sources = numpy
        """
    )
    pytester.makepyfile(
        """
        import random

        import numpy as np

        def test_reseeds_both():
            random.seed(1)
            np.random.seed(1)
        """
    )
    result, report = run_with_report(pytester)
    result.stdout.fnmatch_lines(["rngguard: mode=warn strict=no seed=0 sources=numpy"])
    assert leak_rows(report, "source") == [("numpy",)]
    assert report["sources"] == ["numpy"]


# -- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (["--rngguard=loud"], "", "*--rngguard='loud' is not valid: use one of off, warn, fail*"),
        (["--rngguard-seed=-1"], "", "*--rngguard-seed='-1' is not valid: use an integer >= 0*"),
        (["--rngguard-seed=abc"], "", "*--rngguard-seed='abc' is not valid: use an integer >= 0*"),
        (["--rngguard-repeat=0"], "", "*--rngguard-repeat='0' is not valid: use an integer >= 1*"),
        (
            ["--rngguard-restore=some"],
            "",
            "*--rngguard-restore='some' is not valid: use one of leaked, all, none*",
        ),
        ([], "rngguard_mode = loud", "*rngguard_mode (ini)='loud' is not valid: use one of off*"),
        (
            [],
            "rngguard_sources = bogus",
            "*rngguard_sources (ini)='bogus' is not valid: known sources are random, numpy, *",
        ),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_option_value_and_choices(
    pytester: pytest.Pytester, args: list[str], ini: str, expected: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: rngguard: " + expected.lstrip("*")])
    result.stderr.no_fnmatch_line("*Traceback*")
