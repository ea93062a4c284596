"""In-process micro-benchmark of the guard's hot path, run in a fresh interpreter.

``python bench/micro.py [--quick] [--json PATH]`` imports random, numpy and torch, builds the
real :class:`pytest_rngguard.monitor.Monitor` the way ``session.build`` does (default settings),
and times, as the median over many batches of calls:

* ``Monitor.checkpoint()`` when nothing changed (the cost of every phase of a clean test),
  and its parts: ``refresh``, ``capture`` and the compare;
* snapshot plus compare of random, numpy and torch together (the issue's 5 µs target);
* ``checkpoint()`` after a draw from each source (the classification path);
* ``capture()`` per source, next to the public API it replaces;
* seeding: ``determinism.apply`` + ``undo`` (the ``deterministic`` marker) and its parts;
* the import of ``pytest_rngguard.plugin`` (``-X importtime``) and which heavy libraries
  that import loads.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable
from typing import Any

HEAVY = ("numpy", "torch", "hypothesis", "tensorflow", "cupy")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_out")


def child_env() -> dict[str, str]:
    """The environment for measured child processes: bytecode is cached, as in any normal
    install, but under ``bench/_out/pycache`` rather than next to the sources."""
    env = dict(os.environ)
    for name in (
        "PYTHONDONTWRITEBYTECODE",
        "PYTEST_ADDOPTS",
        "PYTEST_PLUGINS",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    ):
        env.pop(name, None)
    env.setdefault("PYTHONPYCACHEPREFIX", os.path.join(OUT, "pycache"))
    os.makedirs(OUT, exist_ok=True)
    return env


def per_call_us(fn: Callable[[], Any], number: int, repeat: int) -> float:
    """Median over ``repeat`` batches of the time of one call, in µs."""
    timer = timeit.Timer(fn)
    timer.timeit(max(1, number // 10))  # warm up caches and lazy preparation
    return statistics.median(timer.repeat(repeat, number)) / number * 1e6


def build_monitor() -> Any:
    """The monitor exactly as ``session.build`` makes it with default settings."""
    from pytest_rngguard.monitor import Monitor
    from pytest_rngguard.origins import IgnoreRules, PathShortener
    from pytest_rngguard.settings import Settings
    from pytest_rngguard.sources import build_sources
    from pytest_rngguard.sourceset import SourceSet

    settings = Settings()
    monitor = Monitor(
        SourceSet(build_sources(settings.env_watched, settings.sources)),
        ignore=IgnoreRules(settings.ignore),
        shorten=PathShortener(os.getcwd()),
        trace=settings.trace,
    )
    monitor.start()
    monitor.active = True
    return monitor


def hot_path(monitor: Any, number: int, repeat: int) -> dict[str, float]:
    import numpy as np
    import torch

    monitor.reset()
    base = monitor.capture()
    by_name = {s.name: s for s in monitor.available()}
    three = [by_name[name].capture for name in ("random", "numpy", "torch")]
    three_base = [capture() for capture in three]

    def snapshot_compare_three() -> bool:
        return [capture() for capture in three] == three_base

    def capture_compare_all() -> bool:
        return bool(monitor.capture() == base)

    results = {
        "empty call": per_call_us(lambda: None, number, repeat),
        "checkpoint, nothing changed": per_call_us(monitor.checkpoint, number, repeat),
        "  refresh": per_call_us(monitor.refresh, number, repeat),
        "  capture (all available sources)": per_call_us(monitor.capture, number, repeat),
        "  capture + compare (all available)": per_call_us(capture_compare_all, number, repeat),
        "snapshot + compare random, numpy, torch": per_call_us(
            snapshot_compare_three, number, repeat
        ),
        "reset": per_call_us(monitor.reset, number, repeat),
    }
    draws: dict[str, Callable[[], Any]] = {
        "random": random_draw,
        "numpy": lambda: np.random.rand(),
        "torch": lambda: torch.rand(1),
    }
    draws["all three"] = lambda: (draws["random"](), draws["numpy"](), draws["torch"]())
    small = max(1, number // 10)
    for name, draw in draws.items():
        monitor.reset()

        def draw_and_checkpoint(draw: Callable[[], Any] = draw) -> Any:
            draw()
            return monitor.checkpoint()

        with_checkpoint = per_call_us(draw_and_checkpoint, small, repeat)
        alone = per_call_us(draw, small, repeat)
        results[f"checkpoint after a draw from {name} (classifies)"] = with_checkpoint - alone
    monitor.reset()
    results["os.environ[...] = ... (pytest does it 4x per test), guarded"] = per_call_us(
        set_current_test, number, repeat
    )
    return results


def set_current_test() -> None:
    """What pytest does at every phase: set ``PYTEST_CURRENT_TEST`` (a ``putenv`` call, which
    the env source intercepts)."""
    os.environ["PYTEST_CURRENT_TEST"] = "bench/test_module.py::test_name (call)"


def random_draw() -> float:
    import random

    return random.random()


def captures(monitor: Any, number: int, repeat: int) -> dict[str, float]:
    import random

    import numpy as np
    import torch

    results = {}
    for source in monitor.available():
        results[f"{source.name}: capture()"] = per_call_us(source.capture, number, repeat)
    for source in monitor.available():
        state = source.capture()  # putting back the state it has changes nothing
        results[f"{source.name}: restore()"] = per_call_us(
            functools.partial(source.restore, state), max(1, number // 10), repeat
        )
    public: dict[str, Callable[[], Any]] = {
        "random.getstate()": random.getstate,
        "np.random.get_state()": np.random.get_state,
        "torch.get_rng_state()": torch.get_rng_state,
    }
    for name, call in public.items():
        results[f"public API, for comparison: {name}"] = per_call_us(call, number, repeat)
    return results


def seeding(monitor: Any, number: int, repeat: int) -> dict[str, float]:
    import torch

    from pytest_rngguard.determinism import Recipe, apply, derive_seed, recipe_flags, undo
    from pytest_rngguard.sources.torch_flags import current_flags, set_flags

    available = monitor.sources
    recipe = Recipe(1234)

    def apply_undo() -> None:
        undo(apply(recipe, available), available)

    results = {"apply + undo (the deterministic marker)": per_call_us(apply_undo, number, repeat)}
    # Undoing one apply again and again; apply alone cannot be repeated without its undo
    # (each would leave its import watcher behind), so it is the difference.
    applied = apply(recipe, available)
    results["  undo"] = per_call_us(functools.partial(undo, applied, available), number, repeat)
    undo(applied, available)
    results["  apply (the difference)"] = (
        results["apply + undo (the deterministic marker)"] - results["  undo"]
    )
    results["  derive_seed(base, nodeid)"] = per_call_us(
        lambda: derive_seed(0, "tests/test_module.py::test_name[123]"), number, repeat
    )
    for source in available:
        if source.seedable:
            results[f"  {source.name}: seed()"] = per_call_us(
                functools.partial(source.seed, 1234), number, repeat
            )
    flags = current_flags()
    on = recipe_flags(flags, warn_only=False)

    def flags_on_and_off() -> None:
        set_flags(on, flags)
        set_flags(flags, on)

    results["  torch flags: set_flags() on and off"] = per_call_us(flags_on_and_off, number, repeat)
    results["public API, for comparison: torch.manual_seed()"] = per_call_us(
        lambda: torch.manual_seed(1234), number, repeat
    )
    return results


_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def import_cost(runs: int) -> dict[str, Any]:
    """Median cumulative import time of the plugin (ms), alone and after pytest, the modules
    that cost most in it (own time), and the heavy libraries that importing it loaded."""
    env = child_env()

    def entries(code: str) -> list[tuple[str, int, int, int]]:
        """(module, own µs, cumulative µs, depth) as ``-X importtime`` prints them."""
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=OUT,
        )
        found = []
        for line in done.stderr.splitlines():
            match = _IMPORTTIME.match(line)
            if match:
                depth = (len(match.group(3)) - 1) // 2
                found.append((match.group(4), int(match.group(1)), int(match.group(2)), depth))
        return found

    entries("import pytest, pytest_rngguard.plugin")  # writes the bytecode caches
    startup = {name for name, _, _, depth in entries("pass") if depth == 0}

    def caused(found: list[tuple[str, int, int, int]], after: str | None = None) -> float:
        """ms of the top-level imports the code caused (after ``after``'s own, if given)."""
        top = [(name, cumulative) for name, _, cumulative, depth in found if depth == 0]
        start = [name for name, _ in top].index(after) + 1 if after is not None else 0
        return sum(us for name, us in top[start:] if name not in startup) / 1000

    alone, after_pytest = [], []
    own: dict[str, list[int]] = {}
    for _ in range(runs):
        alone.append(caused(entries("import pytest_rngguard.plugin")))
        found = entries("import pytest; import pytest_rngguard.plugin")
        after_pytest.append(caused(found, after="pytest"))
        names = [name for name, _, _, depth in found]
        for name, self_us, _, _ in found[names.index("pytest") + 1 :]:
            own.setdefault(name, []).append(self_us)
    probe = (
        "import sys, pytest_rngguard.plugin; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env, cwd=OUT
    ).stdout.strip()
    results: dict[str, Any] = {
        "cumulative ms, import pytest_rngguard.plugin (pytest included)": statistics.median(alone),
        "cumulative ms, the plugin after pytest is imported": statistics.median(after_pytest),
    }
    medians = {name: statistics.median(times) / 1000 for name, times in own.items()}
    for name in sorted(medians, key=medians.__getitem__, reverse=True)[:8]:
        results[f"  own ms: {name}"] = medians[name]
    results["heavy libraries loaded by the import"] = loaded or "none"
    return results


_ONCE = """
import time, random, numpy.random, torch, sys, pytest_rngguard.plugin
sys.path.insert(0, {here!r})
from micro import build_monitor
start = time.perf_counter()
monitor = build_monitor()
built = time.perf_counter()
monitor.reset()
first = time.perf_counter()
torch.use_deterministic_algorithms(False)
flags = time.perf_counter()
monitor.stop()
print(built - start, first - built, flags - first)
"""


def one_time_costs(runs: int) -> dict[str, float]:
    """ms paid once per session, each in a fresh interpreter with random, numpy, torch."""
    env = child_env()
    code = _ONCE.format(here=os.path.dirname(os.path.abspath(__file__)))
    samples = [
        [
            float(x) * 1000
            for x in subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                env=env,
                cwd=OUT,
            ).stdout.split()
        ]
        for _ in range(runs)
    ]
    names = (
        "build the monitor and start it (sources, entry points, wrappers)",
        "first capture (validates the fast paths on scratch generators)",
        "first torch.use_deterministic_algorithms() (imports torch._inductor.config)",
    )
    return {name: statistics.median(s[i] for s in samples) for i, name in enumerate(names)}


def versions() -> dict[str, str]:
    import platform

    import numpy
    import pytest
    import torch

    import pytest_rngguard

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "pytest": pytest.__version__,
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "pytest-rngguard": pytest_rngguard.__version__,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer iterations")
    parser.add_argument("--json", metavar="PATH", help="Also write the figures as JSON")
    args = parser.parse_args(argv)
    number, repeat, runs = (2000, 15, 5) if args.quick else (10000, 41, 11)

    import random  # noqa: F401 - the sources are checked only when their library is loaded

    import numpy.random  # noqa: F401 - NumPy 2 loads its legacy generator lazily
    import torch  # noqa: F401

    monitor = build_monitor()
    try:
        results: dict[str, Any] = {
            "versions": versions(),
            "sources": [s.name for s in monitor.available()],
            "hot path (µs per call)": hot_path(monitor, number, repeat),
            "capture and restore per source (µs per call)": captures(monitor, number, repeat),
            "seeding (µs per call)": seeding(monitor, max(200, number // 20), repeat),
        }
    finally:
        monitor.stop()
    results["hot path (µs per call)"]["os.environ[...] = ... , not guarded"] = per_call_us(
        set_current_test, number, repeat
    )
    results["one-time costs (ms per session)"] = one_time_costs(max(3, runs // 2))
    results["import"] = import_cost(runs)
    print(render(results))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return results


def render(results: dict[str, Any]) -> str:
    lines = [f"sources available: {', '.join(results['sources'])}"]
    for section, figures in results.items():
        if section in ("versions", "sources"):
            continue
        lines.append("")
        lines.append(section)
        for name, value in figures.items():
            shown = f"{value:10.2f}" if isinstance(value, float) else f"{value:>10}"
            lines.append(f"  {name:<58}{shown}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
