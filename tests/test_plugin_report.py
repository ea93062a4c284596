"""What the user reads: the JSON report, JUnit XML, GitHub annotations, the terminal summary,
and the ``rngguard`` fixture."""

from __future__ import annotations

import json
import os
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import run, run_with_report

from pytest_rngguard.report import repository_path

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


# -- one warning per test, grouped and capped ----------------------------------------------

MYLIB = """
    import random

    def reset():
        random.seed(0)
    """


def test_a_change_made_again_and_again_is_one_entry_with_one_stack(
    pytester: pytest.Pytester,
) -> None:
    # Each reseed is settled apart when an ignored module reseeds after it: a hundred leaks.
    pytester.makeini("[pytest]\nrngguard_ignore = mylib\n")
    pytester.makepyfile(
        helpers=HELPERS,
        mylib=MYLIB,
        test_loop="""
        import helpers
        import mylib

        def test_loop():
            for i in range(1, 101):
                helpers.set_seed(i)
                mylib.reset()
        """,
    )
    result, report = run_with_report(pytester)
    assert len(report["leaks"]) == 100  # one per seed the loop gave
    warning = warning_lines(result, "test_loop.py::test_loop")
    assert [line for line in warning if "reseeded" in line] == [
        "random reseeded 100 times during call at helpers.py:4 in set_seed"
    ]
    assert warning.count("helpers.py:4 in set_seed") == 1  # the stack, once
    assert len(warning) < 20
    result.stdout.fnmatch_lines(
        [
            "*= rngguard =*",
            "100 leaks of global random state in 1 test or module:",
            "test_loop.py::test_loop: random reseeded 100 times during call by "
            "helpers.py:4 in set_seed",
        ]
    )


def warning_lines(result: pytest.RunResult, nodeid: str) -> list[str]:
    """The lines of one test's RNGLeakWarning in the warnings summary, stripped."""
    lines = result.stdout.lines
    start = lines.index(nodeid, lines.index(next(x for x in lines if "warnings summary" in x)))
    found = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("-- Docs"):
            break
        found.append(line.strip())
    return found


def test_a_warning_shows_ten_changes_and_points_at_the_json_report_for_the_rest(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nrngguard_ignore = mylib\n")
    calls = "\n".join(f"    random.seed({n}); mylib.reset()" for n in range(1, 13))
    pytester.makepyfile(
        mylib=MYLIB,
        test_many=f"import random\n\nimport mylib\n\n\ndef test_many():\n{calls}\n",
    )
    result, report = run_with_report(pytester)
    assert len(report["leaks"]) == 12  # twelve lines, twelve origins
    warning = warning_lines(result, "test_many.py::test_many")
    assert [line.split(" at ")[1] for line in warning if " reseeded " in line] == [
        f"test_many.py:{line} in test_many" for line in range(7, 17)
    ]
    path = pytester.path / "rngguard-report.json"
    assert (
        f"... and 2 more changes (2 leaks): every one is in the JSON report, in {path}" in warning
    )
    without_report = warning_lines(run(pytester), "test_many.py::test_many")
    assert any("written by --rngguard-report=PATH" in line for line in without_report)


def test_a_call_that_changes_several_settings_of_one_source_is_one_entry(
    pytester: pytest.Pytester, torch: Any
) -> None:
    import torch_settings

    pytester.makepyfile(
        test_precision="""
        import torch

        def test_resets_the_precision():
            torch.set_float32_matmul_precision("highest")
        """
    )
    with torch_settings.torch_defaults_afterwards():
        torch_settings.reset_to_defaults()
        before = torch_settings.observe()
        torch.set_float32_matmul_precision("highest")
        changed = torch_settings.details_of(before, torch_settings.observe())
        torch_settings.reset_to_defaults()
        result, report = run_with_report(pytester)
    assert len(changed) > 1  # what makes the case: 'none' -> 'ieee' twice, on torch 2.9+
    assert {leak["detail"] for leak in report["leaks"]} == changed
    [entry] = [
        line
        for line in warning_lines(result, "test_precision.py::test_resets_the_precision")
        if line.startswith("torch.flags")
    ]
    named = entry.partition("[")[2].partition("]")[0].split(", ")
    assert sorted(named) == sorted(changed)
    assert " changed during call: 'none' -> 'ieee' at test_precision.py:4 in " in entry


# -- what to do about a leak ---------------------------------------------------------------

PACKAGE_SEEDING = {
    "enginelib/__init__.py": "",
    "enginelib/seeding.py": "import random\n\n\ndef set_seed(seed):\n    random.seed(seed)\n",
    "test_engine.py": (
        "from enginelib.seeding import set_seed\n\n\ndef test_starts_engine():\n    set_seed(0)\n"
    ),
}


def test_every_warning_ends_with_what_to_do_and_each_way_it_names_works(
    pytester: pytest.Pytester,
) -> None:
    for path, text in PACKAGE_SEEDING.items():
        (pytester.path / path).parent.mkdir(exist_ok=True)
        (pytester.path / path).write_text(text)
    result, report = run_with_report(pytester)
    assert len(report["leaks"]) == 1
    warning = warning_lines(result, "test_engine.py::test_starts_engine")
    assert warning[-4:] == [
        "what to do: draw from a generator of your own (random.Random(seed)) or wrap the call "
        "in pytest_rngguard.isolated();",
        'or excuse it: @pytest.mark.allow_rng_leak("random") on the test, or '
        "rngguard_ignore = enginelib.* in the ini file",
        "see https://pytest-rngguard.readthedocs.io/en/latest/reading-a-report.html"
        "#what-to-do-about-a-leak",
        "def test_starts_engine():",  # pytest's own line: the test's source
    ]
    # Each way, written as the warning spells it, leaves nothing to report.
    test = PACKAGE_SEEDING["test_engine.py"]
    ways = {
        "isolated": test.replace(
            "    set_seed(0)", "    with pytest_rngguard.isolated():\n        set_seed(0)"
        ).replace("from enginelib", "import pytest_rngguard\nfrom enginelib"),
        "marker": test.replace(
            "def test", 'import pytest\n\n\n@pytest.mark.allow_rng_leak("random")\ndef test'
        ),
    }
    for name, text in ways.items():
        (pytester.path / "test_engine.py").write_text(text)
        assert run_with_report(pytester)[1]["leaks"] == [], name
    (pytester.path / "test_engine.py").write_text(test)
    pytester.makeini("[pytest]\nrngguard_ignore = enginelib.*\n")
    assert run_with_report(pytester)[1]["leaks"] == []
    # The package's name alone names its __init__, not the module that seeded.
    pytester.makeini("[pytest]\nrngguard_ignore = enginelib\n")
    assert len(run_with_report(pytester)[1]["leaks"]) == 1


def test_a_module_that_seeds_at_import_is_told_to_use_pytestmark(
    pytester: pytest.Pytester,
) -> None:
    module = "import random\n\nrandom.seed(3)\n\n\ndef test_it():\n    pass\n"
    pytester.makepyfile(test_seeds=module)
    result = run(pytester)
    marker = 'pytest.mark.allow_rng_leak("random")'
    result.stdout.fnmatch_lines([f"*or excuse it: pytestmark = {marker} in the module"])
    pytester.makepyfile(test_seeds=f"import pytest\n\npytestmark = {marker}\n{module}")
    assert run_with_report(pytester)[1]["leaks"] == []


# -- the calls before the origin -----------------------------------------------------------


def test_a_helper_called_twice_with_one_seed_names_the_last_call_and_tells_the_first_apart(
    pytester: pytest.Pytester,
) -> None:
    # vLLM's worker: set_random_seed at device initialisation, draws, set_random_seed again.
    pytester.makepyfile(
        helpers=HELPERS,
        test_worker="""
        import random

        import helpers

        def init_device():
            helpers.set_seed(0)

        def warm_up():
            random.random()
            helpers.set_seed(0)

        def test_starts_worker():
            init_device()
            warm_up()
            random.random()
        """,
    )
    result, report = run_with_report(pytester)
    [leak] = report["leaks"]
    assert leak["origin"]["stack"] == [
        "test_worker.py:14 in test_starts_worker",
        "test_worker.py:10 in warm_up",
        "helpers.py:4 in set_seed",
    ]
    warning = warning_lines(result, "test_worker.py::test_starts_worker")
    assert warning[warning.index("earlier calls in the same phase:") + 1] == (
        "helpers.py:4 in set_seed, from test_worker.py:6 in init_device"
    )


# -- GitHub annotations, from the repository -----------------------------------------------


@pytest.mark.parametrize("folder", ["", "sub/project"], ids=["repository-root", "sub-folder"])
def test_annotations_name_files_from_the_repository_root_wherever_the_rootdir_is(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(pytester.path))
    project = pytester.path / folder
    project.mkdir(parents=True, exist_ok=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "helpers.py").write_text(textwrap.dedent(HELPERS).lstrip())
    (project / "test_ci.py").write_text(
        "import numpy\n\nimport helpers\n\n\ndef test_leaks():\n    helpers.set_seed(1)\n"
        "    numpy.random.seed(1)\n"
    )
    result = run(pytester, str(project / "test_ci.py"), "--rootdir", str(project))
    prefix = f"{folder}/" if folder else ""
    annotations = [line for line in result.stdout.lines if line.startswith("::")]
    assert [line.split(",title=")[0] for line in annotations] == [
        f"::warning file={prefix}helpers.py,line=4",
        f"::warning file={prefix}test_ci.py,line=8",
    ]
    # Where it is, relative to the repository: a file GitHub can open.
    for line in annotations:
        path = line.split("file=")[1].split(",")[0]
        assert (pytester.path / path).is_file()


def test_a_path_that_is_no_file_of_the_repository_is_annotated_as_shown(
    tmp_path: Path,
) -> None:
    (tmp_path / "repo" / "project").mkdir(parents=True)
    (tmp_path / "repo" / "project" / "helpers.py").write_text("")
    root, project = str(tmp_path / "repo"), str(tmp_path / "repo" / "project")
    assert repository_path("helpers.py", project, root) == "project/helpers.py"
    # An installed library's file, shown from its package: no file under the rootdir.
    assert repository_path("numpy/random/mtrand.py", project, root) == "numpy/random/mtrand.py"
    # A rootdir outside the workspace, and no workspace at all (not on GitHub).
    assert repository_path("helpers.py", project, str(tmp_path / "other")) == "helpers.py"
    assert repository_path("helpers.py", project, None) == "helpers.py"
