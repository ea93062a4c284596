"""The pytest-rngguard benchmark: one command, from a clean checkout.

    python bench/run.py [--quick] [--pairs N] [--tests N] [--memory] [--json PATH]

1. Generates the suites under ``bench/_out/`` (git-ignored): ``trivial`` (N trivial
   parametrised tests in a module that imports random, numpy and torch) and ``drawing`` (N
   tests using session-, module- and function-scoped fixtures, all drawing random numbers),
   each also as a variant with ``pytestmark = pytest.mark.deterministic``.  On a GPU machine,
   ``--suites cuda,cuda-drawing`` measures the same with CUDA initialised on one device
   (trivial tests, and tests that draw on the GPU).
2. Runs every configuration of each suite as a whole process, in rounds: each round runs all
   configurations once, in an order rotated from round to round (A B C … then B C … A), so
   every configuration is paired with plain pytest run next to it.  One warm-up round first.
3. Prints the median wall time and CPU time (user + sys of the child) per configuration, and
   the median of the per-round ratios to plain pytest.
4. Runs the in-process micro-benchmark (``bench/micro.py``) in a fresh interpreter.
5. With ``--memory``: peak RSS of a 50,000-test trivial run with the plugin and with
   ``-p no:rngguard``, alternately.

Child processes cache bytecode under ``bench/_out/pycache`` (``PYTHONPYCACHEPREFIX``) even if
``PYTHONDONTWRITEBYTECODE`` is set, so imports cost what they cost in a normal install.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import micro  # noqa: E402
import suites  # noqa: E402

OUT = Path(micro.OUT)
NO_RANDOMLY = ("-p", "no:randomly")


@dataclasses.dataclass(frozen=True)
class Config:
    key: str  # as ``--configs`` names it
    name: str
    args: tuple[str, ...]
    deterministic: bool = False  # run the suite's variant with the marker on every test
    #: Text the first run's output must contain (proves the configuration took effect).
    expect: tuple[str, ...] = ()
    reject: tuple[str, ...] = ()
    #: Whether pytest's ``plugins:`` line must list the plugin (the ``rngguard:`` header is
    #: printed only with a setting other than the default, or ``-vv``).
    guard: bool = True


def _floor(key: str, name: str, *flags: str, deterministic: bool = False) -> Config:
    """A floor configuration: bench/floor.py loaded instead of the plugin, with ``flags``."""
    args = ("-p", "no:rngguard", *NO_RANDOMLY, "-p", "rngguard_floor", *flags)
    return Config(key, name, args, deterministic=deterministic, reject=("rngguard:",), guard=False)


_CLASSIFY = ("--floor-checks", "--floor-classify")
PLAIN = Config(
    "plain",
    "plain pytest",
    ("-p", "no:rngguard", *NO_RANDOMLY),
    reject=("rngguard:", "randomly-seed"),
    guard=False,
)
CONFIGS = (
    PLAIN,
    Config(
        "randomly",
        "pytest-randomly",
        ("-p", "no:rngguard", "-p", "randomly"),
        expect=("randomly-seed",),
        reject=("rngguard:",),
        guard=False,
    ),
    Config("rngguard", "rngguard (default)", NO_RANDOMLY, reject=("randomly-seed",)),
    Config(
        "rngguard+randomly",
        "rngguard + pytest-randomly",
        ("-p", "randomly"),
        expect=("randomly-seed",),
    ),
    Config(
        "strict",
        "--rngguard-strict",
        (*NO_RANDOMLY, "--rngguard-strict"),
        expect=("rngguard: mode=warn strict=yes",),
    ),
    Config(
        "restore-all",
        "--rngguard-restore=all",
        (*NO_RANDOMLY, "--rngguard-restore=all"),
        expect=("rngguard: mode=warn strict=no",),
    ),
    Config(
        "deterministic",
        "deterministic marker",
        NO_RANDOMLY,
        deterministic=True,
        reject=("randomly-seed",),
    ),
    # The floors (bench/floor.py): the guard's hooks with empty bodies, then what any guard
    # must do on top of them, step by step.
    _floor("floor-hooks", "floor: hooks alone"),
    _floor("floor-checks", "floor: hooks + bare checks", "--floor-checks"),
    _floor("floor-classify", "floor: + classification", *_CLASSIFY),
    _floor("floor-warn", "floor: + a warning per test", *_CLASSIFY, "--floor-warn"),
    _floor("floor-putback", "floor: + putting back", *_CLASSIFY, "--floor-warn", "--floor-putback"),
    _floor(
        "floor-recipe",
        "floor: bare checks + recipe",
        "--floor-checks",
        "--floor-recipe",
        deterministic=True,
    ),
    Config(
        "trace",
        "--rngguard-trace",
        (*NO_RANDOMLY, "--rngguard-trace"),
        expect=("rngguard: mode=warn",),
    ),
)


@dataclasses.dataclass
class Run:
    wall: float
    cpu: float
    maxrss_kb: int
    code: int
    output: str


def run_pytest(folder: Path, args: tuple[str, ...], keep_output: bool = False) -> Run:
    """One whole pytest process: wall time, and the child's own CPU time and peak RSS
    (``os.wait4`` gives this child's rusage, not the sum over every child so far)."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=folder, stdout=sink, stderr=subprocess.STDOUT, env=micro.child_env()
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        output = ""
        if keep_output or process.returncode != 0:
            sink.seek(0)
            output = sink.read().decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(command)} (in {folder}) exited {process.returncode}:\n"
            f"{output[-3000:]}"
        )
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, process.returncode, output)


_PLUGINS = re.compile(r"^plugins: (.*)$", re.MULTILINE)


def check(config: Config, run: Run, tests: int) -> None:
    """The first run of a configuration must show that it ran as intended."""
    if not re.search(rf"\b{tests} passed\b", run.output):
        raise SystemExit(f"bench: {config.name}: expected {tests} passed:\n{run.output[-2000:]}")
    for text in config.expect:
        if text not in run.output:
            raise SystemExit(f"bench: {config.name}: {text!r} not in the output")
    for text in config.reject:
        if text in run.output:
            raise SystemExit(f"bench: {config.name}: {text!r} in the output")
    found = _PLUGINS.search(run.output)
    listed = found is not None and any(
        name.startswith("rngguard-") for name in found.group(1).split(", ")
    )
    if listed != config.guard:
        state = "loaded" if listed else "not loaded"
        raise SystemExit(f"bench: {config.name}: the plugin is {state} (pytest's plugins line)")


def measure_suite(
    suite: str, tests: int, pairs: int, configs: tuple[Config, ...], log: Any
) -> dict[str, Any]:
    writer = suites.WRITERS[suite]
    folders = {
        False: writer(OUT / suite, tests),
        True: writer(OUT / f"{suite}-deterministic", tests, deterministic=True),
    }
    runs: dict[str, list[Run]] = {c.name: [] for c in configs}
    for config in configs:  # warm-up round: bytecode caches, page cache; checks the output
        run = run_pytest(folders[config.deterministic], config.args, keep_output=True)
        check(config, run, tests)
        log(f"  warm-up  {config.name:<28} {run.wall:7.2f} s")
    for round_number in range(pairs):
        shift = round_number % len(configs)
        for config in configs[shift:] + configs[:shift]:
            run = run_pytest(folders[config.deterministic], config.args)
            runs[config.name].append(run)
        plain = runs[PLAIN.name][-1].wall
        log(
            f"  round {round_number + 1}/{pairs}: plain {plain:.2f} s, "
            + ", ".join(f"{c.name} {runs[c.name][-1].wall / plain:.3f}" for c in configs[1:])
        )
    return summarise(suite, tests, runs)


def summarise(suite: str, tests: int, runs: dict[str, list[Run]]) -> dict[str, Any]:
    plain = runs[PLAIN.name]
    rows = []
    for name, own in runs.items():
        wall_ratios = [r.wall / p.wall for r, p in zip(own, plain, strict=True)]
        cpu_ratios = [r.cpu / p.cpu for r, p in zip(own, plain, strict=True)]
        wall = statistics.median(r.wall for r in own)
        rows.append(
            {
                "config": name,
                "wall_s": wall,
                "cpu_s": statistics.median(r.cpu for r in own),
                "wall_ratio": statistics.median(wall_ratios),
                "wall_ratio_min": min(wall_ratios),
                "wall_ratio_max": max(wall_ratios),
                "cpu_ratio": statistics.median(cpu_ratios),
                "per_test_us": (wall - statistics.median(p.wall for p in plain)) / tests * 1e6,
                "walls": [r.wall for r in own],
                "cpus": [r.cpu for r in own],
            }
        )
    return {"suite": suite, "tests": tests, "pairs": len(plain), "rows": rows}


def render_suite(result: dict[str, Any]) -> str:
    lines = [
        f"{result['suite']}: {result['tests']} tests, {result['pairs']} rounds "
        f"({suites.DESCRIPTIONS[result['suite']]})",
        f"  {'configuration':<28}{'wall s':>8}{'x plain':>9}{'(min-max)':>15}"
        f"{'cpu s':>8}{'cpu x':>8}{'µs/test':>9}",
    ]
    for row in result["rows"]:
        spread = f"{row['wall_ratio_min']:.3f}-{row['wall_ratio_max']:.3f}"
        lines.append(
            f"  {row['config']:<28}{row['wall_s']:8.2f}{row['wall_ratio']:9.3f}{spread:>15}"
            f"{row['cpu_s']:8.2f}{row['cpu_ratio']:8.3f}{row['per_test_us']:9.0f}"
        )
    return "\n".join(lines)


def measure_memory(tests: int, pairs: int, log: Any) -> dict[str, Any]:
    folder = suites.write_trivial(OUT / "memory", tests)
    configs = (
        PLAIN,
        Config("rngguard", "rngguard (default)", NO_RANDOMLY),
    )
    runs: dict[str, list[Run]] = {c.name: [] for c in configs}
    for round_number in range(pairs):
        order = configs if round_number % 2 == 0 else configs[::-1]
        for config in order:
            run = run_pytest(folder, config.args, keep_output=round_number == 0)
            if round_number == 0:
                check(config, run, tests)
            runs[config.name].append(run)
        log(
            f"  round {round_number + 1}/{pairs}: "
            + ", ".join(f"{c.name} {runs[c.name][-1].maxrss_kb / 1024:.1f} MiB" for c in configs)
        )
    plain, guarded = (runs[c.name] for c in configs)
    ratios = [g.maxrss_kb / p.maxrss_kb for g, p in zip(guarded, plain, strict=True)]
    return {
        "tests": tests,
        "pairs": pairs,
        "plain_mib": statistics.median(r.maxrss_kb for r in plain) / 1024,
        "rngguard_mib": statistics.median(r.maxrss_kb for r in guarded) / 1024,
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "wall_ratio": statistics.median(
            g.wall / p.wall for g, p in zip(guarded, plain, strict=True)
        ),
    }


def render_memory(result: dict[str, Any]) -> str:
    return (
        f"peak RSS, {result['tests']} trivial tests, {result['pairs']} rounds: plain "
        f"{result['plain_mib']:.1f} MiB, rngguard {result['rngguard_mib']:.1f} MiB, ratio "
        f"{result['ratio']:.4f} ({result['ratio_min']:.4f}-{result['ratio_max']:.4f})"
    )


def revision() -> str:
    """The commit measured, and whether the package differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "pytest_rngguard"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' (pytest_rngguard/ modified)' if dirty else ''}"


def freeze_package(name: str = "snapshot") -> Path:
    """Copy the package under ``bench/_out/snapshot`` and put it first on every child's
    ``PYTHONPATH``: one run measures one version, even while the tree is being edited."""
    import shutil

    target = OUT / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(
        HERE.parent / "pytest_rngguard",
        target / "pytest_rngguard",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(HERE / "floor.py", target / "rngguard_floor.py")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(target), *([path] if path else [])])
    return target


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark pytest-rngguard against plain pytest and pytest-randomly"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 tests, 5 rounds, fewer micro-benchmark iterations",
    )
    parser.add_argument("--pairs", type=int, help="Rounds of paired runs (default 7; 5 quick)")
    parser.add_argument("--tests", type=int, help="Tests per suite (default 5000; 1000 quick)")
    parser.add_argument(
        "--suites",
        default="trivial,drawing",
        help="Comma-separated suites to run (default trivial,drawing; on a GPU also "
        "cuda,cuda-drawing)",
    )
    parser.add_argument(
        "--configs",
        default=",".join(c.key for c in CONFIGS),
        help="Comma-separated configurations to compare with plain pytest (default: all of "
        + ", ".join(c.key for c in CONFIGS[1:])
        + ")",
    )
    parser.add_argument("--no-micro", action="store_true", help="Skip the micro-benchmark")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="Also compare peak RSS on a 50,000-test trivial run (slow)",
    )
    parser.add_argument(
        "--memory-tests", type=int, default=50_000, help="Tests in the memory run (default 50000)"
    )
    parser.add_argument(
        "--memory-pairs", type=int, default=3, help="Rounds of the memory run (default 3)"
    )
    parser.add_argument("--json", metavar="PATH", help="Write every figure as JSON")
    args = parser.parse_args(argv)
    tests = args.tests or (1000 if args.quick else 5000)
    pairs = args.pairs or (5 if args.quick else 7)
    if pairs < 1 or tests < 1:
        parser.error("--pairs and --tests must be positive")
    keys = {c.key: c for c in CONFIGS}
    unknown = set(filter(None, args.configs.split(","))) - set(keys)
    if unknown:
        parser.error(f"unknown configuration(s) {sorted(unknown)}; known: {', '.join(keys)}")
    chosen = (PLAIN, *(c for c in CONFIGS[1:] if c.key in set(args.configs.split(","))))
    OUT.mkdir(parents=True, exist_ok=True)
    frozen = freeze_package()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", "bench/run.py", *(argv or sys.argv[1:])]),
        "revision": revision(),
        "package": str(frozen),
        "load_average_start": load_average(),
        "suites": [],
    }
    started = time.perf_counter()
    for suite in filter(None, args.suites.split(",")):
        if suite not in suites.WRITERS:
            parser.error(f"unknown suite {suite!r}; known: {', '.join(suites.WRITERS)}")
        log(f"{suite}: {tests} tests, {pairs} rounds of {len(chosen)} configurations")
        results["suites"].append(measure_suite(suite, tests, pairs, chosen, log))
    if not args.no_micro:
        log("micro-benchmark")
        micro_json = OUT / "micro.json"
        command = [sys.executable, str(HERE / "micro.py"), "--json", str(micro_json)]
        if args.quick:
            command.append("--quick")
        subprocess.run(command, check=True, env=micro.child_env(), stdout=subprocess.DEVNULL)
        results["micro"] = json.loads(micro_json.read_text())
    if args.memory:
        log(f"memory: {args.memory_tests} tests, {args.memory_pairs} rounds")
        results["memory"] = measure_memory(args.memory_tests, args.memory_pairs, log)
    results["load_average_end"] = load_average()
    results["minutes"] = (time.perf_counter() - started) / 60

    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def render(results: dict[str, Any]) -> str:
    parts = []
    if "micro" in results:
        v = results["micro"]["versions"]
        parts.append(
            f"{results['date']} · {v['cpu']} · {v['cores']} cores · Python {v['python']} · "
            f"pytest {v['pytest']} · numpy {v['numpy']} · torch {v['torch']} · "
            f"pytest-rngguard {v['pytest-rngguard']}"
        )
    parts.append(
        f"commit {results['revision']}; load average at start "
        f"{results['load_average_start']}, at end {results['load_average_end']}; "
        f"{results['minutes']:.1f} minutes"
    )
    parts.extend(render_suite(result) for result in results["suites"])
    if "micro" in results:
        parts.append(micro.render(results["micro"]))
    if "memory" in results:
        parts.append(render_memory(results["memory"]))
    return "\n\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
