"""pytest-rngguard over test suites nobody here wrote: the ones that ship inside real packages.

    python bench/realworld.py [--long] [--suites NAME,...] [--markdown] [--json PATH]

For each suite (NumPy's ``numpy.random`` tests, a SciPy ``scipy.stats`` subset, a
scikit-learn ``sklearn.utils`` and ``sklearn.model_selection`` subset), as installed in this
interpreter's site-packages:

1. Collects it once with the plugin off (a warm-up: pytest's rewritten test modules are
   cached after it, so neither measured run pays for that alone).
2. Runs it with the plugin off (``-p no:rngguard``) and on (``--rngguard-report``), serially,
   each in a scratch folder of its own with an empty ``pytest.ini`` and the same environment
   (``PYTHONHASHSEED=0``, ``SKLEARN_SEED=0``, one BLAS thread), with ``-p no:randomly -p
   no:cacheprovider -p no:xdist``.  This module, loaded into both runs with ``-p realworld``,
   records every test's outcome in every phase.
3. Checks, and lists as problems: an exit status that differs, an ``INTERNALERROR``, a
   frame of the plugin in any traceback; a test whose outcome differs, unless the suite
   lists that difference with its reason; an origin that names pytest or pluggy, or a line
   that makes no seeding call; a test known to seed by hand whose leak does not name its own
   file and the line of that call (found by reading the test's source, not the report).
4. Prints what it found; ``--markdown`` prints the table of ``docs/realworld.md``.

The default (CI) mode runs bounded subsets, a few minutes in all on 2 cores; ``--long`` (or
``RNGGUARD_REALWORLD=long``) runs whole packages' test folders.  Exits 1 if any suite has a
problem.  Hypothesis's own tests are not here: its sdist on PyPI ships no tests.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import fnmatch
import functools
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "_out" / "realworld"
#: ``long`` selects the long mode (as ``--long`` does); anything else, the CI mode.
MODE_ENV = "RNGGUARD_REALWORLD"
#: Where the outcome recorder (this module, as a pytest plugin) writes in a child run.
OUTCOMES_ENV = "RNGGUARD_REALWORLD_OUTCOMES"
PLUGIN_NAME = "realworld"

#: Options every run gets: no reordering, no state carried from run to run, serial.
COMMON_ARGS = ("-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rN")
#: The same for both runs: scikit-learn's package ``setup_module`` seeds from SKLEARN_SEED,
#: else from a draw of a fresh NumPy state, which would differ between the runs.
CHILD_ENV = {
    "PYTHONHASHSEED": "0",
    "SKLEARN_SEED": "0",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

#: A seeding call as a source line spells it: what an origin's line must contain.
SEEDING_CALL = re.compile(r"\b(seed|set_state|setstate|set_bit_generator|manual_seed)\s*\(")
#: Names of the functions that seed or replace a global generator (for the AST oracle).
SEEDING_NAMES = frozenset({"seed", "set_state", "setstate", "set_bit_generator"})
#: A traceback frame of the plugin (``File ".../pytest_rngguard/x.py", line 3`` or pytest's
#: ``pytest_rngguard/x.py:3: Error``).
PLUGIN_FRAME = re.compile(r"pytest_rngguard[\\/][\w\\/]+\.py(\", line |:)\d+")
#: The runner's frames, never an origin.
RUNNER_FILES = ("_pytest/", "pluggy/", "pytest/", "xdist/")


@dataclasses.dataclass(frozen=True)
class Suite:
    """A test suite installed with a package, and what is known about it."""

    name: str
    #: The distributions whose versions the table names.
    distributions: tuple[str, ...]
    #: ``--pyargs`` targets (and any other pytest arguments), CI and long mode.
    args: tuple[str, ...]
    long_args: tuple[str, ...]
    #: Tests that seed a global generator by hand in their body, each leak of which must
    #: name the test's own file and the line of that call (in both modes' selections).
    hand_seeded: tuple[str, ...] = ()
    #: Every origin of this suite must name the file of the test it is reported for (NumPy's
    #: tests live inside the numpy package: the keep-rule of ``origins.caller_frame``).
    origins_in_own_file: bool = False
    #: Node id patterns (fnmatch) of tests whose outcome may differ, with the reason.
    explained: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def arguments(self, long: bool) -> tuple[str, ...]:
        return self.long_args if long else self.args


NUMPY_RANDOM = Suite(
    name="numpy.random",
    distributions=("numpy",),
    # The legacy-API test files (every test that seeds the global generator by hand is
    # there), and two classes of numpy.linalg's tests, whose module seeds at import.
    args=(
        "--pyargs",
        "numpy.random.tests.test_random",
        "numpy.random.tests.test_randomstate",
        "numpy.random.tests.test_regression",
        "numpy.random.tests.test_randomstate_regression",
        "numpy.linalg.tests.test_linalg",
        "-k",
        "not test_linalg.py or TestCholesky or TestCond",
    ),
    long_args=("--pyargs", "numpy.random", "numpy.linalg", "numpy.lib"),
    hand_seeded=(
        "numpy/random/tests/test_random.py::TestRandomDist::test_vonmises_small",
        "numpy/random/tests/test_randomstate.py::test_integer_dtype[binomial]",
        "numpy/random/tests/test_randomstate.py::test_swap_worked",
        "numpy/random/tests/test_regression.py::TestRegression::test_call_within_randomstate",
        "numpy/random/tests/test_randomstate_regression.py::TestRegression::"
        "test_shuffle_of_array_of_objects",
    ),
    origins_in_own_file=True,
)

SCIPY_STATS = Suite(
    name="scipy.stats",
    distributions=("scipy", "numpy"),
    # test_sampling seeds with None by hand; the discrete distributions' common checks seed
    # NumPy in a helper module of the suite (common_tests.py); kendalltau's overflow test
    # seeds ``random``.
    args=(
        "--pyargs",
        "scipy.stats.tests.test_sampling",
        "scipy.stats.tests.test_discrete_basic",
        "scipy.stats.tests.test_stats",
        "-k",
        "not test_stats.py or kendalltau",
    ),
    long_args=(
        "--pyargs",
        "scipy.stats.tests.test_sampling",
        "scipy.stats.tests.test_discrete_basic",
        "scipy.stats.tests.test_continuous_basic",
        "scipy.stats.tests.test_stats",
        "scipy.stats.tests.test_multivariate",
        "-m",
        "not slow and not xslow",
    ),
    hand_seeded=(
        "scipy/stats/tests/test_sampling.py::test_random_state[TransformedDensityRejection-"
        "kwargs0]",
        "scipy/stats/tests/test_stats.py::test_kendalltau_gh18139_overflow",
    ),
)

SKLEARN = Suite(
    name="scikit-learn",
    distributions=("scikit-learn", "numpy", "scipy"),
    # The package's setup_module (sklearn/__init__.py) seeds random and NumPy for the whole
    # package; these tests draw from the global generators.
    args=(
        "--pyargs",
        "sklearn.utils.tests.test_random",
        "sklearn.utils.tests.test_weight_vector",
        "sklearn.utils.tests.test_validation",
        "sklearn.model_selection.tests.test_split",
    ),
    long_args=("--pyargs", "sklearn.utils", "sklearn.model_selection"),
)

SUITES = {suite.name: suite for suite in (NUMPY_RANDOM, SCIPY_STATS, SKLEARN)}


# -- the outcome recorder: this module as a pytest plugin in the child runs -----------------


class OutcomeRecorder:
    """Every test's outcome in every phase, and every collection error, written as JSON at
    the end of the session."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tests: dict[str, dict[str, str]] = {}
        self.messages: dict[str, str] = {}
        self.collect_errors: dict[str, str] = {}

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors[report.nodeid] = _message(report)

    def pytest_runtest_logreport(self, report: Any) -> None:
        outcome = str(report.outcome)
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        self.tests.setdefault(report.nodeid, {})[report.when] = outcome
        if report.failed:
            self.messages[f"{report.nodeid} ({report.when})"] = _message(report)

    def pytest_sessionfinish(self) -> None:
        data = {
            "tests": self.tests,
            "messages": self.messages,
            "collect_errors": self.collect_errors,
        }
        Path(self.path).write_text(json.dumps(data), encoding="utf-8")


def _message(report: Any) -> str:
    """The error a failed report ends with (``RuntimeError: setup``), else its last line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)[:300]
    lines = [line for line in report.longreprtext.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def pytest_configure(config: Any) -> None:
    path = os.environ.get(OUTCOMES_ENV)
    if path:
        config.pluginmanager.register(OutcomeRecorder(path), "realworld-outcomes")


# -- running a suite -------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One pytest process over a suite."""

    returncode: int
    wall: float
    cpu: float  # user + sys of the child
    output: str
    outcomes: dict[str, dict[str, str]]
    messages: dict[str, str]
    collect_errors: dict[str, str]
    report: dict[str, Any] | None = None


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def child_env(outcomes: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(CHILD_ENV)
    # The warm-up's rewritten test modules must be cached for the measured runs to use.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env[OUTCOMES_ENV] = str(outcomes)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *([path] if path else [])])
    return env


def command_line(folder: Path, *args: str) -> list[str]:
    """pytest in ``folder`` (made, with an empty ``pytest.ini``), with ``args``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(folder / "pytest.ini"),
        # Node ids from site-packages: ``numpy/random/tests/test_random.py::...``, the
        # same form as the origins' paths.
        "--rootdir",
        str(site_packages()),
        *COMMON_ARGS,
        *args,
    ]


def run_pytest(
    args: Sequence[str], folder: Path, *, plugin: bool, extra: Sequence[str] = ()
) -> Run:
    """One serial pytest run of ``args`` in a fresh ``folder``, plugin on or off."""
    outcomes = folder / "outcomes.json"
    report = folder / "rngguard.json"
    switch = ("--rngguard-report", str(report)) if plugin else ("-p", "no:rngguard")
    command = command_line(
        folder, "--basetemp", str(folder / "tmp"), "-p", PLUGIN_NAME, *switch, *extra, *args
    )
    for stale in (outcomes, report):
        stale.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=folder,
        env=child_env(outcomes),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    (folder / "output.txt").write_text(done.stdout, encoding="utf-8")
    recorded: dict[str, Any] = {}
    if outcomes.exists():
        recorded = json.loads(outcomes.read_text(encoding="utf-8"))
    return Run(
        done.returncode,
        wall,
        cpu,
        done.stdout,
        recorded.get("tests", {}),
        recorded.get("messages", {}),
        recorded.get("collect_errors", {}),
        json.loads(report.read_text(encoding="utf-8")) if report.exists() else None,
    )


def warm_up(args: Sequence[str], folder: Path) -> None:
    """Collect once, plugin off: the assertion rewriter's cache is then warm for both runs."""
    subprocess.run(
        command_line(folder, "--collect-only", "-p", "no:rngguard", *args),
        cwd=folder,
        env=child_env(folder / "outcomes.json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


# -- checking what a run did -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Difference:
    """A test whose outcome differs between the plugin off and on."""

    nodeid: str
    off: str
    on: str
    reason: str | None  # None: unexplained

    def describe(self) -> str:
        why = self.reason or "UNEXPLAINED"
        return f"{self.nodeid}: {self.off} without the plugin, {self.on} with it ({why})"


def summarize(phases: Mapping[str, str] | None) -> str:
    """One word for a test's phases: ``passed``, ``failed``, ``error in teardown``..."""
    if phases is None:
        return "not run"
    setup, call, teardown = (phases.get(w) for w in ("setup", "call", "teardown"))
    if setup in ("failed", "error"):
        return "error in setup"
    word = setup if setup in ("skipped", "xfailed") else call or "not run"
    if teardown == "failed":
        word += ", error in teardown"
    return word


def compare_outcomes(
    off: Mapping[str, Mapping[str, str]],
    on: Mapping[str, Mapping[str, str]],
    explained: Mapping[str, str],
) -> list[Difference]:
    """Every test whose outcome differs, with the reason ``explained`` gives (fnmatch)."""
    found = []
    for nodeid in sorted(set(off) | set(on)):
        before, after = summarize(off.get(nodeid)), summarize(on.get(nodeid))
        if before == after:
            continue
        reasons = (
            why for pattern, why in explained.items() if fnmatch.fnmatchcase(nodeid, pattern)
        )
        found.append(Difference(nodeid, before, after, next(reasons, None)))
    return found


def origin_lines(origin: Mapping[str, Any]) -> list[str]:
    return [f"{origin['file']}:{origin['line']}", *origin.get("stack", ())]


def source_path(file: str) -> Path:
    """An origin's file on disk: a path from site-packages as reports shorten it."""
    path = Path(file)
    return path if path.is_absolute() else site_packages() / path


@functools.cache
def source_lines(file: str) -> tuple[str, ...]:
    try:
        return tuple(source_path(file).read_text(encoding="utf-8").splitlines())
    except OSError:
        return ()


def line_at(file: str, line: int) -> str:
    lines = source_lines(file)
    return lines[line - 1] if 0 < line <= len(lines) else ""


def test_file(nodeid: str) -> str:
    return nodeid.partition("::")[0]


@functools.cache
def _parsed(file: str) -> ast.Module | None:
    try:
        return ast.parse("\n".join(source_lines(file)))
    except SyntaxError:
        return None


def seeding_lines(nodeid: str) -> frozenset[int]:
    """The lines of the seeding calls in the body of the test ``nodeid`` names, read from its
    source: ``x.seed(...)``, ``x.set_state(...)``, ``x.set_bit_generator(...)``."""
    file = test_file(nodeid)
    tree = _parsed(file)
    if tree is None:
        return frozenset()
    names = [part.partition("[")[0] for part in nodeid.split("::")[1:]]
    scope: Iterable[ast.stmt] = tree.body
    function: ast.AST | None = None
    for name in names:
        function = next(
            (
                node
                for node in scope
                if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and node.name == name
            ),
            None,
        )
        if function is None:
            return frozenset()
        scope = function.body
    lines: set[int] = set()
    for node in ast.walk(function) if function is not None else ():
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SEEDING_NAMES
        ):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return frozenset(lines)


def check_origins(suite: Suite, leaks: Sequence[Mapping[str, Any]]) -> list[str]:
    """What is wrong with the leaks' origins (see the module's docstring)."""
    problems = []
    for leak in leaks:
        origin = leak.get("origin")
        if origin is None:
            continue
        where = f"{leak['nodeid']} ({leak['phase']}, {leak['source']})"
        named = [frame for frame in origin_lines(origin) if frame.startswith(RUNNER_FILES)]
        if named:
            problems.append(f"{where}: the origin names the test runner: {named}")
        if leak["kind"] in ("reseeded", "replaced"):
            text = line_at(origin["file"], origin["line"])
            if not SEEDING_CALL.search(text):
                problems.append(
                    f"{where}: {origin['file']}:{origin['line']} makes no seeding call: {text!r}"
                )
        if suite.origins_in_own_file and origin["file"] != test_file(leak["nodeid"]):
            problems.append(f"{where}: the origin {origin['file']} is not the test's own file")
    return problems


def check_hand_seeded(
    suite: Suite, leaks: Sequence[Mapping[str, Any]], ran: Iterable[str]
) -> list[str]:
    """Each test that seeds by hand has a leak in its call naming its file and its line."""
    problems = []
    ran = set(ran)
    for nodeid in suite.hand_seeded:
        if nodeid not in ran:
            problems.append(f"{nodeid}: the test that seeds by hand did not run")
            continue
        lines = seeding_lines(nodeid)
        if not lines:
            problems.append(f"{nodeid}: no seeding call found in the test's source")
            continue
        calls = [leak for leak in leaks if leak["nodeid"] == nodeid and leak["phase"] == "call"]
        if not calls:
            problems.append(f"{nodeid}: seeds by hand, but no leak in its call was reported")
        for leak in calls:
            origin = leak.get("origin") or {}
            if origin.get("file") != test_file(nodeid) or origin.get("line") not in lines:
                problems.append(
                    f"{nodeid}: the origin {origin.get('file')}:{origin.get('line')} is not "
                    f"its own seeding call ({test_file(nodeid)}, lines {sorted(lines)})"
                )
    return problems


def check_runs(off: Run, on: Run) -> list[str]:
    """Crashes and the plugin's tracebacks; a collection that differs."""
    problems = []
    if off.returncode != on.returncode:
        problems.append(f"exit status {off.returncode} without the plugin, {on.returncode} with it")
    if on.returncode not in (0, 1):
        problems.append(f"exit status {on.returncode} with the plugin (not a test outcome)")
    if "INTERNALERROR" in on.output:
        problems.append("INTERNALERROR with the plugin")
    frames = sorted(set(m.group(0) for m in PLUGIN_FRAME.finditer(on.output)))
    if frames:
        problems.append(f"a traceback through the plugin: {frames[:5]}")
    if on.report is None:
        problems.append("no JSON report was written")
    if off.collect_errors != on.collect_errors:
        problems.append(
            f"collection errors differ: {off.collect_errors} without, {on.collect_errors} with"
        )
    if not on.outcomes:
        problems.append("no test ran")
    return problems


@dataclasses.dataclass
class SuiteResult:
    suite: str
    versions: dict[str, str]
    args: list[str]
    tests: int
    outcomes: dict[str, int]
    leaks: list[dict[str, Any]]
    differences: list[Difference]
    #: What is wrong, by check: ``session``, ``outcomes``, ``origins``, ``hand-seeded``.
    problems: dict[str, list[str]]
    #: The first plugin-on run's folder (its output.txt, rngguard.json, outcomes.json).
    folder: str
    #: Seconds of each round's runs, plugin off and on.
    wall_off: list[float]
    wall_on: list[float]
    cpu_off: list[float]
    cpu_on: list[float]

    @property
    def wall_ratio(self) -> float:
        return median_ratio(self.wall_on, self.wall_off)

    @property
    def cpu_ratio(self) -> float:
        return median_ratio(self.cpu_on, self.cpu_off)

    def spread(self, on: Sequence[float], off: Sequence[float]) -> str:
        """A ratio as the table shows it: the median, and the range over several rounds."""
        ratios = sorted(a / b for a, b in zip(on, off, strict=True) if b)
        if len(ratios) < 2:
            return f"{median_ratio(on, off):.2f}"
        return f"{median_ratio(on, off):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"

    def top_origins(self, n: int = 3) -> list[tuple[str, int]]:
        counts = Counter(
            f"{leak['origin']['file']}:{leak['origin']['line']}" if leak["origin"] else "unknown"
            for leak in self.leaks
        )
        return counts.most_common(n)

    @property
    def failed(self) -> bool:
        return any(self.problems.values())

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["wall_ratio"], data["cpu_ratio"] = self.wall_ratio, self.cpu_ratio
        return data


def versions(suite: Suite) -> dict[str, str]:
    found = {}
    for name in suite.distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_suite(
    suite: Suite,
    *,
    long: bool = False,
    out: Path = OUT,
    extra: Sequence[str] = (),
    rounds: int = 1,
    log: Callable[[str], None] = lambda line: None,
) -> SuiteResult:
    """``rounds`` pairs of runs of ``suite`` (plugin off and on, the order swapped from
    round to round) and every check: outcomes in every pair, origins in the first."""
    args = suite.arguments(long)
    folder = out / suite.name
    log(f"{suite.name}: warm-up")
    warm_up(args, folder / "warm-up")
    pairs: list[tuple[Run, Run]] = []
    for round_ in range(rounds):
        runs = {}
        for plugin in (False, True) if round_ % 2 == 0 else (True, False):
            name = ("on" if plugin else "off") + (f"-{round_}" if round_ else "")
            log(f"{suite.name}: round {round_ + 1} of {rounds}, plugin {'on' if plugin else 'off'}")
            runs[plugin] = run_pytest(args, folder / name, plugin=plugin, extra=extra)
        pairs.append((runs[False], runs[True]))
    on = pairs[0][1]
    leaks = list((on.report or {}).get("leaks", []))
    found: dict[str, Difference] = {}
    for pair in pairs:
        for difference in compare_outcomes(pair[0].outcomes, pair[1].outcomes, suite.explained):
            found.setdefault(difference.nodeid, difference)
    differences = list(found.values())
    problems = {
        "session": [problem for pair in pairs for problem in check_runs(*pair)],
        "outcomes": [d.describe() for d in differences if d.reason is None],
        "origins": check_origins(suite, leaks),
        "hand-seeded": check_hand_seeded(suite, leaks, on.outcomes),
    }
    return SuiteResult(
        suite=suite.name,
        versions=versions(suite),
        args=list(args),
        tests=len(on.outcomes),
        outcomes=dict(Counter(summarize(p) for p in on.outcomes.values())),
        leaks=leaks,
        differences=differences,
        problems=problems,
        folder=str(folder / "on"),
        wall_off=[pair[0].wall for pair in pairs],
        wall_on=[pair[1].wall for pair in pairs],
        cpu_off=[pair[0].cpu for pair in pairs],
        cpu_on=[pair[1].cpu for pair in pairs],
    )


def median_ratio(on: Sequence[float], off: Sequence[float]) -> float:
    ratios = [a / b for a, b in zip(on, off, strict=True) if b]
    return statistics.median(ratios) if ratios else float("nan")


# -- the table -------------------------------------------------------------------------------


def machine() -> str:
    cores = os.cpu_count() or 0
    python = platform.python_version()
    return f"{platform.system()} {processor()}, {cores} cores, Python {python}"


def processor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.machine()


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on this platform
        return None


def markdown(
    results: Sequence[SuiteResult], *, long: bool, minutes: float, load: float | None = None
) -> str:
    """The table of ``docs/realworld.md`` and what goes with it."""
    all_versions: dict[str, str] = {}
    for result in results:
        all_versions.update(result.versions)
    for name in ("pytest", "pytest-rngguard"):
        all_versions[name] = metadata.version(name)
    lines = [
        f"Run on {datetime.date.today().isoformat()} ({'long' if long else 'CI'} mode, "
        f"{_rounds(results)}, {minutes:.1f} minutes), {machine()}"
        + (f" (load average {load:.1f} at the start)" if load is not None else "")
        + "; "
        + ", ".join(f"{k} {v}" for k, v in sorted(all_versions.items()))
        + ".",
        "",
        "| suite | tests | leaks | top origins | outcome differences | wall ratio | CPU ratio |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for r in results:
        origins = "<br>".join(f"`{where}` ({n})" for where, n in r.top_origins()) or "none"
        differences = str(len(r.differences)) if r.differences else "none"
        lines.append(
            f"| {r.suite} | {r.tests} | {len(r.leaks)} | {origins} | {differences} "
            f"| {r.spread(r.wall_on, r.wall_off)} | {r.spread(r.cpu_on, r.cpu_off)} |"
        )
    lines.append("")
    for r in results:
        lines.append(f"- **{r.suite}**: `{shlex.join(r.args)}`; {_outcome_words(r.outcomes)}.")
        for difference in r.differences:
            lines.append(f"  - {difference.describe()}")
    return "\n".join(lines)


def _outcome_words(outcomes: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {word}" for word, n in sorted(outcomes.items(), key=lambda x: -x[1]))


def render(results: Sequence[SuiteResult]) -> str:
    lines = []
    for r in results:
        lines.append(
            f"{r.suite}: {r.tests} tests ({_outcome_words(r.outcomes)}), {len(r.leaks)} leaks, "
            f"wall {_seconds(r.wall_off)} -> {_seconds(r.wall_on)} ({r.wall_ratio:.2f}x), "
            f"CPU {_seconds(r.cpu_off)} -> {_seconds(r.cpu_on)} ({r.cpu_ratio:.2f}x)"
        )
        for where, n in r.top_origins():
            lines.append(f"  {n:4d} x {where}")
        lines.extend(f"  difference: {d.describe()}" for d in r.differences)
        for check, problems in r.problems.items():
            lines.extend(f"  PROBLEM ({check}): {p}" for p in problems)
    return "\n".join(lines)


def _rounds(results: Sequence[SuiteResult]) -> str:
    rounds = max((len(r.wall_off) for r in results), default=0)
    return "1 pair of runs per suite" if rounds == 1 else f"{rounds} pairs of runs per suite"


def _seconds(values: Sequence[float]) -> str:
    return " ".join(f"{v:.1f}" for v in values) + " s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run pytest-rngguard over test suites shipped inside real packages"
    )
    parser.add_argument(
        "--long",
        action="store_true",
        default=os.environ.get(MODE_ENV) == "long",
        help=f"Whole test folders, not the CI subsets (also {MODE_ENV}=long)",
    )
    parser.add_argument(
        "--suites", default=",".join(SUITES), help=f"Comma-separated (default {','.join(SUITES)})"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="Pairs of runs per suite, the order swapped each round (default 1)",
    )
    parser.add_argument("--markdown", action="store_true", help="Print the docs' table")
    parser.add_argument("--json", metavar="PATH", help="Write every result as JSON")
    args = parser.parse_args(argv)
    names = [name for name in args.suites.split(",") if name]
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    unknown = set(names) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s) {sorted(unknown)}; known: {', '.join(SUITES)}")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started, load = time.perf_counter(), load_average()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as scratch:
        results = [
            run_suite(SUITES[name], long=args.long, out=Path(scratch), rounds=args.rounds, log=log)
            for name in names
        ]
    minutes = (time.perf_counter() - started) / 60
    print(render(results))
    if args.markdown:
        print()
        print(markdown(results, long=args.long, minutes=minutes, load=load))
    if args.json:
        Path(args.json).write_text(
            json.dumps([r.to_json() for r in results], indent=2), encoding="utf-8"
        )
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
