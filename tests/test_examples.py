"""The vLLM-style example does what README.md and examples/README.md say it does.

The example is its own pytest project (examples/vllm_like/pytest.ini), so it runs in a
subprocess from the repository root, with the commands the READMEs give: once with NumPy
alone (torch hidden from it, as in the fresh virtual environment the README's first command
makes), once with whatever is installed, watched by ``rng_observer``, which reads the state
each test starts from.  The stand-in's seeding itself is checked in this process, against a
model of what vLLM's worker does (and, in tests/test_vllm.py, against vLLM itself).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import rng_observer
from conftest import torch_built_with_cuda
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_docs import assert_shows

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "vllm_like"
SEEDING = EXAMPLE / "vllm_like" / "seeding.py"
WORKER = EXAMPLE / "vllm_like" / "worker.py"
README = REPO / "README.md"
EXAMPLES_README = REPO / "examples" / "README.md"
LEAKING_TEST = "tests/test_llm.py::test_in_process_engine_leaks"
NEXT_TEST = "tests/test_llm.py::test_worker_process_engine_does_not_leak"
GATED_TEST = "tests/test_llm.py::test_planted_nondeterminism_fails_the_gate"
DIFFERENCE = r"run 2 differs from run 1 at record 'tokens'\[\d+\]\[\d+\]: \d+ != \d+"
#: The failure of the gated test, and its line in the plugin's summary.
NOT_REPRODUCIBLE = re.compile(re.escape(f"{GATED_TEST} is not reproducible: ") + DIFFERENCE)
SUMMARY_LINE = re.compile(
    "^" + re.escape(f"not reproducible: {GATED_TEST}: ") + DIFFERENCE + "$", re.MULTILINE
)
SUMMARY = re.compile(r"^=+ rngguard =+$", re.MULTILINE)
#: The README's first command: install from the clone with NumPy, then run the example.
DEMO = re.compile(r"^\$ pip install -e \. numpy && (pytest examples/vllm_like .*)$", re.MULTILINE)
#: How many lines a reader sees before scrolling, generously.
FIRST_SCREEN = 70
#: vLLM's worker seeds at device initialisation, then after its warm-up.
SEEDING_STEPS = ("init_device", "compile_or_warm_up_model")

pytestmark = [
    pytest.mark.skipif(not SEEDING.exists(), reason="no examples/ in this checkout"),
    pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="the example needs numpy"),
]


# -- what the sources and the READMEs say ------------------------------------------------------


def seeding_lines() -> dict[str, int]:
    """The line of each seeding call in ``set_random_seed``, by source name."""
    calls = {
        "random.seed": "random",
        "np.random.seed": "numpy",
        "torch.manual_seed": "torch",
        "torch.cuda.manual_seed_all": "torch.cuda",
    }
    lines = calls_in(SEEDING, "set_random_seed", calls)
    assert set(lines) == set(calls.values()), lines
    return lines


def calls_in(path: Path, function_name: str, calls: dict[str, str]) -> dict[str, int]:
    """The line of each named call inside one function of ``path``, by the call's label."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    function = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == function_name
    )
    return {
        calls[ast.unparse(node.func)]: node.lineno
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in calls
    }


def worker_seeding_lines() -> list[int]:
    """The lines of the worker's two ``set_random_seed`` calls, in the order they run."""
    lines = [calls_in(WORKER, step, {"set_random_seed": "seed"})["seed"] for step in SEEDING_STEPS]
    return lines


def leak_line(source: str, line: int) -> str:
    return (
        f"{LEAKING_TEST}: {source} reseeded during call by "
        f"vllm_like/seeding.py:{line} in set_random_seed"
    )


#: The settings ``torch.set_float32_matmul_precision("highest")`` changes on a fresh torch
#: (2.9 and later): what torch's own getters read before and after (tests/test_torch_settings).
PRECISION_DETAILS = ("cuda.matmul.fp32_precision", "mkldnn.matmul.fp32_precision")


def precision_line() -> int:
    """The line of the worker's ``torch.set_float32_matmul_precision`` call."""
    calls = {"torch.set_float32_matmul_precision": "precision"}
    return calls_in(WORKER, "__init__", calls)["precision"]


def expected_leak_lines(with_torch: bool) -> tuple[list[list[str]], int]:
    """The summary's leak lines, in order, each entry the lines accepted there; and how many
    leaks they stand for (one call that changes two settings is one line)."""
    lines = seeding_lines()
    expected = [[leak_line("random", lines["random"])], [leak_line("numpy", lines["numpy"])]]
    count = 2
    if with_torch:
        expected.append([leak_line("torch", lines["torch"])])
        count += 1
    if with_torch and torch_built_with_cuda():
        # torch.manual_seed queues a seed for CUDA; with a GPU, manual_seed_all seeds it too.
        queued = "torch.cuda[queued until CUDA initialises]"
        expected.append([leak_line(queued, lines[name]) for name in ("torch", "torch.cuda")])
        count += 1
    if with_torch:
        flags = f"torch.flags[{', '.join(PRECISION_DETAILS)}]"
        expected.append(
            [
                f"{LEAKING_TEST}: {flags} changed during call by "
                f"vllm_like/worker.py:{precision_line()} in __init__"
            ]
        )
        count += len(PRECISION_DETAILS)
    return expected, count


def readme_demo() -> tuple[int, list[str], list[str]]:
    """The README's first command: its line, its pytest part as argv, its output lines."""
    text = README.read_text(encoding="utf-8")
    match = DEMO.search(text)
    assert match, "README.md shows no `$ pip install -e . numpy && pytest examples/vllm_like`"
    line = text.count("\n", 0, match.start()) + 1
    block = text[match.end() :].split("\n```", 1)[0]
    return line, shlex.split(match.group(1)), block.strip("\n").splitlines()


def examples_readme_command() -> list[str]:
    text = EXAMPLES_README.read_text(encoding="utf-8")
    commands = re.findall(r"^\$ (pytest examples/vllm_like .*)$", text, re.MULTILINE)
    assert commands, "examples/README.md shows no `$ pytest examples/vllm_like ...` command"
    assert len(set(commands)) == 1, f"examples/README.md shows different commands: {commands}"
    return shlex.split(commands[0])


def examples_readme_output() -> list[str]:
    """The output examples/README.md shows, with wildcards for what changes from run to run
    (the differing tokens) and between ways of starting pytest (the interpreter's path)."""
    text = EXAMPLES_README.read_text(encoding="utf-8")
    block = text.split("This is the output it gave", 1)[1].split("```console\n", 1)[1]
    lines = block.split("\n```", 1)[0].splitlines()[1:]  # after the command
    lines = [re.sub(r"'tokens'\[\d+\]\[\d+\]: \d+ != \d+", "'tokens'...", line) for line in lines]
    return [re.sub(r"^  \S+/python\S* -m pytest ", "  ... -m pytest ", line) for line in lines]


# -- running the example -----------------------------------------------------------------------


@pytest.fixture
def without_torch(tmp_path: Path) -> Path:
    """A folder that, first on ``PYTHONPATH``, makes ``import torch`` fail as if torch were
    not installed, in the run and in the worker process it spawns."""
    folder = tmp_path / "without-torch"
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text(
        'raise ImportError("torch is hidden from this run")\n', encoding="utf-8"
    )
    return folder


@pytest.fixture
def observed(tmp_path: Path) -> Path:
    """Where ``rng_observer``, loaded into a run, writes the state each test starts from."""
    shutil.copy(Path(rng_observer.__file__), tmp_path / "rng_observer.py")
    return tmp_path / "observations.jsonl"


def run_example(
    args: list[str], *, path: tuple[Path, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` from the repository's root, as a reader's shell would run it."""
    environ = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        environ.pop(name, None)
    environ.pop("GITHUB_ACTIONS", None)  # no workflow commands in the output
    environ.pop("PYTHONHASHSEED", None)  # a reader's shell has none
    if path:
        environ["PYTHONPATH"] = os.pathsep.join(
            [*map(str, path), *filter(None, [environ.get("PYTHONPATH")])]
        )
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def observing(observations: Path) -> tuple[list[str], dict[str, Any]]:
    """The arguments and the ``run_example`` options that load ``rng_observer`` into a run."""
    options = {"path": (observations.parent,), "env": {"RNG_OBSERVATIONS": str(observations)}}
    # numpy 2 loads numpy.random on first use, here inside the leaking test: loaded first, as
    # a project that imports it has it, the observer sees its state from the first test on.
    return ["-p", "rng_observer", "-p", "numpy.random"], options


def first_seen(observations: Path) -> dict[str, dict[str, Any]]:
    """What each test's body started from (the first run's, for repeated tests)."""
    seen: dict[str, dict[str, Any]] = {}
    for line in rng_observer.read(observations):
        seen.setdefault(line["nodeid"], line["seen"])
    return seen


def outcomes(output: str) -> dict[str, int]:
    return pytest.RunResult.parse_summary_nouns(output.splitlines())


def summary(output: str) -> str:
    """The plugin's terminal summary section, to the end of the output."""
    parts = SUMMARY.split(output, maxsplit=1)
    assert len(parts) == 2, output
    return parts[1]


def leak_lines(output: str) -> list[str]:
    return [line for line in summary(output).splitlines() if line.startswith(LEAKING_TEST)]


def assert_leaks(output: str, expected: tuple[list[list[str]], int]) -> None:
    accepted_lines, count = expected
    lines = leak_lines(output)
    assert len(lines) == len(accepted_lines), output
    for line, accepted in zip(lines, accepted_lines, strict=True):
        assert line in accepted, output
    counted = f"{count} leaks of global random state in 1 test or module:"
    assert counted in summary(output).splitlines(), output


def assert_fails_only_the_planted_nondeterminism(run: subprocess.CompletedProcess[str]) -> None:
    output = run.stdout
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, output + run.stderr
    assert outcomes(output) == {"failed": 1, "passed": 3, "warnings": 1}, output
    failed = [line for line in output.splitlines() if line.startswith("FAILED ")]
    assert failed == [f"FAILED examples/vllm_like/{GATED_TEST}"], output
    assert NOT_REPRODUCIBLE.search(output), output
    assert SUMMARY_LINE.search(summary(output)), output


# -- the READMEs ---------------------------------------------------------------------------------


def test_the_readme_gives_the_two_commands_on_its_first_screen() -> None:
    text = README.read_text(encoding="utf-8")
    line, _, _ = readme_demo()
    assert line <= FIRST_SCREEN, f"the demo command is on line {line} of README.md"
    ci = re.search(r"^\$ bash \.ci/run$", text, re.MULTILINE)
    assert ci, "README.md shows no `$ bash .ci/run`"
    assert text.count("\n", 0, ci.start()) + 1 <= FIRST_SCREEN
    assert "pip install -e '.[test]'` then `pytest -n 2`" in " ".join(text.split())


def test_with_numpy_alone_the_example_prints_what_both_readmes_show(without_torch: Path) -> None:
    _, args, readme_output = readme_demo()
    assert args == examples_readme_command(), "the two READMEs run the example differently"
    run = run_example(args, path=(without_torch,))

    assert_fails_only_the_planted_nondeterminism(run)
    assert_leaks(run.stdout, expected_leak_lines(with_torch=False))
    assert_shows(as_started(readme_output, run.stdout), run.stdout, "README.md's first command")
    documented = as_started(examples_readme_output(), run.stdout)
    assert_shows(documented, run.stdout, "examples/README.md's output")
    assert "**1 failed, 3 passed, 1 warning**" in EXAMPLES_README.read_text(encoding="utf-8")


HEADER = re.compile(r"^(rngguard: mode=.* )sources=([\w.,]+)(?: \(and ([\w.,]+) once imported\))?$")


def as_started(documented: list[str], output: str) -> list[str]:
    """The documented output with its header line as this run's where the run only found
    some of the sources the READMEs list as watched "once imported" loaded at the start
    already: a plugin another machine autoloads can import numpy.random first (the GPU
    machine's do), and the READMEs show a fresh install.  Everything else in the line
    (mode, strict, seed, the order of the sources) must be as documented."""
    real = [m for line in output.splitlines() if (m := HEADER.match(line.strip()))]
    assert len(real) == 1, output
    settings, now, later = real[0].group(1), *_names(real[0])

    lines = []
    for line in documented:
        found = HEADER.match(line.strip())
        if found is not None and found.group(1) == settings:
            at_start, once_imported = _names(found)
            moved = [name for name in once_imported if name not in later]
            if (
                [name for name in now if name in at_start] == at_start
                and [name for name in now if name not in at_start] == moved
                and [name for name in once_imported if name in later] == later
            ):
                line = line.replace(line.strip(), real[0].group(0))
        lines.append(line)
    return lines


def _names(header: re.Match[str]) -> tuple[list[str], list[str]]:
    """A header's sources watched from the start, and those watched once imported."""
    return header.group(2).split(","), [n for n in (header.group(3) or "").split(",") if n]


def test_the_readmes_show_the_leak_lines_torch_adds() -> None:
    lines = seeding_lines()
    torch_line = f"torch reseeded ... seeding.py:{lines['torch']}"
    assert f"(`{torch_line}`)" in README.read_text(encoding="utf-8")
    text = " ".join(EXAMPLES_README.read_text(encoding="utf-8").split())
    assert f"vllm_like/seeding.py:{lines['torch']} in set_random_seed" in text
    assert "torch.cuda[queued until CUDA initialises] reseeded" in text


# -- the example, with what is installed -------------------------------------------------------


def test_the_example_reports_each_seeded_generator_and_the_next_test_starts_unseeded(
    observed: Path,
) -> None:
    args, options = observing(observed)
    run = run_example([*examples_readme_command(), *args], **options)

    assert_fails_only_the_planted_nondeterminism(run)
    with_torch = importlib.util.find_spec("torch") is not None
    assert_leaks(run.stdout, expected_leak_lines(with_torch))
    warned = set(re.findall(r"(tests/test_llm\.py::\w+) changed global random state", run.stdout))
    assert warned == {LEAKING_TEST}, run.stdout  # not the worker process, not the marker
    # Both of the worker's seeding calls: the last one's stack, then the first one, told
    # apart from it by the worker's line that made it.
    first, last = worker_seeding_lines()
    lines = seeding_lines()
    for source in ("random", "numpy", "torch") if with_torch else ("random", "numpy"):
        assert_shows(
            [
                f"{source} reseeded during call at vllm_like/seeding.py:{lines[source]} in ...",
                f"vllm_like/worker.py:{last} in compile_or_warm_up_model",
                "earlier calls in the same phase:",
                f"vllm_like/seeding.py:{lines[source]} in set_random_seed, "
                f"from vllm_like/worker.py:{first} in init_device",
            ],
            run.stdout,
            f"the warning about {source}",
        )
    # Put back: the next test starts from what the leaking test started from.
    seen = first_seen(observed)
    for source in ("random", "numpy", "torch") if with_torch else ("random", "numpy"):
        assert seen[NEXT_TEST][source] == seen[LEAKING_TEST][source], source


def test_without_the_plugin_the_next_test_starts_from_the_engines_seed(
    observed: Path, without_torch: Path
) -> None:
    """What the plugin prevents, seen the same way: the check above can fail."""
    args, options = observing(observed)
    options["path"] += (without_torch,)  # random and NumPy tell; torch would only be slower
    without_plugin = ["-p", "no:rngguard", "-k", "engine"]
    run = run_example(
        ["pytest", "examples/vllm_like", "-p", "no:randomly", *without_plugin, *args], **options
    )
    assert outcomes(run.stdout).get("passed") == 2, run.stdout + run.stderr
    seen = first_seen(observed)
    seeded = random.Random(0)
    seeded.random()  # the leaking test's own draw, after the engine seeded it with 0
    assert seen[NEXT_TEST]["random"] == rng_observer.random_print(seeded.getstate())
    assert seen[NEXT_TEST]["random"] != seen[LEAKING_TEST]["random"]
    assert seen[NEXT_TEST]["numpy"] != seen[LEAKING_TEST]["numpy"]


def test_a_deterministic_example_test_run_alone_reports_no_leak() -> None:
    run = run_example(
        [
            "pytest",
            "examples/vllm_like",
            "-p",
            "no:randomly",
            "-k",
            "reproducible_with_the_deterministic_marker",
        ]
    )
    assert outcomes(run.stdout).get("passed") == 1, run.stdout
    assert "changed global random state" not in run.stdout, run.stdout


# -- the stand-in's seeding, in this process -----------------------------------------------------


@pytest.fixture
def vllm_like(
    request: pytest.FixtureRequest, numpy: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """The example's package, imported here."""
    if importlib.util.find_spec("torch") is not None:
        request.getfixturevalue("torch")  # imported once, before any inner run (conftest)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return importlib.import_module("vllm_like")


@contextlib.contextmanager
def kept_global_state() -> Iterator[None]:
    """An engine built inside runs in this process; every generator it seeds, and torch's
    matmul precision, are put back on the way out."""
    numpy = sys.modules["numpy"]
    torch = sys.modules.get("torch")
    saved: list[Any] = [random.getstate(), numpy.random.get_state()]
    if torch is not None:
        # The legacy precision first: setting it also sets the fp32_precision settings.
        saved += [torch.get_rng_state(), torch.get_float32_matmul_precision()]
        saved += [node.fp32_precision for node in _matmul_precisions(torch)]
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            yield
    finally:
        random.setstate(saved[0])
        numpy.random.set_state(saved[1])
        if torch is not None:
            torch.set_rng_state(saved[2])
            torch.set_float32_matmul_precision(saved[3])
            for node, value in zip(_matmul_precisions(torch), saved[4:], strict=True):
                node.fp32_precision = value


def _matmul_precisions(torch: Any) -> list[Any]:
    """What ``torch.set_float32_matmul_precision`` sets besides the legacy precision."""
    return [torch.backends.cuda.matmul, torch.backends.mkldnn.matmul]


def worker_seed(seed: int, rank: int) -> int:
    """The seed vLLM's worker ends with: its own for rank 0, else one derived from the rank
    (vllm/utils/torch_utils.py; tests/test_vllm.py compares with vLLM itself)."""
    numpy = sys.modules["numpy"]
    if rank == 0:
        return seed
    return int(numpy.random.SeedSequence((seed, rank)).generate_state(1)[0])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), rank=st.integers(0, 7))
def test_the_in_process_worker_seeds_twice_with_warm_up_draws_between(
    vllm_like: ModuleType, monkeypatch: pytest.MonkeyPatch, seed: int, rank: int
) -> None:
    numpy = sys.modules["numpy"]
    worker = sys.modules["vllm_like.worker"]
    calls: list[tuple[tuple[int, ...], str]] = []

    def recording(*args: int) -> None:
        calls.append((args, rng_observer.numpy_print(numpy.random.get_state())))
        vllm_like.set_random_seed(*args)

    with kept_global_state(), monkeypatch.context() as patch:
        patch.setattr(worker, "set_random_seed", recording)
        vllm_like.LLM("tiny-opt", seed=seed, data_parallel_rank=rank)
        after = random.getstate(), rng_observer.numpy_print(numpy.random.get_state())

    assert [args for args, _ in calls] == [(seed,), (seed, rank)]
    # Between the two calls the warm-up drew from the generators the first call seeded.
    assert calls[1][1] != rng_observer.numpy_print(numpy.random.RandomState(seed).get_state())
    expected = worker_seed(seed, rank)
    assert after[0] == random.Random(expected).getstate()
    assert after[1] == rng_observer.numpy_print(numpy.random.RandomState(expected).get_state())


def test_seed_none_is_deprecated_and_seeds_with_zero(vllm_like: ModuleType) -> None:
    with kept_global_state(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        llm = vllm_like.LLM("tiny-opt", seed=None)
        state = random.getstate()
    assert llm.seed == 0
    assert state == random.Random(0).getstate()
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "seed=None is deprecated" in str(caught[0].message)


def test_the_worker_resets_float32_matmul_precision_to_highest(vllm_like: ModuleType) -> None:
    torch = sys.modules.get("torch")
    if torch is None:
        pytest.skip("torch is not installed")
    with kept_global_state():
        torch.set_float32_matmul_precision("medium")
        vllm_like.LLM("tiny-opt")
        assert torch.get_float32_matmul_precision() == "highest"
