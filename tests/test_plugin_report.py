"""What the user reads: the JSON report, JUnit XML, GitHub annotations, the terminal summary,
and the ``rngguard`` fixture."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest
from conftest import run, run_with_report

HELPERS = """
    import random

    def set_seed(seed):
        random.seed(seed)
    """

LEAKY_SUITE = """
    import random

    import helpers
    import pytest

    @pytest.fixture
    def seeded():
        helpers.set_seed(1)

    def test_fixture_leaks(seeded):
        pass

    def test_body_leaks():
        helpers.set_seed(2)

    def test_unseen_leak():
        random._inst.seed(3)  # past the intercepted module function: origin unknown

    def test_clean():
        pass

    @pytest.mark.skip(reason="not today")
    def test_skipped():
        pass
    """


def make_leaky_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(helpers=HELPERS, test_suite=LEAKY_SUITE)


# -- JSON ----------------------------------------------------------------------------------


def test_json_report_has_exactly_the_documented_fields(pytester: pytest.Pytester) -> None:
    make_leaky_suite(pytester)
    result, report = run_with_report(pytester, "--rngguard-seed=4")
    result.assert_outcomes(passed=4, skipped=1, warnings=3)
    assert list(report) == [
        "version",
        "plugin_version",
        "mode",
        "strict",
        "seed",
        "sources",
        "tests",
        "leaks",
        "not_reproducible",
        "baseline",
    ]
    from pytest_rngguard import __version__

    assert {k: v for k, v in report.items() if k not in ("sources", "leaks")} == {
        "version": 1,
        "plugin_version": __version__,
        "mode": "warn",
        "strict": False,
        "seed": 4,
        "tests": 5,
        "not_reproducible": [],
        "baseline": None,
    }
    assert "random" in report["sources"]
    leaks = {leak["nodeid"].partition("::")[2]: leak for leak in report["leaks"]}
    assert leaks["test_fixture_leaks"] == {
        "nodeid": "test_suite.py::test_fixture_leaks",
        "phase": "setup",
        "fixture": "seeded",
        "source": "random",
        "kind": "reseeded",
        "detail": "",
        "origin": {
            "file": "helpers.py",
            "line": 4,
            "function": "set_seed",
            "stack": ["test_suite.py:8 in seeded", "helpers.py:4 in set_seed"],
        },
        "restored": True,
        "scope": "test",
        "known": False,
    }
    assert leaks["test_body_leaks"]["origin"]["stack"] == [
        "test_suite.py:14 in test_body_leaks",
        "helpers.py:4 in set_seed",
    ]
    assert leaks["test_unseen_leak"]["origin"] is None
    assert leaks["test_unseen_leak"]["kind"] == "reseeded"
    assert set(leaks) == {"test_fixture_leaks", "test_body_leaks", "test_unseen_leak"}


def test_an_unknown_origin_hints_at_trace_which_finds_it(pytester: pytest.Pytester) -> None:
    make_leaky_suite(pytester)
    result, report = run_with_report(pytester, "-k", "unseen")
    result.stdout.fnmatch_lines(
        ["*random reseeded during call (origin unknown: re-run with --rngguard-trace*"]
    )
    result, report = run_with_report(pytester, "-k", "unseen", "--rngguard-trace")
    origin = report["leaks"][0]["origin"]
    assert (origin["file"], origin["line"], origin["function"]) == (
        "test_suite.py",
        17,
        "test_unseen_leak",
    )


def test_json_report_is_replaced_atomically_and_leaves_no_temporary_files(
    pytester: pytest.Pytester,
) -> None:
    make_leaky_suite(pytester)
    folder = pytester.path / "reports"
    folder.mkdir()
    target = folder / "rngguard.json"
    target.write_text("old")
    os.link(target, folder / "old-link")  # a reader holding the old file
    run(pytester, f"--rngguard-report={target}")
    assert (folder / "old-link").read_text() == "old"
    assert len(json.loads(target.read_text())["leaks"]) == 3
    assert sorted(p.name for p in folder.iterdir()) == ["old-link", "rngguard.json"]


def test_json_report_folder_is_created(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    run(pytester, "--rngguard-report=out/deeper/report.json")
    report = json.loads((pytester.path / "out" / "deeper" / "report.json").read_text())
    assert (report["tests"], report["leaks"]) == (1, [])


def test_json_report_is_written_in_fail_mode_too(pytester: pytest.Pytester) -> None:
    make_leaky_suite(pytester)
    result, report = run_with_report(pytester, "--rngguard=fail", "--rngguard-strict")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (report["mode"], report["strict"], len(report["leaks"])) == ("fail", True, 3)


# -- JUnit XML -----------------------------------------------------------------------------


def test_junit_xml_has_a_rngguard_leak_property_on_the_leaking_test(
    pytester: pytest.Pytester,
) -> None:
    make_leaky_suite(pytester)
    run(pytester, "--junitxml=junit.xml")
    tree = ET.parse(pytester.path / "junit.xml")
    properties = {
        case.get("name"): [(p.get("name"), p.get("value")) for p in case.iter("property")]
        for case in tree.iter("testcase")
    }
    assert properties["test_clean"] == []
    assert properties["test_body_leaks"] == [
        ("rngguard_leak", "call: random reseeded during call at helpers.py:4 in set_seed")
    ]
    [(name, value)] = properties["test_fixture_leaks"]
    assert name == "rngguard_leak"
    assert value is not None
    assert value.startswith("setup: random reseeded during setup (fixture 'seeded')")


# -- GitHub Actions ------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "level"), [("warn", "warning"), ("fail", "error")])
def test_github_actions_get_an_annotation_at_each_origin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str, level: str
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    make_leaky_suite(pytester)
    result = run(pytester, f"--rngguard={mode}")
    result.stdout.fnmatch_lines(
        [
            f"::{level} file=helpers.py,line=4,title=rngguard%3A random reseeded::"
            "test_suite.py::test_body_leaks: random reseeded during call*",
        ]
    )
    annotations = [line for line in result.stdout.lines if line.startswith("::")]
    assert len(annotations) == 3
    assert all(line.startswith(f"::{level} ") for line in annotations)


def test_no_annotations_outside_github_actions(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    make_leaky_suite(pytester)
    result = run(pytester)
    assert not [line for line in result.stdout.lines if line.startswith("::")]


# -- terminal summary ----------------------------------------------------------------------


SHARED_ORIGIN = """
    import helpers
    import pytest

    @pytest.mark.parametrize("seed", [1, 2, 3, 4])
    def test_seeds(seed):
        helpers.set_seed(seed)

    def test_other():
        helpers.set_seed(5)
    """


def test_summary_groups_tests_that_share_an_origin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(helpers=HELPERS, test_shared=SHARED_ORIGIN)
    result = run(pytester)
    result.stdout.fnmatch_lines(
        [
            "*= rngguard =*",
            "5 leaks of global random state in 5 tests or modules:",
            "5 tests: random reseeded during call by helpers.py:4 in set_seed",
            "  test_shared.py::test_other, test_shared.py::test_seeds[[]1[]], "
            "test_shared.py::test_seeds[[]2[]] and 2 more (-v lists all)",
        ]
    )


def test_summary_lists_every_test_with_verbose(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(helpers=HELPERS, test_shared=SHARED_ORIGIN)
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        ["*= rngguard =*"]
        + [
            f"test_shared.py::test_seeds[[]{n}[]]: random reseeded during call at "
            "helpers.py:4 in set_seed"
            for n in (1, 2, 3, 4)
        ]
        + ["test_shared.py::test_other: random reseeded during call at helpers.py:4 in set_seed"]
    )
    result.stdout.no_fnmatch_line("*tests: random reseeded*")


def test_no_summary_section_without_leaks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_clean(): pass")
    run(pytester).stdout.no_fnmatch_line("*= rngguard =*")


# -- the rngguard fixture ------------------------------------------------------------------


def test_rngguard_fixture_snapshots_and_asserts_no_leak(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import random

        import pytest
        from pytest_rngguard import RNGLeakError

        def reseed():
            random.seed(11)

        def test_snapshot(rngguard):
            before = rngguard.snapshot()
            random.random()
            after = rngguard.snapshot()
            assert [(c.source, c.kind) for c in before.diff(after)] == [("random", "advanced")]
            assert before.diff(rngguard.snapshot()) != []
            before.restore()
            assert before.diff(rngguard.snapshot()) == []

        def test_assert_no_leak(rngguard):
            state = random.getstate()
            assert rngguard.assert_no_leak(lambda x: x * 2, 21) == 42
            with pytest.raises(RNGLeakError, match=r"random reseeded.*in reseed"):
                rngguard.assert_no_leak(reseed)
            assert random.getstate() == state  # put back before raising

        def test_record_refuses_what_it_cannot_compare(rngguard):
            rngguard.record("fine", [1, 2.5, "x", None, {"a": b"b"}])
            with pytest.raises(TypeError, match="cannot compare"):
                rngguard.record("object", object())
            with pytest.raises(ValueError, match="already recorded"):
                rngguard.record("fine", 1)
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=3)
    assert report["leaks"] == []
