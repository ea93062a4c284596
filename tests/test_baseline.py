"""The leak baseline (``--rngguard-baseline``): today's leaks recorded, then shown as known
(counted, never warned about or failed) while only new ones warn or fail; entries that no
longer happen listed and removed by an update; entries of what did not run kept.

The rules are checked against an independent model (``model_verdict``), on generated leak
sets and on generated sessions run for real; the key is checked to stay put across xdist,
pytest-randomly's orders and ``-k`` subsets on a suite whose wider scopes leak; and the
state each test starts from is observed (``rng_observer``) to be the same with and without
a baseline, since a baseline changes what is told, never what is put back.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import NO_RANDOMLY, require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle_model import RNGS, Run, Suite
from test_oracle import check_seen, examples, suites
from test_oracle import run as run_observed

from pytest_rngguard.baseline import (
    Entry,
    Ran,
    file_json,
    file_problem,
    judge,
    load,
    teardown_owner,
)
from pytest_rngguard.ledger import Putback
from pytest_rngguard.origins import Origin
from pytest_rngguard.report import Leak
from pytest_rngguard.snapshots import Change

NO_TRACEBACK = ("*Traceback*", "*INTERNALERROR*")

# -- the model ---------------------------------------------------------------------------------
#
# Written from the rules in docs/adopting.md, not from baseline.py: a leak's key is its owner
# (the wider scope that made it, else the import or the test), source, detail, kind and the
# origin's file and function; an entry no longer happens when its owner ran to its end in
# this session, the session could have reported it, and no leak had its key; an update keeps
# every other entry and adds every leak's key.


def model_key(leak: Leak) -> tuple[Any, ...]:
    if leak.made_by:
        owner = leak.made_by
    elif leak.scope == "collection":
        owner = ("import", leak.nodeid)
    else:
        owner = ("test", leak.nodeid)
    origin = leak.change.origin
    where = None if origin is None else (origin.file, origin.function)
    return (owner, leak.change.source, leak.change.kind, leak.change.detail, where)


def model_ran(
    owner: tuple[str, ...], tests: set[str], collectors: set[str], fixtures: set[Any]
) -> bool:
    if owner[0] == "test":
        return owner[1] in tests
    if owner[0] == "import":
        return owner[1] in collectors
    if owner[0] == "fixture":
        return owner in fixtures
    parts = Path(owner[1]).parts
    return any(Path(test.split("::")[0]).parts[: len(parts)] == parts for test in tests)


def model_verdict(
    entries: set[tuple[Any, ...]],
    leaks: list[Leak],
    ran: tuple[set[str], set[str], set[Any]],
    checked: set[str],
    strict: bool,
) -> tuple[list[bool], set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """(whether each leak is known, the entries that no longer happen, the updated file)."""
    known = [model_key(leak) in entries for leak in leaks]
    happened = {model_key(leak) for leak in leaks}
    stale = set()
    for entry in entries:
        could_be_reported = entry[1] in checked and (strict or entry[2] != "advanced")
        if could_be_reported and model_ran(entry[0], *ran) and entry not in happened:
            stale.add(entry)
    return known, stale, (entries - stale) | happened


# -- generated leaks against the model ---------------------------------------------------------

TESTS = ("pkg/test_a.py::test_x", "pkg/test_a.py::test_y", "test_b.py::test_z")
IMPORTS = ("pkg/test_a.py", "test_b.py", "pkg")
FIXTURES = (("fixture", "model", "module", ""), ("fixture", "model", "module", "pkg"))
PACKAGES = (("package", "pkg"), ("package", "other"))
SOURCES = ("random", "numpy", "env")


@st.composite
def leaks(draw: Any) -> Leak:
    made_by = draw(st.sampled_from([(), (), *FIXTURES, *PACKAGES]))
    collection = not made_by and draw(st.booleans())
    nodeid = draw(st.sampled_from(IMPORTS if collection else TESTS))
    source = draw(st.sampled_from(SOURCES))
    detail = draw(st.sampled_from(["PL_GLOBAL_SEED", "PL_SEED_WORKERS"])) if source == "env" else ""
    kind = "changed" if source == "env" else draw(st.sampled_from(["reseeded", "advanced"]))
    origin = draw(
        st.none()
        | st.builds(
            Origin,
            st.sampled_from(["helpers.py", "conftest.py"]),
            st.integers(1, 50),  # a line: never part of the key
            st.sampled_from(["set_seed", "model"]),
            st.just(""),
        )
    )
    phase = "collection" if collection else draw(st.sampled_from(["setup", "call", "teardown"]))
    scope = "collection" if collection else "test"
    change = Change(source, kind, detail, "", origin)
    return Leak(nodeid, phase, None, change, Putback(), scope, made_by)


def as_entry(key: tuple[Any, ...]) -> Entry:
    return Entry(*key)


@settings(max_examples=300, deadline=None)
@given(
    recorded=st.lists(leaks(), max_size=8),
    found=st.lists(leaks(), max_size=8),
    tests=st.sets(st.sampled_from(TESTS)),
    collectors=st.sets(st.sampled_from(IMPORTS)),
    fixtures=st.sets(st.sampled_from(FIXTURES)),
    checked=st.sets(st.sampled_from(SOURCES), min_size=1),
    strict=st.booleans(),
)
def test_new_known_stale_and_the_update_agree_with_the_model(
    recorded: list[Leak],
    found: list[Leak],
    tests: set[str],
    collectors: set[str],
    fixtures: set[Any],
    checked: set[str],
    strict: bool,
) -> None:
    entries = {model_key(leak) for leak in recorded}
    ran = Ran()
    ran.tests, ran.collectors, ran.scopes = set(tests), set(collectors), set(fixtures)
    verdict = judge(
        frozenset(as_entry(e) for e in entries), found, ran, checked, strict=strict, update=True
    )
    known, stale, updated = model_verdict(
        entries, found, (tests, collectors, fixtures), checked, strict
    )
    assert [any(leak is k for k in verdict.known) for leak in found] == known
    assert [any(leak is n for n in verdict.new) for leak in found] == [not k for k in known]
    assert set(verdict.stale) == {as_entry(e) for e in stale}
    assert verdict.written is not None
    assert set(verdict.written) == {as_entry(e) for e in updated}
    assert verdict.entries == len(entries)


@settings(max_examples=100, deadline=None)
@given(found=st.lists(leaks(), max_size=8))
def test_the_file_keeps_each_key_once_sorted_and_reads_back_the_same(found: list[Leak]) -> None:
    entries = {as_entry(model_key(leak)) for leak in found}
    written = json.loads(json.dumps(file_json([*entries, *entries])))
    assert file_problem(written) is None
    assert len(written["leaks"]) == len(entries)
    assert written == json.loads(json.dumps(file_json(reversed(sorted(entries, key=str)))))
    for leak in written["leaks"]:
        assert "line" not in json.dumps(leak)


def test_the_file_reads_back_as_it_was_written(tmp_path: Path) -> None:
    entries = {
        Entry(("test", "a.py::t"), "numpy", "reseeded", "", ("helpers.py", "set_seed")),
        Entry(("import", "a.py"), "random", "reseeded"),
        Entry(("fixture", "model", "module", "tests"), "env", "changed", "PL_GLOBAL_SEED"),
        Entry(("package", "pkg"), "torch", "replaced", "", ("pkg/__init__.py", "setup_module")),
    }
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(file_json(entries)))
    assert load(str(path)) == entries


# -- which wider scope made a teardown's change -----------------------------------------------


def origin(*stack: str) -> Origin:
    file, _, rest = stack[-1].partition(":")
    return Origin(file, int(rest.split(" in ")[0]), rest.split(" in ")[1], "", stack)


MODEL = ("fixture", "model", "module", "")


@pytest.mark.parametrize(
    ("stack", "owner"),
    [
        (["conftest.py:7 in model"], MODEL),
        (["conftest.py:7 in model", "helpers.py:3 in set_seed"], MODEL),
        (["test_a.py:4 in test_x", "helpers.py:3 in set_seed"], ()),
        (
            ["pkg/test_m.py:9 in teardown_module"],
            ("fixture", "_xunit_setup_module_fixture_pkg.test_m", "module", "pkg/test_m.py"),
        ),
        (["pkg/__init__.py:3 in teardown_module"], ("package", "pkg")),
        (["other.py:3 in shared"], ()),  # two fixtures' code: neither is named
    ],
)
def test_a_teardown_change_below_a_wider_fixtures_frame_is_that_fixtures(
    stack: list[str], owner: tuple[str, ...]
) -> None:
    frames: dict[tuple[str, str], Any] = {
        ("conftest.py", "model"): MODEL,
        ("pkg/test_m.py", "teardown_module"): (
            "fixture",
            "_xunit_setup_module_fixture_pkg.test_m",
            "module",
            "pkg/test_m.py",
        ),
        ("other.py", "shared"): None,
    }
    assert teardown_owner(origin(*stack), frames) == owner
    assert teardown_owner(None, frames) == ()


# -- end to end: record, then check -----------------------------------------------------------

SUITE = {
    name: textwrap.dedent(text).lstrip()
    for name, text in {
        "helpers": """
        import os
        import random

        def set_seed(seed):
            random.seed(seed)

        def other_seed(seed):
            random.seed(seed)

        def set_env(name):
            os.environ[name] = "1"
        """,
        "test_leaky": """
        import random

        import helpers

        random.seed(99)

        def test_seeds():
            helpers.set_seed(1)

        def test_sets_a_variable():
            helpers.set_env("PL_GLOBAL_SEED")

        def test_clean():
            pass
        """,
    }.items()
}


def write(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    """The suite's files, with no bytecode left of an earlier version of them."""
    pytester.makepyfile(**files)
    shutil.rmtree(pytester.path / "__pycache__", ignore_errors=True)


def inner(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    """An in-process run with the JSON report; returns the result and the report."""
    report = pytester.path / "report.json"
    report.unlink(missing_ok=True)
    result = pytester.runpytest(
        *NO_RANDOMLY, "-p", "no:cacheprovider", f"--rngguard-report={report}", *args
    )
    assert_no_traceback(result)
    return result, json.loads(report.read_text())


def record(pytester: pytest.Pytester, *args: str) -> dict[str, Any]:
    result, _ = inner(
        pytester, "--rngguard-baseline=baseline.json", "--rngguard-baseline-update", *args
    )
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    data: dict[str, Any] = json.loads((pytester.path / "baseline.json").read_text())
    return data


def fnmatch_escaped(text: str) -> str:
    """``text`` for ``fnmatch_lines``, its brackets literal (its ``*`` still wild)."""
    return text.replace("[", "[[]")


def assert_no_traceback(result: pytest.RunResult) -> None:
    for pattern in NO_TRACEBACK:
        result.stdout.no_fnmatch_line(pattern)
        result.stderr.no_fnmatch_line(pattern)


def rngguard_section(result: pytest.RunResult) -> list[str]:
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if line.strip("= ") == "rngguard")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start + 1 : end]


def test_update_records_todays_leaks_by_owner_and_origin_without_line_numbers(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, SUITE)
    data = record(pytester)
    assert data == {
        "version": 1,
        "leaks": [
            {
                "import": "test_leaky.py",
                "source": "random",
                "kind": "reseeded",
                "detail": "",
                "origin": {"file": "test_leaky.py", "function": "<module>"},
            },
            {
                "test": "test_leaky.py::test_seeds",
                "source": "random",
                "kind": "reseeded",
                "detail": "",
                "origin": {"file": "helpers.py", "function": "set_seed"},
            },
            {
                "test": "test_leaky.py::test_sets_a_variable",
                "source": "env",
                "kind": "changed",
                "detail": "PL_GLOBAL_SEED",
                "origin": {"file": "helpers.py", "function": "set_env"},
            },
        ],
    }


def test_known_leaks_are_listed_grouped_but_neither_warned_about_nor_failed(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, SUITE)
    record(pytester)
    for mode in ("warn", "fail"):
        result, report = inner(
            pytester,
            "--rngguard-baseline=baseline.json",
            f"--rngguard={mode}",
            "-W",
            "error::pytest_rngguard.RNGLeakWarning",
            "--junitxml=junit.xml",
        )
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        result.assert_outcomes(passed=3)
        result.stdout.no_fnmatch_line("*RNGLeakWarning*")
        assert "rngguard_leak" not in (pytester.path / "junit.xml").read_text()
        assert rngguard_section(result) == [
            "baseline: 3 known leaks in 3 tests or modules, not warned about or failed:",
            "  test_leaky.py: random reseeded during collection by test_leaky.py:5 in <module>",
            "  test_leaky.py::test_seeds: random reseeded during call by helpers.py:5 in set_seed",
            "  test_leaky.py::test_sets_a_variable: env[PL_GLOBAL_SEED] changed during call by "
            "helpers.py:11 in set_env",
        ]
        assert [leak["known"] for leak in report["leaks"]] == [True, True, True]
        assert report["baseline"] == {
            "file": "baseline.json",
            "entries": 3,
            "known": 3,
            "new": 0,
            "stale": [],
            "updated": False,
        }
        assert report["version"] == 1


def test_a_new_leak_warns_and_fails_as_without_a_baseline(pytester: pytest.Pytester) -> None:
    write(pytester, SUITE)
    record(pytester)
    pytester.makepyfile(
        test_new="""
        import random

        import helpers

        random.seed(5)

        def test_new():
            helpers.set_seed(2)
        """
    )
    result, report = inner(pytester, "--rngguard-baseline=baseline.json", "--rngguard=fail")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= rngguard =*",
            "2 leaks of global random state in 2 tests or modules:",
            "test_new.py: random reseeded during collection by test_new.py:5 in <module>",
            "test_new.py::test_new: random reseeded during call by helpers.py:5 in set_seed",
            "baseline: 3 known leaks in 3 tests or modules, not warned about or failed:",
            "*",
            "error: --rngguard=fail: the import of test_new.py changed global random state, so "
            "the session fails",
        ]
    )
    result.stdout.no_fnmatch_line("error: --rngguard=fail: the import of test_leaky.py*")
    assert sorted((leak["nodeid"], leak["known"]) for leak in report["leaks"]) == [
        ("test_leaky.py", True),
        ("test_leaky.py::test_seeds", True),
        ("test_leaky.py::test_sets_a_variable", True),
        ("test_new.py", False),
        ("test_new.py::test_new", False),
    ]
    assert report["baseline"]["new"] == 2


@pytest.mark.parametrize(("mode", "level"), [("warn", "warning"), ("fail", "error")])
def test_on_github_actions_only_new_leaks_are_annotated(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str, level: str
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(pytester.path))
    write(pytester, SUITE)
    record(pytester)
    pytester.makepyfile(test_new="import helpers\n\ndef test_new():\n    helpers.set_seed(2)\n")
    result, _ = inner(pytester, "--rngguard-baseline=baseline.json", f"--rngguard={mode}")
    annotations = [line for line in result.stdout.lines if line.startswith("::")]
    assert [line.split("::")[1] for line in annotations] == [
        f"{level} file=helpers.py,line=5,title=rngguard%3A random reseeded"
    ]
    assert "test_new.py::test_new" in annotations[0]


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "-n 2"])
def test_only_known_import_leaks_leave_a_fail_mode_session_passing(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    if xdist:
        require("xdist")
    write(pytester, {"test_imports": "import random\nrandom.seed(1)\n\ndef test_ok():\n    pass\n"})
    assert inner(pytester, "--rngguard=fail", *xdist)[0].ret == pytest.ExitCode.TESTS_FAILED
    record(pytester)
    result, _ = inner(pytester, "--rngguard=fail", "--rngguard-baseline=baseline.json", *xdist)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.no_fnmatch_line("error: --rngguard=fail*")


LEAKS_OF_ONE_TEST = {
    "the same leak": ("helpers.set_seed(1)", True),
    "another seed": ("helpers.set_seed(2)", True),  # no seed value in the key
    "another source": ("import numpy.random; numpy.random.seed(1)", False),
    "another variable": ("helpers.set_env('PL_SEED_WORKERS')", False),
    "another function": ("helpers.other_seed(1)", False),
    "the call moved to the test": ("import random; random.seed(1)", False),
}


def with_body(test: str, body: str) -> dict[str, str]:
    """The suite with ``test``'s body replaced."""
    text = SUITE["test_leaky"]
    start = text.index(f"def {test}():\n") + len(f"def {test}():\n")
    end = text.index("\n", start)
    return {**SUITE, "test_leaky": text[:start] + f"    {body}" + text[end:]}


@pytest.mark.parametrize(("body", "known"), LEAKS_OF_ONE_TEST.values(), ids=list(LEAKS_OF_ONE_TEST))
def test_a_leak_is_known_only_with_the_same_source_detail_kind_and_origin_function(
    pytester: pytest.Pytester, numpy: Any, body: str, known: bool
) -> None:
    write(pytester, SUITE)
    before = record(pytester)
    write(pytester, with_body("test_seeds", body))
    _, report = inner(pytester, "--rngguard-baseline=baseline.json")
    mine = [leak for leak in report["leaks"] if leak["nodeid"] == "test_leaky.py::test_seeds"]
    assert [leak["known"] for leak in mine] == [known]
    assert report["baseline"]["stale"] == ([] if known else [before["leaks"][1]])


def test_lines_added_above_a_known_leak_leave_it_known(pytester: pytest.Pytester) -> None:
    write(pytester, SUITE)
    record(pytester)
    shifted = {name: "# moved down\n\n\n" + text for name, text in SUITE.items()}
    write(pytester, shifted)
    result, report = inner(pytester, "--rngguard-baseline=baseline.json", "--rngguard=fail")
    assert result.ret == pytest.ExitCode.OK
    assert all(leak["known"] for leak in report["leaks"])
    assert report["baseline"]["stale"] == []


def test_entries_that_no_longer_happen_are_listed_and_an_update_removes_only_them(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, SUITE)
    before = record(pytester)
    write(pytester, with_body("test_seeds", "pass"))
    result, report = inner(pytester, "--rngguard-baseline=baseline.json", "--rngguard=fail")
    assert result.ret == pytest.ExitCode.OK
    assert rngguard_section(result)[-2:] == [
        "baseline: 1 entry no longer happens; shrink baseline.json with "
        "--rngguard-baseline-update:",
        "  test_leaky.py::test_seeds: random reseeded by helpers.py in set_seed",
    ]
    assert report["baseline"]["stale"] == [before["leaks"][1]]
    result, _ = inner(pytester, "--rngguard-baseline=baseline.json", "--rngguard-baseline-update")
    assert rngguard_section(result)[-3:] == [
        "baseline: 1 entry no longer happens, removed:",
        "  test_leaky.py::test_seeds: random reseeded by helpers.py in set_seed",
        "baseline: wrote 2 entries to baseline.json (0 added, 1 removed)",
    ]
    after = json.loads((pytester.path / "baseline.json").read_text())
    assert after["leaks"] == [before["leaks"][0], before["leaks"][2]]
    _, report = inner(pytester, "--rngguard-baseline=baseline.json")
    assert report["baseline"]["stale"] == []


#: Every leak of the suite gone, and ``test_seeds`` marked slow.
FIXED = "import pytest\n\n" + SUITE["test_leaky"].replace("random.seed(99)", "").replace(
    "def test_seeds", "@pytest.mark.slow\ndef test_seeds"
).replace("helpers.set_seed(1)", "pass").replace('helpers.set_env("PL_GLOBAL_SEED")', "pass")


@pytest.mark.parametrize(
    "subset",
    [
        ["-k", "not test_seeds"],
        ["-m", "not slow"],
        ["test_leaky.py::test_sets_a_variable"],
        ["--deselect", "test_leaky.py::test_seeds"],
    ],
    ids=["-k", "-m", "a node id", "--deselect"],
)
def test_a_subset_neither_lists_nor_removes_the_entries_of_tests_that_did_not_run(
    pytester: pytest.Pytester, subset: list[str]
) -> None:
    write(pytester, SUITE)
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    before = record(pytester)
    write(pytester, {**SUITE, "test_leaky": FIXED})
    _, report = inner(
        pytester, "--rngguard-baseline=baseline.json", "--rngguard-baseline-update", *subset
    )
    # The module was imported, and its import seeds no more; test_seeds did not run.
    stale = [before["leaks"][0], before["leaks"][2]]
    assert report["baseline"]["stale"] == stale
    after = json.loads((pytester.path / "baseline.json").read_text())
    assert after["leaks"] == [before["leaks"][1]]


OUTCOMES = {
    "fails": "helpers.set_seed(1); assert False",
    "skips": "pytest.skip('not today')",
    "xfails": "pytest.xfail('known bug')",
    "errors in setup": "helpers.set_seed(1)",
}
BROKEN_SETUP = """
@pytest.fixture(autouse=True)
def broken(request):
    if request.node.name == "test_seeds":
        raise RuntimeError("no database")
"""


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_a_test_that_did_not_pass_keeps_its_entries(
    pytester: pytest.Pytester, outcome: str
) -> None:
    write(pytester, SUITE)
    before = record(pytester)
    files = with_body("test_seeds", OUTCOMES[outcome])
    files["test_leaky"] = "import pytest\n" + files["test_leaky"]
    if outcome == "errors in setup":
        files["test_leaky"] += BROKEN_SETUP
    write(pytester, files)
    _, report = inner(pytester, "--rngguard-baseline=baseline.json", "--rngguard-baseline-update")
    assert report["baseline"]["stale"] == []
    assert json.loads((pytester.path / "baseline.json").read_text()) == before


#: A module fixture that leaks in its setup and (otherwise) in its teardown, which pytest runs
#: after the module's last test, or in the teardown of a test that stops the session.
STOPPED = {
    "conftest": """
        import os
        import random

        import pytest

        @pytest.fixture(scope="module")
        def model():
            os.environ["PL_GLOBAL_SEED"] = "1"
            yield
            random.seed(2)

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("the database went away")
        """,
    "test_stops": """
        def test_first(model):
            pass

        def test_second(model):
            pass

        def test_last(model):
            pass
        """,
}
#: How test_second stops the session: a failure in its teardown comes after pytest tore down
#: what the next test does not need, so the module fixture is torn down at the session's end,
#: where nothing is checked; so is every scope after an interruption.
STOPS = {
    "-x": ("test_second(model, broken_teardown):\n            pass", ["-x"]),
    "--maxfail": ("test_second(model, broken_teardown):\n            pass", ["--maxfail=1"]),
    "-x -n 2": ("test_second(model, broken_teardown):\n            pass", ["-x", "-n", "2"]),
    "an interrupt": ("test_second(model):\n            raise KeyboardInterrupt", []),
}


@pytest.mark.parametrize(("second", "stop"), STOPS.values(), ids=list(STOPS))
def test_a_session_stopped_early_neither_lists_nor_removes_a_wider_fixtures_entries(
    pytester: pytest.Pytester, second: str, stop: list[str]
) -> None:
    if "-n" in stop:
        require("xdist")
    write(pytester, STOPPED)
    before = record(pytester)
    # Both of the fixture's changes are recorded under the fixture, none under a test.
    assert [(entry.get("fixture"), entry["source"]) for entry in before["leaks"]] == [
        ("model", "env"),
        ("model", "random"),
    ]
    stopped = STOPPED["test_stops"].replace("test_second(model):\n            pass", second)
    write(pytester, {**STOPPED, "test_stops": stopped})
    args = ("--rngguard-baseline=baseline.json", "--rngguard-baseline-update", *stop)
    if stop:
        result, report = inner(pytester, *args)
    else:  # pytester re-raises a KeyboardInterrupt of an in-process run
        result, report = subprocess_run(pytester, "interrupted", *LEAN, *args)
    assert result.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED)
    if "-n" not in stop:  # (a worker whose last test test_second was tears down there)
        # The teardown's change was not looked for: it says nothing about whether it happens.
        assert [(leak["source"], leak["known"]) for leak in report["leaks"]] == [("env", True)]
    assert all(leak["known"] for leak in report["leaks"])
    assert report["baseline"]["stale"] == []
    assert json.loads((pytester.path / "baseline.json").read_text()) == before
    result.stdout.no_fnmatch_line("*no longer happen*")


# -- generated sessions, run for real ---------------------------------------------------------

#: What a generated test may do, by the key it leaks under: a helper's name is the origin.
ACTIONS = {
    "seed_a": ("random", "", "reseeded"),
    "seed_b": ("random", "", "reseeded"),
    "env_a": ("env", "PL_GLOBAL_SEED", "changed"),
    "env_b": ("env", "PL_SEED_WORKERS", "changed"),
}
GENERATED_HELPERS = """
import os
import random

def seed_a():
    random.seed(1)

def seed_b():
    random.seed(2)

def env_a():
    os.environ["PL_GLOBAL_SEED"] = "1"

def env_b():
    os.environ["PL_SEED_WORKERS"] = "1"
"""


@st.composite
def sessions(draw: Any) -> tuple[list[set[str]], list[set[str]], list[str], set[int]]:
    """(each test's actions in the recorded run, in the later run, each test's outcome in
    the later run, the tests the later run selects)."""
    count = draw(st.integers(1, 5))
    actions = st.sets(st.sampled_from(sorted(ACTIONS)), max_size=3)
    first = [draw(actions) for _ in range(count)]
    later = [draw(actions) for _ in range(count)]
    outcomes = [
        draw(st.sampled_from(["pass", "pass", "pass", "fail", "skip"])) for _ in range(count)
    ]
    selected = draw(st.sets(st.integers(0, count - 1), min_size=1))
    return first, later, outcomes, selected


def generated_suite(actions: list[set[str]], outcomes: list[str]) -> str:
    lines = ["import pytest", "import gen_helpers", ""]
    for number, (done, outcome) in enumerate(zip(actions, outcomes, strict=True)):
        lines.append(f"def test_t{number}():")
        if outcome == "skip":
            lines.append("    pytest.skip('skipped')")
        lines.extend(f"    gen_helpers.{name}()" for name in sorted(done))
        lines.append("    assert False" if outcome == "fail" else "    pass")
        lines.append("")
    return "\n".join(lines)


def leaked(done: set[str]) -> list[str]:
    """The actions a test's leaks name: one leak per source and detail, whose origin is the
    last call that set it (the test runs its actions in sorted order)."""
    last: dict[tuple[str, str], str] = {}
    for action in sorted(done):
        last[ACTIONS[action][:2]] = action
    return sorted(last.values())


def generated_entry(number: int, action: str) -> dict[str, Any]:
    source, detail, kind = ACTIONS[action]
    return {
        "test": f"test_gen.py::test_t{number}",
        "source": source,
        "kind": kind,
        "detail": detail,
        "origin": {"file": "gen_helpers.py", "function": action},
    }


def canonical(entries: Any) -> list[str]:
    return sorted(json.dumps(entry, sort_keys=True) for entry in entries)


@settings(
    max_examples=int(os.environ.get("RNGGUARD_ORACLE_EXAMPLES", "0")) or 12,
    derandomize=not os.environ.get("RNGGUARD_ORACLE_EXAMPLES"),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(session=sessions())
def test_generated_sessions_agree_with_the_model(
    pytester: pytest.Pytester, session: tuple[list[set[str]], list[set[str]], list[str], set[int]]
) -> None:
    first, later, outcomes, selected = session
    (pytester.path / "baseline.json").unlink(missing_ok=True)
    write(
        pytester,
        {
            "gen_helpers": GENERATED_HELPERS,
            "test_gen": generated_suite(first, ["pass"] * len(first)),
        },
    )
    recorded = record(pytester)
    entries = [generated_entry(n, a) for n, done in enumerate(first) for a in leaked(done)]
    assert canonical(recorded["leaks"]) == canonical(entries)

    write(
        pytester, {"gen_helpers": GENERATED_HELPERS, "test_gen": generated_suite(later, outcomes)}
    )
    keyword = " or ".join(f"test_t{n}" for n in sorted(selected))
    _, report = inner(
        pytester, "--rngguard-baseline=baseline.json", "--rngguard-baseline-update", "-k", keyword
    )
    # The model: a selected test leaks unless it skips first; it ran only if it passed.
    happened = [
        generated_entry(n, a)
        for n in sorted(selected)
        if outcomes[n] != "skip"
        for a in leaked(later[n])
    ]
    ran = {f"test_gen.py::test_t{n}" for n in selected if outcomes[n] == "pass"}
    stale = [e for e in entries if e["test"] in ran and e not in happened]
    got = [
        (leak["nodeid"], leak["source"], leak["detail"], leak["origin"]["function"], leak["known"])
        for leak in report["leaks"]
    ]
    want = [
        (e["test"], e["source"], e["detail"], e["origin"]["function"], e in entries)
        for e in happened
    ]
    assert sorted(got) == sorted(want)
    assert canonical(report["baseline"]["stale"]) == canonical(stale)
    written = json.loads((pytester.path / "baseline.json").read_text())
    expected = [e for e in entries if e not in stale] + [e for e in happened if e not in entries]
    assert canonical(written["leaks"]) == canonical(expected)


# -- the file refused before any test runs -----------------------------------------------------


def one_entry(**fields: Any) -> bytes:
    """A file whose one entry has ``fields``, over a valid test entry's (None: left out)."""
    entry = {"test": "a.py::t", "source": "random", "kind": "reseeded", **fields}
    return json.dumps(
        {"version": 1, "leaks": [{k: v for k, v in entry.items() if v is not None}]}
    ).encode()


def fixture_entry(**fields: Any) -> bytes:
    given = {"test": None, "fixture": "model", "scope": "module", "defined_for": "", **fields}
    return one_entry(**given)


OWNERS = "give one of test, import, package, fixture"
MALFORMED = {
    "not JSON": (b"{", "it is not valid JSON: *"),
    "not UTF-8": (b"\xff\xfe", "it is not UTF-8 text"),
    "an array": (b"[]", "it holds an array, not an object"),
    "no version": (b"{}", "it has no version"),
    "version 2": (b'{"version": 2}', "version 2 is not supported (this plugin reads 1)"),
    "version true": (b'{"version": true}', "version True is not supported (this plugin reads 1)"),
    "no leaks": (b'{"version": 1}', "it has no leaks"),
    "leaks an object": (b'{"version": 1, "leaks": {}}', "leaks is an object, not an array"),
    "an unknown field": (b'{"version": 1, "leaks": [], "x": 1}', "it has an unknown field 'x'"),
    "an entry a string": (b'{"version": 1, "leaks": ["x"]}', "leaks[0] is a string, not an object"),
    "no owner": (one_entry(test=None), f"leaks[0] names no owner: {OWNERS}"),
    "two owners": (
        one_entry(**{"import": "a.py"}),
        f"leaks[0] names two owners (test, import): {OWNERS}",
    ),
    "no source": (one_entry(source=None), "leaks[0] has no source"),
    "a number for a test": (one_entry(test=3), "leaks[0]['test'] is a number, not a string"),
    "a bad kind": (
        one_entry(kind="seeded"),
        "leaks[0]['kind'] is 'seeded': use one of reseeded, replaced, changed, advanced",
    ),
    "a fixture without scope": (fixture_entry(scope=None), "leaks[0] has no scope"),
    "a function scope": (
        fixture_entry(scope="function"),
        "leaks[0]['scope'] is 'function': use one of class, module, package, session",
    ),
    "an origin without function": (
        one_entry(origin={"file": "a.py"}),
        "leaks[0]['origin']['function'] is missing, not a string",
    ),
    "a line in the origin": (
        one_entry(origin={"file": "a.py", "function": "f", "line": 3}),
        "leaks[0]['origin'] has an unknown field 'line'",
    ),
    "a line in the entry": (one_entry(line=3), "leaks[0] has an unknown field 'line'"),
}


@pytest.mark.parametrize(("content", "why"), MALFORMED.values(), ids=list(MALFORMED))
@pytest.mark.parametrize("update", [False, True], ids=["check", "update"])
def test_a_malformed_file_is_a_usage_error_naming_it_before_any_test_runs(
    pytester: pytest.Pytester, content: bytes, why: str, update: bool
) -> None:
    pytester.makepyfile(
        test_mark="import pathlib\n\ndef test_runs():\n    pathlib.Path('ran').touch()\n"
    )
    (pytester.path / "baseline.json").write_bytes(content)
    args = [
        "--rngguard-baseline=baseline.json",
        *(["--rngguard-baseline-update"] if update else []),
    ]
    result = pytester.runpytest(*NO_RANDOMLY, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: rngguard: --rngguard-baseline='baseline.json' cannot be read: "
            f"*/baseline.json is not a pytest-rngguard baseline file: {fnmatch_escaped(why)}"
        ]
    )
    assert not (pytester.path / "ran").exists()
    assert (pytester.path / "baseline.json").read_bytes() == content
    assert_no_traceback(result)


def test_a_missing_file_is_a_usage_error_that_names_the_update_flag(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, SUITE)
    pytester.makepyfile(
        test_mark="import pathlib\n\ndef test_runs():\n    pathlib.Path('ran').touch()\n"
    )
    result = pytester.runpytest(*NO_RANDOMLY, "--rngguard-baseline=missing.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: rngguard: --rngguard-baseline='missing.json': */missing.json does not exist; "
            "record the current leaks in it with --rngguard-baseline-update"
        ]
    )
    assert not (pytester.path / "ran").exists()
    assert not (pytester.path / "missing.json").exists()
    result = pytester.runpytest(
        *NO_RANDOMLY, "--rngguard-baseline=new/missing.json", "--rngguard-baseline-update"
    )
    assert result.ret == pytest.ExitCode.OK
    assert len(json.loads((pytester.path / "new" / "missing.json").read_text())["leaks"]) == 3


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (
            ["--rngguard-baseline-update"],
            "--rngguard-baseline-update needs the baseline file: give --rngguard-baseline=PATH "
            "or the rngguard_baseline ini key",
        ),
        (
            ["--rngguard-baseline=b.json", "--rngguard-baseline-update", "--rngguard=off"],
            "--rngguard-baseline-update records the leaks found, and --rngguard=off looks for none",
        ),
        (
            ["--rngguard-baseline=b.json", "--rngguard-report=b.json"],
            "--rngguard-report='b.json' is not valid: it is the baseline file "
            "(--rngguard-baseline='b.json')",
        ),
        (
            ["--rngguard-baseline=./b.json", "--rngguard-fingerprints=b.json"],
            "--rngguard-fingerprints='b.json' is not valid: it is the baseline file "
            "(--rngguard-baseline='./b.json')",
        ),
        (
            ["--rngguard-baseline=sub", "--rngguard-baseline-update"],
            "--rngguard-baseline='sub' is not valid: */sub is a folder, not a file",
        ),
        (
            ["--rngguard-baseline=sub"],
            "--rngguard-baseline='sub' is not valid: */sub is a folder, not a file",
        ),
    ],
    ids=[
        "update alone",
        "update while off",
        "the report",
        "the fingerprints",
        "a folder to update",
        "a folder to read",
    ],
)
def test_options_that_cannot_work_together_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], why: str
) -> None:
    write(pytester, SUITE)
    (pytester.path / "b.json").write_text(json.dumps(file_json([])))
    (pytester.path / "sub").mkdir()
    result = pytester.runpytest(*NO_RANDOMLY, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: rngguard: {why}"])
    assert json.loads((pytester.path / "b.json").read_text()) == file_json([])


def test_with_the_plugin_off_the_baseline_is_not_read(pytester: pytest.Pytester) -> None:
    write(pytester, SUITE)
    (pytester.path / "b.json").write_text("not a baseline")
    result = pytester.runpytest(*NO_RANDOMLY, "--rngguard=off", "--rngguard-baseline=b.json")
    assert result.ret == pytest.ExitCode.OK


def test_the_ini_key_names_the_file_and_the_flag_overrides_it(pytester: pytest.Pytester) -> None:
    write(pytester, SUITE)
    pytester.makeini(
        "[pytest]\nrngguard_mode = fail\nrngguard_baseline = .rngguard-baseline.json\n"
    )
    result = pytester.runpytest(*NO_RANDOMLY)
    result.stderr.fnmatch_lines(
        ["ERROR: rngguard: rngguard_baseline (ini)='.rngguard-baseline.json': * does not exist; *"]
    )
    assert pytester.runpytest(*NO_RANDOMLY, "--rngguard-baseline-update").ret == pytest.ExitCode.OK
    assert pytester.runpytest(*NO_RANDOMLY).ret == pytest.ExitCode.OK
    assert (pytester.path / ".rngguard-baseline.json").exists()
    result = pytester.runpytest(*NO_RANDOMLY, "--rngguard-baseline=other.json")
    result.stderr.fnmatch_lines(
        ["ERROR: rngguard: --rngguard-baseline='other.json': * does not exist; *"]
    )


def test_without_a_baseline_the_report_says_so(pytester: pytest.Pytester) -> None:
    write(pytester, SUITE)
    _, report = inner(pytester)
    assert [leak["known"] for leak in report["leaks"]] == [False, False, False]
    assert report["baseline"] is None


def test_an_update_that_cannot_be_written_is_one_error_line(pytester: pytest.Pytester) -> None:
    write(pytester, SUITE)
    target = pytester.path / "out" / "baseline.json"
    pytester.makepyfile(
        test_spoils=f"import os\n\ndef test_spoils_the_path():\n    os.makedirs({str(target)!r})\n"
    )
    result = pytester.runpytest(
        *NO_RANDOMLY, "--rngguard-baseline=out/baseline.json", "--rngguard-baseline-update"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        [f"rngguard: error: the baseline could not be written to {target}: Is a directory*"]
    )
    result.stdout.no_fnmatch_line("baseline: wrote*")
    assert_no_traceback(result)


# -- xdist, pytest-randomly and subsets: the key stays put ------------------------------------

LEAN = (*NO_RANDOMLY, "-p", "no:hypothesispytest", "-p", "no:anyio", "-p", "no:cacheprovider")


def subprocess_run(
    pytester: pytest.Pytester, name: str, *args: str
) -> tuple[pytest.RunResult, dict[str, Any]]:
    report = pytester.path / f"{name}.json"
    result = pytester.runpytest_subprocess(f"--rngguard-report={report}", *args, timeout=300)
    assert_no_traceback(result)
    return result, json.loads(report.read_text())


def test_xdist_gives_the_summary_report_and_exit_status_of_a_serial_run(
    pytester: pytest.Pytester,
) -> None:
    require("xdist")
    more = "import helpers\n\ndef test_seeds_more():\n    helpers.set_seed(3)\n\n"
    more += "def test_seeds_otherwise():\n    helpers.other_seed(4)\n"
    write(pytester, SUITE)
    record(pytester)
    write(pytester, {**with_body("test_seeds", "pass"), "test_more": more})
    runs = {}
    for name, extra in (("serial", ["-p", "no:xdist"]), ("xdist", ["-n", "2"])):
        result, report = subprocess_run(
            pytester, name, *LEAN, "--rngguard=fail", "--rngguard-baseline=baseline.json", *extra
        )
        runs[name] = (
            result.ret,
            sorted(rngguard_section(result)),
            sorted(json.dumps(leak, sort_keys=True) for leak in report["leaks"]),
            report["baseline"],
            report["tests"],
        )
    assert runs["serial"] == runs["xdist"]
    assert runs["serial"][0] == pytest.ExitCode.TESTS_FAILED
    assert runs["serial"][3]["new"] == 2
    assert len(runs["serial"][3]["stale"]) == 1


#: Wider scopes that leak in their setup and their teardown, and whose first (and last) test
#: depends on -k, on the order and on how xdist shares the tests out.
SCOPED = {
    "conftest": """
        import os
        import random

        import pytest

        @pytest.fixture(scope="module")
        def model():
            random.seed(1)
            yield
            random.seed(2)

        @pytest.fixture(scope="session")
        def engine():
            os.environ["PL_GLOBAL_SEED"] = "7"
            yield
            os.environ.pop("PL_GLOBAL_SEED", None)
        """,
    "pkg/__init__": """
        import random

        def setup_module():
            random.seed(3)

        def teardown_module():
            random.seed(4)
        """,
    "pkg/test_p": """
        import random

        import pytest

        def setup_module():
            random.seed(5)

        def teardown_module():
            random.seed(6)

        def test_p1(model):
            pass

        def test_p2():
            pass

        def test_p3(engine):
            pass

        class TestK:
            @pytest.fixture(scope="class")
            def ready(self):
                random.seed(8)

            def test_k1(self, ready):
                pass

            def test_k2(self, ready):
                pass
        """,
    "test_q": """
        import random

        import pytest

        random.seed(9)

        def test_q1(model):
            random.seed(10)

        def test_q2(model, engine):
            pass

        def test_q3():
            pass

        @pytest.mark.parametrize("n", range(4))
        def test_q4(n, model):
            pass
        """,
}


def scoped_run(pytester: pytest.Pytester, name: str, *args: str) -> tuple[Any, ...]:
    """A run that updates a copy of the recorded baseline: (the new leaks' keys but the
    owner, the known leaks' keys, the entries that no longer happen, the file written)."""
    shutil.copy(pytester.path / "recorded.json", pytester.path / f"{name}-baseline.json")
    result, report = subprocess_run(
        pytester,
        name,
        f"--rngguard-baseline={name}-baseline.json",
        "--rngguard-baseline-update",
        *args,
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()

    def keys(known: bool) -> set[tuple[Any, ...]]:
        return {
            (
                leak["source"],
                leak["kind"],
                leak["detail"],
                leak["origin"]["file"],
                leak["origin"]["function"],
            )
            for leak in report["leaks"]
            if leak["known"] is known
        }

    written = (pytester.path / f"{name}-baseline.json").read_text()
    return keys(False), keys(True), report["baseline"]["stale"], written


def test_wider_scopes_are_keyed_by_scope_whatever_the_order_subset_or_distribution(
    pytester: pytest.Pytester,
) -> None:
    require("xdist")
    require("pytest_randomly")
    write(pytester, SCOPED)
    subprocess_run(
        pytester, "record", *LEAN, "--rngguard-baseline=recorded.json", "--rngguard-baseline-update"
    )
    recorded = json.loads((pytester.path / "recorded.json").read_text())
    owners = {
        tuple(k for k in entry if k not in ("source", "kind", "detail", "origin"))
        for entry in recorded["leaks"]
    }
    assert {
        json.dumps({k: e[k] for k in ("fixture", "scope", "defined_for") if k in e})
        for e in recorded["leaks"]
        if "fixture" in e
    } == {
        json.dumps({"fixture": "model", "scope": "module", "defined_for": ""}),
        json.dumps({"fixture": "engine", "scope": "session", "defined_for": ""}),
        json.dumps({"fixture": "ready", "scope": "class", "defined_for": "pkg/test_p.py::TestK"}),
        json.dumps(
            {
                "fixture": "_xunit_setup_module_fixture_pkg.test_p",
                "scope": "module",
                "defined_for": "pkg/test_p.py",
            }
        ),
    }
    assert owners == {("fixture", "scope", "defined_for"), ("package",), ("import",), ("test",)}
    assert not [e for e in recorded["leaks"] if "test" in e and e["test"] != "test_q.py::test_q1"]
    # Now one test leaks no more, and one new test does.
    changed = (
        SCOPED["test_q"]
        .replace("random.seed(10)", "pass")
        .replace("def test_q3():\n            pass", "def test_q3():\n            random.seed(11)")
    )
    write(pytester, {**SCOPED, "test_q": changed})
    variants = {
        "serial": scoped_run(pytester, "serial", *LEAN),
        "xdist": scoped_run(pytester, "xdist", *LEAN[:2], "-p", "no:hypothesispytest", "-n", "2"),
        "randomly-1": scoped_run(
            pytester,
            "randomly1",
            "-p",
            "no:xdist",
            "-p",
            "no:hypothesispytest",
            "--randomly-seed=1",
        ),
        "randomly-2": scoped_run(
            pytester,
            "randomly2",
            "-p",
            "no:xdist",
            "-p",
            "no:hypothesispytest",
            "--randomly-seed=2",
        ),
    }
    serial = variants["serial"]
    assert serial[0] == {("random", "reseeded", "", "test_q.py", "test_q3")}
    assert serial[2] == [
        {
            "test": "test_q.py::test_q1",
            "source": "random",
            "kind": "reseeded",
            "detail": "",
            "origin": {"file": "test_q.py", "function": "test_q1"},
        }
    ]
    for name, outcome in variants.items():
        assert outcome == serial, name
    # A subset: the package's tests do not run, so its scopes' entries are kept.
    subset = scoped_run(pytester, "subset", *LEAN, "-k", "test_q")
    assert subset[:3] == (
        serial[0],
        {
            k
            for k in serial[1]
            if k[3] != "pkg/__init__.py" and k[3] != "pkg/test_p.py" and k[4] != "ready"
        },
        serial[2],
    )
    assert subset[3] == serial[3]


# -- what is put back does not depend on the baseline -----------------------------------------


@examples(ci=4)
@given(suite=suites())
def test_each_test_starts_from_the_same_state_with_and_without_a_baseline(
    pytester: pytest.Pytester, numpy: Any, suite: Suite
) -> None:
    (pytester.path / "baseline.json").unlink(missing_ok=True)
    baseline = "--rngguard-baseline=baseline.json"
    _, _, plain = run_observed(pytester, suite)
    _, recorded_report, recorded = run_observed(
        pytester, suite, baseline, "--rngguard-baseline-update"
    )
    _, report, known = run_observed(pytester, suite, baseline, "--rngguard=fail")
    model = Run(suite, restore="leaked", strict=False)
    model.collect()
    model.run(list(suite.tests()))
    for lines in (plain, recorded, known):
        check_seen(model, lines, RNGS[:2])
    # (States nobody chose, such as NumPy's at its import, differ from process to process:
    # the model checks each run's; the runs ran the same tests.)
    assert [line["nodeid"] for line in plain] == [line["nodeid"] for line in known]
    assert [line["nodeid"] for line in recorded] == [line["nodeid"] for line in known]
    assert all(leak["known"] for leak in report["leaks"])
    assert report["baseline"]["stale"] == []
    assert len(report["leaks"]) == len(recorded_report["leaks"])
