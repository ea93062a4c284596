"""The vLLM-style example still does what examples/README.md says it does.

The example is its own pytest project (examples/vllm_like/pytest.ini), so it runs in a
subprocess from the repository root, with the command the README gives.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import torch_built_with_cuda

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
ENGINE = EXAMPLES / "vllm_like" / "vllm_like" / "engine.py"
README = EXAMPLES / "README.md"
LEAKING_TEST = "tests/test_llm.py::test_in_process_engine_leaks"
GATED_TEST = "tests/test_llm.py::test_planted_nondeterminism_fails_the_gate"
DIFFERENCE = r"run 2 differs from run 1 at record 'tokens'\[\d+\]\[\d+\]: \d+ != \d+"
#: The failure of the gated test, and its line in the plugin's summary.
NOT_REPRODUCIBLE = re.compile(re.escape(f"{GATED_TEST} is not reproducible: ") + DIFFERENCE)
SUMMARY_LINE = re.compile(
    "^" + re.escape(f"not reproducible: {GATED_TEST}: ") + DIFFERENCE + "$", re.MULTILINE
)

SUMMARY = re.compile(r"^=+ rngguard =+$", re.MULTILINE)

pytestmark = [
    pytest.mark.skipif(not ENGINE.exists(), reason="no examples/ in this checkout"),
    pytest.mark.skipif(
        any(importlib.util.find_spec(name) is None for name in ("numpy", "torch")),
        reason="the example needs numpy and torch",
    ),
]


def seeding_lines() -> dict[str, int]:
    """The line of each seeding call in ``set_random_seed``, by source name."""
    calls = {"random.seed": "random", "np.random.seed": "numpy", "torch.manual_seed": "torch"}
    tree = ast.parse(ENGINE.read_text(encoding="utf-8"))
    function = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "set_random_seed"
    )
    lines = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in calls:
            lines[calls[ast.unparse(node.func)]] = node.lineno
    assert set(lines) == {"random", "numpy", "torch"}, lines
    return lines


def leak_line(source: str, line: int) -> str:
    return (
        f"{LEAKING_TEST}: {source} reseeded during call by "
        f"vllm_like/engine.py:{line} in set_random_seed"
    )


def readme_command() -> list[str]:
    """The README's command, run with this interpreter."""
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"^\$ (pytest examples/vllm_like .*)$", text, re.MULTILINE)
    assert commands, "examples/README.md shows no `$ pytest examples/vllm_like ...` command"
    assert len(set(commands)) == 1, f"examples/README.md shows different commands: {commands}"
    return [sys.executable, "-m", *shlex.split(commands[0])]


def run_example(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    env.pop("GITHUB_ACTIONS", None)  # no workflow commands in the output
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def outcomes(output: str) -> dict[str, int]:
    return pytest.RunResult.parse_summary_nouns(output.splitlines())


def summary(output: str) -> str:
    """The plugin's terminal summary section, to the end of the output."""
    parts = SUMMARY.split(output, maxsplit=1)
    assert len(parts) == 2, output
    return parts[1]


def shows_the_in_process_leak_with_its_origin(output: str, readme: str) -> None:
    lines_by_source = seeding_lines()
    documented = [leak_line(source, line) for source, line in lines_by_source.items()]
    # A CUDA build of torch queues the seed for CUDA too: one more line, as the README says.
    queued = leak_line("torch.cuda[queued until CUDA initialises]", lines_by_source["torch"])
    expected = [*documented, queued] if torch_built_with_cuda() else documented
    lines = summary(output).splitlines()
    count = f"{len(expected)} leaks of global random state in 1 test or module:"
    assert count in lines, output
    assert [line for line in lines if line.startswith(LEAKING_TEST)] == expected, output
    for line in documented:
        assert line in readme, f"examples/README.md does not show {line!r}"
    assert "torch.cuda[queued until CUDA initialises] reseeded" in readme


def shows_no_leak_from_the_worker_process_or_the_marker(output: str) -> None:
    warned = set(re.findall(r"(tests/test_llm\.py::\w+) changed global random state", output))
    assert warned == {LEAKING_TEST}, output
    assert "worker_process" not in summary(output), output
    assert "deterministic_marker" not in summary(output), output


def fails_only_the_planted_nondeterminism(
    run: subprocess.CompletedProcess[str], readme: str
) -> None:
    output = run.stdout
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, output + run.stderr
    assert outcomes(output) == {"failed": 1, "passed": 3, "warnings": 1}, output
    failed = [line for line in output.splitlines() if line.startswith("FAILED ")]
    assert failed == [f"FAILED examples/vllm_like/{GATED_TEST}"], output
    assert "**1 failed, 3 passed, 1 warning**" in readme


def says_the_planted_nondeterminism_is_not_reproducible(output: str, readme: str) -> None:
    assert NOT_REPRODUCIBLE.search(output), output
    assert SUMMARY_LINE.search(summary(output)), output
    assert NOT_REPRODUCIBLE.search(readme)
    assert SUMMARY_LINE.search(readme)


def test_the_readme_command_still_does_what_the_readme_says() -> None:
    # One run for every claim: the example starts a worker process and imports torch twice.
    run = run_example(readme_command())
    readme = README.read_text(encoding="utf-8")
    shows_the_in_process_leak_with_its_origin(run.stdout, readme)
    shows_no_leak_from_the_worker_process_or_the_marker(run.stdout)
    fails_only_the_planted_nondeterminism(run, readme)
    says_the_planted_nondeterminism_is_not_reproducible(run.stdout, readme)


def test_the_readme_shows_the_output_of_the_current_example() -> None:
    """The README's output block is real output of this example, not an old one."""
    readme = README.read_text(encoding="utf-8")
    block = readme.split("This is the output it gave", 1)[1]
    for test in (LEAKING_TEST, GATED_TEST):
        assert test in block
    for source, line in seeding_lines().items():
        assert f"{source} reseeded during call at vllm_like/engine.py:{line} in " in block
    assert re.search(r"=+ 1 failed, 3 passed, 1 warning in [\d.]+s =+", block)


def test_a_deterministic_example_test_run_alone_reports_no_leak() -> None:
    result = run_example(
        [
            sys.executable,
            "-m",
            "pytest",
            "examples/vllm_like",
            "-p",
            "no:randomly",
            "-k",
            "reproducible_with_the_deterministic_marker",
        ]
    )
    assert outcomes(result.stdout).get("passed") == 1, result.stdout
    assert "changed global random state" not in result.stdout, result.stdout
