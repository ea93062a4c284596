"""The report and fingerprint files: bad paths are usage errors before any test runs, a
write that fails at the end costs one error line and never the results, and a written file
lands where ``--junitxml`` would put it, with the mode ``--junitxml`` would give it."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import NO_RANDOMLY, UNUSED_IN_SUBPROCESS
from hypothesis import given, settings
from hypothesis import strategies as st


def _writes_anywhere() -> bool:
    """Whether this process may write where the mode says no (root, CAP_DAC_OVERRIDE)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            return os.access(folder, os.W_OK)
        finally:
            os.chmod(folder, 0o755)


WRITES_ANYWHERE = _writes_anywhere()
NO_TRACEBACK = ("*Traceback*", "*INTERNALERROR*")

#: One deterministic test (so there is a fingerprint to write) and one plain test.
SUITE = """
import pytest

@pytest.mark.deterministic
def test_deterministic(rngguard):
    rngguard.record("value", 1)

def test_plain():
    pass
"""

#: A fingerprint file with one valid entry, to be spoiled by the cases below.
VALID_ENTRY = {"seed": 1, "digest": "ab", "records": {"value": "cd"}, "states": {"random": "ef"}}


def valid_file(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "version": 1,
        "versions": {"python": "3.11.7"},
        "tests": {"test_suite.py::test_deterministic": dict(VALID_ENTRY)},
    }
    data.update(changes)
    return data


def entry(**changes: object) -> dict[str, object]:
    return valid_file(tests={"test_suite.py::test_deterministic": {**VALID_ENTRY, **changes}})


def inner(pytester: pytest.Pytester, *args: str, fresh: bool = False) -> pytest.RunResult:
    """The suite, run in this process, or in a fresh one that a hang cannot outlive."""
    pytester.makepyfile(test_suite=SUITE)
    if fresh:
        return pytester.runpytest_subprocess(*NO_RANDOMLY, *UNUSED_IN_SUBPROCESS, *args, timeout=60)
    return pytester.runpytest(*NO_RANDOMLY, *args)


def assert_no_traceback(result: pytest.RunResult) -> None:
    result.stdout.no_fnmatch_line(NO_TRACEBACK[0])
    result.stdout.no_fnmatch_line(NO_TRACEBACK[1])
    result.stderr.no_fnmatch_line(NO_TRACEBACK[0])
    result.stderr.no_fnmatch_line(NO_TRACEBACK[1])


def assert_usage_error(result: pytest.RunResult, line: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: rngguard: {line}"])
    assert_no_traceback(result)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# -- paths refused before any test runs ------------------------------------------------------

BAD_PATHS = {
    # id: (what to make in the folder, the path given, why it is refused)
    "a folder": ("folder", "out", "*/out is a folder, not a file"),
    "below a file": ("file", "out/report.json", "*/out is a file, not a folder"),
    "deep below a file": ("file", "out/a/b/report.json", "*/out is a file, not a folder"),
    # A FIFO, not /dev/null: a plugin that wrote there anyway would replace the system's.
    "a FIFO": ("fifo", "out", "*/out is not a regular file"),
    "a link to a FIFO": ("fifo link", "out", "*/out (a link to */pipe) is not a regular file"),
    "a link to a folder": (
        "folder link",
        "out",
        "*/out (a link to */elsewhere) is a folder, not a file",
    ),
}


def make(pytester: pytest.Pytester, what: str) -> None:
    out = pytester.path / "out"
    if what == "folder":
        out.mkdir()
    elif what == "file":
        out.write_text("not a folder")
    elif what == "fifo":
        os.mkfifo(out)
    elif what == "fifo link":
        os.mkfifo(pytester.path / "pipe")
        out.symlink_to(pytester.path / "pipe")
    elif what == "folder link":
        (pytester.path / "elsewhere").mkdir()
        out.symlink_to(pytester.path / "elsewhere")


@pytest.mark.parametrize("option", ["--rngguard-report", "--rngguard-fingerprints"])
@pytest.mark.parametrize(("what", "path", "why"), BAD_PATHS.values(), ids=list(BAD_PATHS))
def test_a_path_that_cannot_be_the_file_is_a_usage_error_naming_the_option(
    pytester: pytest.Pytester, option: str, what: str, path: str, why: str
) -> None:
    make(pytester, what)
    # Reading a FIFO blocks: a fresh process, so that a plugin that tried cannot hang us.
    result = inner(pytester, f"{option}={path}", fresh="fifo" in what)
    assert_usage_error(result, f"{option}={path!r} is not valid: {why}")
    if what == "file":
        assert (pytester.path / "out").read_text() == "not a folder"


@pytest.mark.parametrize("key", ["rngguard_report", "rngguard_fingerprints"])
def test_a_bad_path_in_the_ini_file_names_the_ini_key(pytester: pytest.Pytester, key: str) -> None:
    (pytester.path / "out").mkdir()
    pytester.makeini(f"[pytest]\n{key} = out\n")
    result = inner(pytester)
    assert_usage_error(result, f"{key} (ini)='out' is not valid: */out is a folder, not a file")


@pytest.mark.skipif(WRITES_ANYWHERE, reason="root may write anywhere")
@pytest.mark.parametrize("option", ["--rngguard-report", "--rngguard-fingerprints"])
def test_an_unwritable_folder_or_file_is_a_usage_error(
    pytester: pytest.Pytester, option: str
) -> None:
    locked = pytester.path / "locked"
    locked.mkdir()
    (pytester.path / "read-only.json").write_text("{}")
    (pytester.path / "read-only.json").chmod(0o444)
    locked.chmod(0o555)
    try:
        result = inner(pytester, f"{option}=locked/sub/out.json")
        assert_usage_error(
            result, f"{option}='locked/sub/out.json' is not valid: */locked is not writable"
        )
        if option == "--rngguard-report":  # a fingerprint file that exists is only read
            result = inner(pytester, f"{option}=read-only.json")
            assert_usage_error(
                result, f"{option}='read-only.json' is not valid: */read-only.json is not writable"
            )
    finally:
        locked.chmod(0o755)


def test_a_device_is_refused_before_anything_is_written() -> None:
    # Checked on the library function: a plugin that wrote anyway would, as root, replace
    # the system's /dev/null with a regular file.
    from pytest_rngguard.files import FileProblem, target

    for write in (True, False):
        with pytest.raises(FileProblem, match=r"^/dev/null is not a regular file$"):
            target("/dev/null", write=write)


SAME_FILE = {
    "same spelling": ("shared.json", "shared.json"),
    "other spelling": ("./sub/../shared.json", "shared.json"),
    "a link to it": ("link.json", "shared.json"),
    "a hard link to it": ("hard.json", "shared.json"),
}


@pytest.mark.parametrize(("report", "fingerprints"), SAME_FILE.values(), ids=list(SAME_FILE))
def test_the_report_and_the_fingerprints_in_one_file_is_a_usage_error(
    pytester: pytest.Pytester, report: str, fingerprints: str
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    shared = pytester.path / "shared.json"
    inner(pytester, "--rngguard-fingerprints=shared.json").assert_outcomes(passed=2)
    baseline = shared.read_text()
    (pytester.path / "sub").mkdir()
    (pytester.path / "link.json").symlink_to(shared)
    os.link(shared, pytester.path / "hard.json")
    result = inner(
        pytester, f"--rngguard-report={report}", f"--rngguard-fingerprints={fingerprints}"
    )
    assert_usage_error(
        result,
        f"--rngguard-report={report!r} is not valid: it is the fingerprint file "
        f"(--rngguard-fingerprints={fingerprints!r})",
    )
    assert shared.read_text() == baseline


# -- a write that fails at the end -----------------------------------------------------------

#: The test replaces the file's place with a folder once the paths were checked.
SPOILER = """
import os

import pytest

@pytest.mark.deterministic
def test_deterministic(rngguard):
    rngguard.record("value", 1)

def test_spoils_the_path():
    os.makedirs({path!r})
"""


@pytest.mark.parametrize(
    ("option", "what"),
    [("--rngguard-report", "the JSON report"), ("--rngguard-fingerprints", "the fingerprints")],
)
def test_a_write_that_fails_at_the_end_is_one_error_line_after_the_summary(
    pytester: pytest.Pytester, option: str, what: str
) -> None:
    target_path = pytester.path / "out" / "file.json"
    pytester.makepyfile(test_suite=SPOILER.format(path=str(target_path)))
    other = "--rngguard-fingerprints" if option == "--rngguard-report" else "--rngguard-report"
    result = pytester.runpytest(
        *NO_RANDOMLY, "-rA", f"{option}=out/file.json", f"{other}=other.json"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        [
            f"rngguard: error: {what} could not be written to {target_path}: Is a directory*",
            "*short test summary info*",
            "PASSED test_suite.py::test_deterministic",
            "PASSED test_suite.py::test_spoils_the_path",
            "*= 2 passed in *",
        ]
    )
    assert len([line for line in result.outlines if "rngguard: error:" in line]) == 1
    result.stdout.no_fnmatch_line("fingerprints: wrote * to out/file.json")
    assert_no_traceback(result)
    # The other file is still written.
    assert json.loads((pytester.path / "other.json").read_text())["version"] == 1


def test_a_failed_write_keeps_the_exit_status_of_failed_tests(pytester: pytest.Pytester) -> None:
    target_path = pytester.path / "out" / "file.json"
    pytester.makepyfile(
        test_suite=SPOILER.format(path=str(target_path)) + "\ndef test_fails():\n    assert 0\n"
    )
    result = pytester.runpytest(*NO_RANDOMLY, "--rngguard-report=out/file.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["rngguard: error: the JSON report could not be written*"])
    result.assert_outcomes(passed=2, failed=1)


# -- where the file goes and what it looks like ----------------------------------------------


def test_the_mode_is_the_one_junitxml_gives_a_new_file(pytester: pytest.Pytester) -> None:
    with umask(0o022):
        inner(pytester, "--junitxml=junit.xml", "--rngguard-report=report.json").assert_outcomes(
            passed=2
        )
    assert mode(pytester.path / "report.json") == mode(pytester.path / "junit.xml") == 0o644


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
@pytest.mark.parametrize("option", ["--rngguard-report", "--rngguard-fingerprints"])
def test_a_new_file_gets_the_mode_the_umask_allows(
    pytester: pytest.Pytester, mask: int, option: str
) -> None:
    with umask(mask):
        inner(pytester, f"{option}=new.json").assert_outcomes(passed=2)
    assert mode(pytester.path / "new.json") == 0o666 & ~mask


@pytest.mark.parametrize("existing", [0o644, 0o640, 0o664, 0o600])
def test_an_existing_file_keeps_its_mode(pytester: pytest.Pytester, existing: int) -> None:
    path = pytester.path / "report.json"
    path.write_text("old")
    path.chmod(existing)
    with umask(0o077):
        inner(pytester, "--rngguard-report=report.json").assert_outcomes(passed=2)
    assert json.loads(path.read_text())["tests"] == 2
    assert mode(path) == existing


@pytest.mark.parametrize("option", ["--rngguard-report", "--rngguard-fingerprints"])
@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "dangling"])
def test_a_link_is_written_through_not_replaced(
    pytester: pytest.Pytester, option: str, dangling: bool
) -> None:
    real = pytester.path / "store" / "real.json"
    real.parent.mkdir()
    if not dangling:
        real.write_text("old")
        real.chmod(0o640)
    link = pytester.path / "link.json"
    link.symlink_to(real)
    if option == "--rngguard-fingerprints" and not dangling:
        # An existing file is compared with; rewriting it takes the update flag.
        args: tuple[str, ...] = (f"{option}=link.json", "--rngguard-fingerprints-update")
    else:
        args = (f"{option}=link.json",)
    inner(pytester, *args).assert_outcomes(passed=2)
    assert link.is_symlink()
    assert os.readlink(link) == str(real)
    assert json.loads(real.read_text())["version"] == 1
    assert sorted(p.name for p in real.parent.iterdir()) == ["real.json"]
    if not dangling:
        assert mode(real) == 0o640


@pytest.mark.parametrize("option", ["--rngguard-report", "--rngguard-fingerprints"])
def test_a_tilde_is_the_home_folder_as_for_junitxml(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    home = pytester.path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    inner(pytester, f"{option}=~/reports/file.json", "--junitxml=~/reports/junit.xml")
    assert sorted(p.name for p in (home / "reports").iterdir()) == ["file.json", "junit.xml"]
    assert not (pytester.path / "~").exists()


def test_a_tilde_in_the_ini_file_is_the_home_folder(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = pytester.path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    pytester.makeini("[pytest]\nrngguard_report = ~/report.json\n")
    inner(pytester).assert_outcomes(passed=2)
    assert json.loads((home / "report.json").read_text())["tests"] == 2


def test_a_relative_path_is_where_pytest_started_even_if_a_test_changes_folder(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "elsewhere").mkdir()
    pytester.makepyfile(
        test_suite="""
        import os

        def test_moves():
            os.chdir("elsewhere")
        """
    )
    pytester.runpytest(*NO_RANDOMLY, "--rngguard-report=report.json").assert_outcomes(passed=1)
    assert (pytester.path / "report.json").exists()
    assert not (pytester.path / "elsewhere" / "report.json").exists()


# -- the fingerprint file's content ----------------------------------------------------------

BAD_FINGERPRINTS: dict[str, tuple[object, str]] = {
    # id: (the file's content, JSON unless bytes or str, why it is refused)
    "empty": (b"", "it is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    "not JSON": (b"{version: 1}", "it is not valid JSON: Expecting property name*"),
    "not UTF-8": (b"\xff\xfe{}", "it is not UTF-8 text"),
    "a list": ([], "it holds an array, not an object"),
    "a string": ("fingerprints", "it holds a string, not an object"),
    "no version": ({"tests": {}}, "it has no version"),
    "version 2": (valid_file(version=2), "version 2 is not supported (this plugin reads 1)"),
    "version '1'": (valid_file(version="1"), "version '1' is not supported (this plugin reads 1)"),
    "no tests": ({"version": 1}, "it has no tests"),
    "tests a list": (valid_file(tests=[]), "tests is an array, not an object"),
    "versions a list": (valid_file(versions=[]), "versions is an array, not an object"),
    "a version a number": (
        valid_file(versions={"python": 3}),
        "versions['python'] is a number, not a string",
    ),
    "an entry a list": (
        valid_file(tests={"t.py::t": []}),
        "tests['t.py::t'] is an array, not an object",
    ),
    "a seed a string": (
        entry(seed="1"),
        "tests['test_suite.py::test_deterministic']['seed'] is a string, not an integer",
    ),
    "no digest": (
        valid_file(tests={"t.py::t": {"seed": 1, "records": {}, "states": {}}}),
        "tests['t.py::t'] has no digest",
    ),
    "a digest a number": (
        entry(digest=1),
        "tests['test_suite.py::test_deterministic']['digest'] is a number, not a string",
    ),
    "records a list": (
        entry(records=["a"]),
        "tests['test_suite.py::test_deterministic']['records'] is an array, not an object",
    ),
    "a record null": (
        entry(records={"value": None}),
        "tests['test_suite.py::test_deterministic']['records']['value'] is null, not a string",
    ),
    "a state an object": (
        entry(states={"random": {}}),
        "tests['test_suite.py::test_deterministic']['states']['random'] is an object, not a string",
    ),
}


@pytest.mark.parametrize(("content", "why"), BAD_FINGERPRINTS.values(), ids=list(BAD_FINGERPRINTS))
def test_a_bad_fingerprint_file_is_a_usage_error_naming_the_file_and_the_problem(
    pytester: pytest.Pytester, content: object, why: str
) -> None:
    path = pytester.path / "fingerprints.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content))
    result = inner(pytester, "--rngguard-fingerprints=fingerprints.json")
    assert_usage_error(
        result,
        "--rngguard-fingerprints='fingerprints.json' cannot be read: "
        f"{path} is not a pytest-rngguard fingerprint file: {why}",
    )
    result.stdout.no_fnmatch_line("*no tests ran*")


def test_a_bad_fingerprint_file_in_the_ini_file_names_the_ini_key(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "fingerprints.json").write_text("[]")
    pytester.makeini("[pytest]\nrngguard_fingerprints = fingerprints.json\n")
    assert_usage_error(
        inner(pytester),
        "rngguard_fingerprints (ini)='fingerprints.json' cannot be read: *: it holds an array*",
    )


def test_a_valid_fingerprint_file_with_a_null_seed_is_read(pytester: pytest.Pytester) -> None:
    # An entry written for a test that applied no seed (SPEC: seed null) is well-formed.
    (pytester.path / "fingerprints.json").write_text(json.dumps(entry(seed=None)))
    result = inner(pytester, "--rngguard-fingerprints=fingerprints.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*differs from the fingerprint file in record 'value'*"])


# -- xdist: the controller checks and writes -------------------------------------------------


def test_under_xdist_a_bad_path_is_one_usage_error(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    (pytester.path / "out").mkdir()
    result = inner(pytester, "-n", "2", "--rngguard-report=out")
    assert_usage_error(
        result, "--rngguard-report='out' is not valid: */out is a folder, not a file"
    )


def test_under_xdist_only_the_controller_writes_and_reports_a_failed_write(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    target_path = pytester.path / "out" / "file.json"
    pytester.makepyfile(test_suite=SPOILER.format(path=str(target_path)))
    link = pytester.path / "fingerprints.json"
    link.symlink_to(pytester.path / "real-fingerprints.json")
    result = pytester.runpytest(
        *NO_RANDOMLY,
        "-n",
        "2",
        "--rngguard-report=out/file.json",
        "--rngguard-fingerprints=fingerprints.json",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.outlines if "rngguard: error:" in line] == [
        f"rngguard: error: the JSON report could not be written to {target_path}: Is a directory"
    ]
    result.stdout.fnmatch_lines(["*= 2 passed in *"])
    assert_no_traceback(result)
    assert link.is_symlink()
    data = json.loads((pytester.path / "real-fingerprints.json").read_text())
    assert list(data["tests"]) == ["test_suite.py::test_deterministic"]


# -- the library functions, for every shape of path ------------------------------------------

SEGMENT = st.sampled_from(["a", "b", "reports", "x.d", "with space"])


@settings(max_examples=60, deadline=None)
@given(
    folders=st.lists(SEGMENT, max_size=3),
    name=st.sampled_from(["report.json", "fp.json", "out"]),
    spelled=st.sampled_from(["relative", "absolute", "tilde", "dotted"]),
    existing=st.none() | st.sampled_from([0o600, 0o640, 0o644, 0o664, 0o444]),
    mask=st.sampled_from([0o022, 0o002, 0o077, 0o027]),
    as_folder=st.booleans(),
)
def test_any_path_is_refused_before_or_written_with_the_expected_mode(
    folders: list[str],
    name: str,
    spelled: str,
    existing: int | None,
    mask: int,
    as_folder: bool,
) -> None:
    from pytest_rngguard.files import FileProblem, target, write_json_atomically

    with tempfile.TemporaryDirectory() as root, umask(mask):
        base = Path(root).resolve()
        where = base.joinpath(*folders, name)
        if existing is not None:
            where.parent.mkdir(parents=True, exist_ok=True)
            if as_folder:
                where.mkdir()
            else:
                where.write_text("old")
                where.chmod(existing)
        given_as = {
            "relative": os.path.relpath(where),
            "absolute": str(where),
            "tilde": "~/" + os.path.relpath(where, base),
            "dotted": str(base / "." / Path(*folders, "..", *folders[-1:], name))
            if folders
            else str(base / "." / name),
        }[spelled]
        env = {"HOME": str(base)}
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            if existing is not None and as_folder:
                with pytest.raises(FileProblem, match="is a folder, not a file"):
                    target(given_as, write=True)
                return
            if existing == 0o444 and not WRITES_ANYWHERE:
                with pytest.raises(FileProblem, match="is not writable"):
                    target(given_as, write=True)
                return
            path = target(given_as, write=True)
        assert path == str(where)
        write_json_atomically(path, {"n": 1})
        assert json.loads(where.read_text()) == {"n": 1}
        assert mode(where) == (existing if existing is not None else 0o666 & ~mask)
        assert sorted(p.name for p in where.parent.iterdir() if p.name.startswith(".")) == []
