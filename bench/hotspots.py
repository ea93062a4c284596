"""Where the guard's time goes: one in-process pytest run under cProfile.

    python bench/hotspots.py [--suite trivial|drawing] [--tests N] [--deterministic]
                             [-- PYTEST ARGS]

Generates the suite under ``bench/_out/hotspots``, runs ``pytest.main`` on it under
``cProfile`` (with ``-p no:randomly`` and any extra arguments) and prints the functions of
``pytest_rngguard`` by cumulative and by own time, with µs per test; everything that is
called only once (imports, session start) shows up as such.  Profiling slows small
functions down more than large ones: read it for where, and the micro-benchmark for how much.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import micro  # noqa: E402
import suites  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(suites.WRITERS), default=suites.TRIVIAL)
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="The variant with the deterministic marker on every test",
    )
    parser.add_argument("--top", type=int, default=25, help="Rows per listing (default 25)")
    parser.add_argument("--save", metavar="PATH", help="Keep the raw profile there")
    parser.add_argument("pytest_args", nargs="*", help="Extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    folder = suites.WRITERS[args.suite](
        Path(micro.OUT) / "hotspots", args.tests, deterministic=args.deterministic
    )
    import pytest

    profile = cProfile.Profile()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        profile.enable()
        code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:randomly", *args.pytest_args])
        profile.disable()
    finally:
        os.chdir(cwd)
    if args.save:
        profile.dump_stats(args.save)
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    for order in ("cumulative", "tottime"):
        stream.write(f"\n==== pytest_rngguard functions by {order} ({args.tests} tests) ====\n")
        stats.sort_stats(order).print_stats("pytest_rngguard", args.top)
    print(stream.getvalue())
    print(f"pytest exit code {code}; divide the times by {args.tests} tests for s per test")
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
