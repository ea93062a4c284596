"""Instructions per test, counted under Valgrind: the overhead measure that noise cannot move.

    python bench/instructions.py [--suites trivial,drawing] [--configs rngguard,...]
                                 [--small 200] [--large 1200] [--tests 5000] [--jobs N]
                                 [--repeat N]

Wall and CPU times on a shared machine move by 10-30 % from run to run, more than the
overhead being measured.  The number of instructions a process executes does not: this runs
each configuration of each suite at two sizes (100 and 1,100 tests by default) under
``valgrind --tool=cachegrind --cache-sim=no`` (about 50 times slower than normal), with a
fixed ``PYTHONHASHSEED``, and takes

* the instructions per test: (large - small) / (large tests - small tests), which leaves out
  everything that does not grow with the suite (start-up, imports, collection set-up);
* the ratio of that to plain pytest's, the per-test overhead;
* the whole-run ratio for a suite of ``--tests`` tests, start-up included, which is what the
  wall-time ratio of ``bench/run.py`` estimates.

Instructions are not time (a cache miss costs more than an add), but in the interpreter's
per-test work they track it closely, and they say in one run what the timings need a quiet
machine and many rounds to say.  Needs ``valgrind`` on PATH.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import micro  # noqa: E402
import suites  # noqa: E402
from run import CONFIGS, OUT, PLAIN, Config, freeze_package, revision  # noqa: E402

DEFAULT_CONFIGS = (
    "randomly",
    "rngguard",
    "strict",
    "restore-all",
    "deterministic",
    "floor-hooks",
    "floor-checks",
    "floor-classify",
    "floor-warn",
    "floor-putback",
    "floor-recipe",
)
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _env() -> dict[str, str]:
    # A fixed str hash seed: with randomised hashes, dict and set layouts (and so the
    # instruction counts) differ a little from run to run.
    return {**micro.child_env(), "PYTHONHASHSEED": "0"}


def count(folder: Path, config: Config, tests: int) -> int:
    """Instructions of one whole pytest process on ``folder`` under ``config``."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        *config.args,
    ]
    done = subprocess.run(
        command, cwd=folder, env=_env(), capture_output=True, text=True, check=False
    )
    output = done.stdout + done.stderr
    found = _REFS.search(output)
    if done.returncode != 0 or found is None or not re.search(rf"\b{tests} passed\b", output):
        raise SystemExit(
            f"bench: {config.name} on {folder} (exit {done.returncode}):\n{output[-3000:]}"
        )
    return int(found.group(1).replace(",", ""))


def measure(
    suite: str,
    configs: tuple[Config, ...],
    small: int,
    large: int,
    jobs: int,
    log: Any,
    repeat: int = 1,
) -> dict[str, Any]:
    writer = suites.WRITERS[suite]
    folders: dict[tuple[bool, int], Path] = {}
    for deterministic in {c.deterministic for c in configs}:
        for size in (small, large):
            name = f"instructions-{suite}{'-deterministic' if deterministic else ''}-{size}"
            folders[deterministic, size] = writer(OUT / name, size, deterministic=deterministic)
    # One run of every configuration on every folder first, outside Valgrind: it writes the
    # bytecode caches (the frozen package's included) that every counted run then reads.
    for config in configs:
        for size in (small, large):
            subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *config.args],
                cwd=folders[config.deterministic, size],
                env=_env(),
                capture_output=True,
                check=False,
            )
    # Each count ``repeat`` times, keeping the smallest: now and then a run counts tens of
    # millions of instructions more than the others (never fewer).
    work = [(c, size) for c in configs for size in (small, large) for _ in range(repeat)]
    counts: dict[tuple[str, int], int] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(count, folders[c.deterministic, size], c, size): (c.name, size)
            for c, size in work
        }
        for future in concurrent.futures.as_completed(futures):
            key = futures[future]
            found = future.result()
            counts[key] = min(found, counts.get(key, found))
            log(f"  {suite}: {key[0]:<28} {key[1]:>5} tests  {found / 1e9:8.3f} G")
    return {"suite": suite, "small": small, "large": large, "counts": counts}


def summarise(result: dict[str, Any], tests: int) -> dict[str, Any]:
    small, large, counts = result["small"], result["large"], result["counts"]
    names = sorted({name for name, _ in counts}, key=lambda n: (n != PLAIN.name, n))
    rows = {}
    for name in names:
        per_test = (counts[name, large] - counts[name, small]) / (large - small)
        fixed = counts[name, small] - per_test * small
        rows[name] = {"per_test": per_test, "fixed": fixed, "whole": fixed + per_test * tests}
    plain = rows[PLAIN.name]
    for row in rows.values():
        row["per_test_ratio"] = row["per_test"] / plain["per_test"]
        row["whole_ratio"] = row["whole"] / plain["whole"]
        row["extra_per_test"] = row["per_test"] - plain["per_test"]
    return {"suite": result["suite"], "tests": tests, "small": small, "large": large, "rows": rows}


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['suite']}: instructions, from runs of {summary['small']} and "
        f"{summary['large']} tests ({suites.DESCRIPTIONS[summary['suite']]})",
        f"  {'configuration':<28}{'per test':>12}{'extra':>10}{'x plain':>9}"
        f"{'x plain, ' + str(summary['tests']) + ' tests':>22}",
    ]
    for name, row in summary["rows"].items():
        lines.append(
            f"  {name:<28}{row['per_test'] / 1e6:10.3f} M{row['extra_per_test'] / 1e3:8.0f} K"
            f"{row['per_test_ratio']:9.3f}{row['whole_ratio']:22.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="trivial,drawing", help="Comma-separated suites")
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"Comma-separated configurations (default {','.join(DEFAULT_CONFIGS)})",
    )
    parser.add_argument("--small", type=int, default=100, help="Tests in the small run")
    parser.add_argument("--large", type=int, default=1100, help="Tests in the large run")
    parser.add_argument(
        "--tests", type=int, default=5000, help="Suite size for the whole-run ratio"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="Valgrind runs at once"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="Count every run this many times and keep the smallest count (default 1)",
    )
    parser.add_argument("--json", metavar="PATH", help="Write every figure as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if shutil.which("valgrind") is None:
        raise SystemExit("bench: valgrind is not on PATH (apt install valgrind)")
    by_key = {c.key: c for c in CONFIGS}
    wanted = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_key]
    if unknown:
        raise SystemExit(f"bench: unknown configuration(s) {unknown}; known: {sorted(by_key)}")
    configs = (PLAIN, *(by_key[name] for name in wanted))
    freeze_package("snapshot-instructions")
    measured = revision()
    started = time.monotonic()
    summaries = []
    for suite in [s.strip() for s in args.suites.split(",") if s.strip()]:
        if suite not in suites.WRITERS:
            raise SystemExit(f"bench: unknown suite {suite!r}; known: {sorted(suites.WRITERS)}")
        result = measure(suite, configs, args.small, args.large, args.jobs, print, args.repeat)
        summaries.append(summarise(result, args.tests))
    print(
        f"\ncommit {measured}; {datetime.date.today()}; "
        f"{(time.monotonic() - started) / 60:.1f} minutes"
    )
    for summary in summaries:
        print()
        print(render(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
