"""The documentation tells the truth: every example in README.md and docs/ runs here, and the
configuration reference is checked against the real option definitions.

How examples are written, the convention this file enforces:

* A fenced block whose first line is ``# content of NAME`` (any language) is a file of the
  current example project, written to NAME.  Files add up into one project until a file
  block comes after a shell session: that file starts the next project.  Each document starts
  with none.
* A ``console`` block is a shell session: a line starting with ``$ `` is a command, the lines
  after it are its output.

  - ``pytest ARGS``, optionally after ``VAR=value`` settings, runs in a fresh interpreter in
    the current project (``pytester.runpytest_subprocess``), which must not be empty.  It
    loads no plugin but this one (and pytest-randomly where the command names it, Hypothesis's
    where the project uses Hypothesis): other installed plugins change the output (one that
    imports numpy adds it to the header's sources).  The environment has no
    ``PYTHONHASHSEED``, ``GITHUB_ACTIONS``, ``GITHUB_WORKSPACE`` and ``PYTEST_ADDOPTS`` unless
    the command sets them.
  - ``cat PATH`` shows a file of the project as the previous command left it.
  - Every other command (``pip``, ``git``, ``bash``, ...) is an instruction: not run.

  The output shown must appear in the real output line by line and in order; other lines
  may come in between.  Runs of spaces count as one, separator lines (``=== title ===``)
  compare by their title, the session header's machine-specific lines (platform, rootdir,
  configfile, plugins, cachedir) are not compared, a duration (``in 1.23s``) matches any, and
  ``...`` matches any text within a line (alone on a line it stands for skipped lines).
* ``<!-- docs-test: not run (why) -->`` right before a ``console`` block leaves it unrun:
  instructions for the reader's own project, or commands that need a network.
  ``<!-- docs-test: run in the repository -->`` runs its ``pytest`` commands from the
  repository's root instead of a project (for ``examples/``).
* A ``python`` block that is not a file is a library example: it runs as a script in a fresh
  interpreter in an empty folder and must exit 0, so its ``assert`` statements are the
  claims the text makes.

Examples are skipped where a library they import (numpy, torch, transformers) is missing, and
the pytest runs of projects that use torch (or a library that seeds it) where torch is a CUDA
build: the output shown is a CPU-only torch's, and a CUDA build adds a line for the seed each
``torch.manual_seed`` queues for CUDA (the GPU suite, tests/gpu, checks those).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from conftest import torch_built_with_cuda

from pytest_rngguard import __all__ as public_names
from pytest_rngguard.settings import DEFAULT_IGNORE, OPTIONS, Option
from pytest_rngguard.sources import BUILTIN_NAMES, KINDS
from pytest_rngguard.sources.env import DEFAULT_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
DOCUMENTS = [ROOT / "README.md", *PAGES]
TEXTS = [*DOCUMENTS, ROOT / "CHANGELOG.md"]
CONFIGURATION = DOCS / "configuration.md"

NOT_RUN = "<!-- docs-test: not run"
IN_REPOSITORY = "<!-- docs-test: run in the repository"
CONTENT_OF = re.compile(r"^(?:#|//|;)\s*content of (\S+)\s*$")
HEADER_LINES = ("platform ", "rootdir:", "configfile:", "plugins:", "cachedir:", "testpaths:")
UNSET_FOR_RUNS = ("PYTHONHASHSEED", "GITHUB_ACTIONS", "GITHUB_WORKSPACE", "PYTEST_ADDOPTS")
#: The output of each pytest run so far in this process, by project, command and settings.
OUTPUTS: dict[tuple[object, ...], str] = {}


# -- reading examples out of Markdown ---------------------------------------------------------


@dataclasses.dataclass
class Command:
    argv: list[str]
    env: dict[str, str]
    expected: list[str]


@dataclasses.dataclass
class Example:
    """A runnable example: its project's files and a shell session, or a Python script."""

    document: Path
    line: int
    files: dict[str, str]
    commands: list[Command] = dataclasses.field(default_factory=list)
    script: str | None = None
    in_repository: bool = False

    @property
    def id(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def fenced_blocks(text: str) -> Iterator[tuple[int, str, list[str], str]]:
    """(line, language, lines, the last non-blank line before it) of each fenced block."""
    lines = text.splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(`{3,}|~{3,})\s*([\w{}-]*)", line)
        if fence:
            marker, language = fence.group(1), fence.group(2)
            body = []
            j = i + 1
            while j < len(lines) and not lines[j].startswith(marker):
                body.append(lines[j])
                j += 1
            yield i + 1, language, body, previous
            previous = ""
            i = j + 1
            continue
        if line.strip():
            previous = line.strip()
        i += 1


def parse_session(body: list[str]) -> list[Command]:
    commands: list[Command] = []
    for line in body:
        if line.startswith("$ "):
            words = shlex.split(line[2:])
            env = {}
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            commands.append(Command(words, env, []))
        elif commands:
            commands[-1].expected.append(line)
    return commands


def examples_in(document: Path) -> list[Example]:
    found: list[Example] = []
    files: dict[str, str] = {}
    ran = False
    for line, language, body, previous in fenced_blocks(document.read_text(encoding="utf-8")):
        named = CONTENT_OF.match(body[0]) if body else None
        if named:
            if ran:
                files, ran = {}, False
            files[named.group(1)] = "\n".join(body[1:]) + "\n"
        elif language == "console":
            if previous.startswith(NOT_RUN):
                continue
            commands = [c for c in parse_session(body) if c.argv[:1] in (["pytest"], ["cat"])]
            if commands:
                ran = True
                in_repository = previous.startswith(IN_REPOSITORY)
                found.append(Example(document, line, dict(files), commands, None, in_repository))
        elif language == "python":
            found.append(Example(document, line, {}, script="\n".join(body) + "\n"))
    return found


EXAMPLES = [example for document in DOCUMENTS for example in examples_in(document)]


# -- comparing output -------------------------------------------------------------------------


def normalise(line: str) -> str:
    line = " ".join(line.split())
    separator = re.fullmatch(r"([=_-])\1{2,} ?(.*?) ?\1{3,}", line)
    if separator:
        return f"{separator.group(1) * 3} {separator.group(2)} {separator.group(1) * 3}"
    return line


def line_pattern(expected: str) -> re.Pattern[str]:
    text = normalise(expected)
    parts = [re.escape(part) for part in text.split("...")]
    pattern = ".*".join(parts)
    pattern = re.sub(r"in\\ \d+\\\.\d+s", r"in \\d+\\.\\d+s", pattern)
    return re.compile(pattern)


def assert_shows(expected: list[str], actual: str, where: str) -> None:
    """Every expected line appears in ``actual``, in order."""
    lines = [normalise(line) for line in actual.splitlines()]
    position = 0
    for wanted in expected:
        if not wanted.strip() or wanted.strip() == "..." or wanted.startswith(HEADER_LINES):
            continue
        pattern = line_pattern(wanted)
        for index in range(position, len(lines)):
            if pattern.fullmatch(lines[index]):
                position = index + 1
                break
        else:
            pytest.fail(
                f"{where}: the documented line\n  {wanted}\nis not in the real output (after "
                f"line {position}):\n{actual}",
                pytrace=False,
            )


# -- running examples ---------------------------------------------------------------------


def imported_modules(source: str) -> set[str]:
    return set(re.findall(r"^\s*(?:import|from)\s+(\w+)", source, flags=re.MULTILINE))


def skip_without_libraries(source: str, local: Iterable[str] = ()) -> None:
    """Skip where a library the example imports (not one of its own files) is missing."""
    own = {Path(name).parts[0].removesuffix(".py") for name in local}
    for name in sorted(imported_modules(source) - own):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"the example needs {name}")


def plugins(example: Example) -> list[str]:
    """The plugins a run loads, plugin autoloading being off: this one, and Hypothesis's
    where the project uses it (a command that wants pytest-randomly names it with ``-p``)."""
    args = ["-p", "rngguard"]
    if "hypothesis" in "".join(example.files.values()):
        args += ["-p", "hypothesispytest"]
    return args


def clean_environment(env: pytest.MonkeyPatch, command: Command) -> None:
    for name in UNSET_FOR_RUNS:
        env.delenv(name, raising=False)
    env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    for name, value in command.env.items():
        env.setenv(name, value)


def as_autoloaded(output: str) -> str:
    """The output as a reader's run would show it: the re-run command a failing deterministic
    test prints names the plugin only because autoloading was off here."""
    return output.replace(" -m pytest -p rngguard ", " -m pytest ")


# Libraries whose seeding functions seed torch, and CUDA with it, when torch is installed.
SEED_TORCH = {"torch", "transformers", "accelerate", "lightning"}


def skip_with_a_cuda_build(source: str) -> None:
    if imported_modules(source) & SEED_TORCH and torch_built_with_cuda():
        pytest.skip("shows a CPU-only torch's output: a CUDA build adds the seeds queued for CUDA")


def run_in_repository(example: Example, monkeypatch: pytest.MonkeyPatch) -> None:
    skip_without_libraries("import numpy\nimport torch\n")
    skip_with_a_cuda_build("import torch\n")
    for command in example.commands:
        assert command.argv[0] == "pytest", f"{example.id}: only pytest runs in the repository"
        with monkeypatch.context() as env:
            clean_environment(env, command)
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    *command.argv,
                    "-p",
                    "rngguard",
                    "-p",
                    "no:cacheprovider",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        where = f"{example.id}: $ {shlex.join(command.argv)}"
        assert_shows(command.expected, as_autoloaded(done.stdout + done.stderr), where)


def run_session(
    example: Example, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    if example.in_repository:
        run_in_repository(example, monkeypatch)
        return
    assert example.files, f"{example.id}: a pytest session with no project files before it"
    for name, content in example.files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    skip_without_libraries("".join(example.files.values()), example.files)
    skip_with_a_cuda_build("".join(example.files.values()))
    if any("randomly" in c.argv for c in example.commands):
        skip_without_libraries("import pytest_randomly")
    # Several sections often show parts of one run's output: run it once per process, unless
    # a later command reads the files the run writes.
    cacheable = all(command.argv[0] == "pytest" for command in example.commands)
    output: str | None
    for command in example.commands:
        where = f"{example.id}: $ {shlex.join(command.argv)}"
        if command.argv[0] == "cat":
            output = (pytester.path / command.argv[1]).read_text(encoding="utf-8")
        else:
            key = (tuple(sorted(example.files.items())), tuple(command.argv), str(command.env))
            output = OUTPUTS.get(key) if cacheable else None
            if output is None:
                with monkeypatch.context() as env:
                    clean_environment(env, command)
                    result = pytester.runpytest_subprocess(*command.argv[1:], *plugins(example))
                output = as_autoloaded("\n".join(result.outlines + result.errlines))
                OUTPUTS[key] = output
        assert_shows(command.expected, output, where)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_documented_example_runs_and_shows_what_the_text_says(
    example: Example, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    if example.script is None:
        run_session(example, pytester, monkeypatch)
        return
    skip_without_libraries(example.script)
    script = pytester.path / "example.py"
    script.write_text(example.script, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{example.id} failed:\n{done.stdout}\n{done.stderr}"


def test_every_document_with_examples_is_found() -> None:
    documents = {e.document.name for e in EXAMPLES}
    assert {"README.md", "quickstart.md", "reading-a-report.md", "reproducibility.md"} <= documents


# -- the configuration reference ------------------------------------------------------------


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s:|-]+\|$", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def spelled_default(option: Option) -> str | None:
    """How the options table writes the option's default (None: a list, checked apart)."""
    if option.ini_type == "linelist":
        return None
    if option.default is None:
        return "none"
    if isinstance(option.default, bool):
        return "false" if not option.default else "true"
    return f"`{option.default}`"


def option_row(option: Option, rows: list[list[str]]) -> list[str]:
    for row in rows:
        cli = re.sub(r"[`=].*", "", row[0].strip("`")) if row[0].startswith("`") else None
        ini = row[1].strip("`") if row[1].startswith("`") else None
        if (cli, ini) == (option.cli, option.ini):
            return row
    pytest.fail(f"no options-table row for {option.cli or '—'} / {option.ini or '—'}")


@pytest.mark.parametrize("document", [CONFIGURATION, ROOT / "README.md"], ids=lambda p: p.name)
@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.dest)
def test_options_table_shows_every_option_with_its_default(option: Option, document: Path) -> None:
    row = option_row(option, table_rows(document.read_text(encoding="utf-8")))
    expected = spelled_default(option)
    if expected is not None:
        assert row[3] == expected, f"{document.name}: {row}"


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.dest)
def test_configuration_reference_quotes_every_help_text(option: Option) -> None:
    text = " ".join(CONFIGURATION.read_text(encoding="utf-8").split())
    assert option.help in text


def test_configuration_reference_lists_the_default_lists() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    for name in (*DEFAULT_VARIABLES, *DEFAULT_IGNORE, *BUILTIN_NAMES):
        assert f"`{name}`" in text, name


def known_spellings() -> set[str]:
    names = {o.cli for o in OPTIONS if o.cli} | {o.ini for o in OPTIONS if o.ini}
    # The fixture that shares its name with the ini key, and the JUnit XML property.
    return names | {"rngguard_seed", "rngguard_leak"}


@pytest.mark.parametrize("document", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_name_no_option_that_does_not_exist(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    used = set(re.findall(r"--rngguard(?:-[a-z]+)*", text))
    used |= set(re.findall(r"(?<![\w.])rngguard_[a-z_]+", text))
    assert used - known_spellings() == set()


# -- other references that must not drift ---------------------------------------------------


def test_api_page_documents_every_public_name() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    for name in public_names:
        if name != "__version__":
            assert re.search(rf"pytest_rngguard\.{name}\b|\b{name}\b", text), name


def test_sources_page_describes_every_built_in_source() -> None:
    rows = table_rows((DOCS / "sources.md").read_text(encoding="utf-8"))
    assert [row[0].strip("`") for row in rows[1:]] == list(BUILTIN_NAMES)


def test_report_page_describes_every_kind_and_json_field(pytester: pytest.Pytester) -> None:
    text = (DOCS / "reading-a-report.md").read_text(encoding="utf-8")
    kinds = [row[0].strip("`") for row in table_rows(text) if row[0].strip("`") in KINDS]
    assert kinds == list(KINDS)
    pytester.makepyfile("import random\ndef test_leaks():\n    random.seed(1)\n")
    pytester.runpytest("-p", "no:randomly", "--rngguard-report=report.json")
    report = json.loads((pytester.path / "report.json").read_text())
    for key in (*report, *report["leaks"][0], *report["leaks"][0]["origin"]):
        assert f"`{key}`" in text, key


def test_changelog_page_includes_the_changelog() -> None:
    text = (DOCS / "changelog.md").read_text(encoding="utf-8")
    assert "{include} ../CHANGELOG.md" in text
    assert (
        (ROOT / "CHANGELOG.md")
        .read_text(encoding="utf-8")
        .startswith("# Changelog\n\n## Unreleased\n")
    )


def test_index_lists_every_page() -> None:
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    listed = set()
    for toctree in text.split("```{toctree}")[1:]:
        entries = toctree.split("```", 1)[0].splitlines()
        listed |= {e.strip() for e in entries if e.strip() and not e.startswith(":")}
    expected = {page.stem for page in PAGES if page.stem != "index"} | {"performance"}
    assert listed == expected


# -- the build ------------------------------------------------------------------------------


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    for module in ("sphinx", "myst_parser", "furo"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"building the docs needs {module} (pip install -e '.[docs]')")
    if not (DOCS / "performance.md").exists():
        pytest.skip("docs/performance.md, which the benchmarks write, is not there yet")
    env = {**os.environ, "RNGGUARD_DOCS_OFFLINE": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- behaviour the docs promise that the package does not deliver yet ------------------------


def run_fresh(pytester: pytest.Pytester, source: str) -> subprocess.CompletedProcess[str]:
    script = pytester.path / "fresh.py"
    script.write_text(source, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_assert_reproducible_seeds_numpy_in_a_fresh_process(pytester: pytest.Pytester) -> None:
    skip_without_libraries("import numpy")
    done = run_fresh(
        pytester,
        "import numpy as np\n"
        "from pytest_rngguard import assert_reproducible\n"
        "assert_reproducible(lambda: np.random.rand(3))\n",
    )
    assert done.returncode == 0, done.stderr


def test_reports_a_helper_that_seeds_numpy_then_draws(pytester: pytest.Pytester) -> None:
    skip_without_libraries("import numpy")
    pytester.makepyfile(
        """
        import numpy as np

        def test_seeds_then_draws():
            np.random.seed(1234)
            np.random.rand()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:hypothesispytest")
    result.stdout.fnmatch_lines(["*numpy reseeded during call*"])


def test_a_bad_deterministic_argument_is_one_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deterministic(seed=-3)
        def test_bad_seed():
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.stdout.fnmatch_lines(
        [
            "*test_bad_seed: deterministic: seed must be an integer from 0 to 2**64 - 1, or None,"
            " got -3*"
        ]
    )
    result.assert_outcomes(passed=1, errors=1)
    assert "KeyError" not in result.stdout.str()
