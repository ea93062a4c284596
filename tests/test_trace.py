"""``--rngguard-trace``: the line after which a state changed, whatever changed it.

An attribute set, a C function bound to a name before the session, a seeding function called
from C: no intercepted call explains these, and the tracer names the line after which the
state differed.  Every expected line is read from the suite's own text (the line carrying an
``# origin: NAME`` comment), never written down as a number; what the test sees is the JSON
report of a real run in a fresh process.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest
from conftest import require, run, run_with_report

from pytest_rngguard.linetrace import LineTracer
from pytest_rngguard.report import TRACE_HINT, TRACED_HINT, UNTRACED_HINTS

MONITORING = sys.version_info >= (3, 12)
before_312 = pytest.mark.skipif(MONITORING, reason="3.12+ traces lines with sys.monitoring")


def marked(path: Path) -> dict[str, int]:
    """The line number of each ``# origin: NAME`` comment in a file: where the report must
    point."""
    found = {}
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = re.search(r"# origin: (\w+)", text)
        if match:
            found[match.group(1)] = number
    return found


def leaks_by_test(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    by_test: dict[str, list[dict[str, Any]]] = {}
    for leak in report["leaks"]:
        by_test.setdefault(leak["nodeid"].partition("::")[2], []).append(leak)
    return by_test


# -- the line tracer on its own --------------------------------------------------------------


def sample() -> list[int]:
    first = 1  # origin: sample_first
    second = [first]  # origin: sample_second
    return second  # origin: sample_return


def counted() -> Iterator[int]:
    yield 1  # origin: generator_yield
    after = 2  # origin: generator_after
    yield after  # origin: generator_last


@pytest.fixture
def line_tracer() -> Iterator[tuple[LineTracer, list[tuple[str, int]]]]:
    """A line tracer on ``sample`` and ``counted`` only, recording what each check names."""
    traced = {sample.__code__, counted.__code__}
    seen: list[tuple[str, int]] = []

    def check(ran: tuple[FrameType, int] | None) -> None:
        if ran is not None and ran[0].f_code in traced:
            seen.append((ran[0].f_code.co_name, ran[1]))

    def wanted(code: CodeType, frame: FrameType) -> bool:
        return code in traced

    tracer = LineTracer(wanted, check)
    if MONITORING:
        monitoring = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        free = [t for t in (3, 4, 5) if monitoring.get_tool(t) is None]
        if not free:
            pytest.skip("no sys.monitoring tool id is free")
        tool = free[0]
        monitoring.use_tool_id(tool, "test")
        monitoring.set_events(tool, tracer.monitor(tool))
        try:
            yield tracer, seen
        finally:
            monitoring.set_events(tool, 0)
            tracer.unmonitor()
            assert monitoring.get_local_events(tool, sample.__code__) == 0
            monitoring.free_tool_id(tool)
        return
    if sys.gettrace() is not None:
        pytest.skip("another trace function (coverage.py, a debugger) runs this suite")
    assert tracer.settrace() is None
    try:
        yield tracer, seen
    finally:
        tracer.unsettrace()
        assert sys.gettrace() is None


def test_each_check_names_the_line_that_ran_since_the_previous_one_returns_included(
    line_tracer: tuple[LineTracer, list[tuple[str, int]]],
) -> None:
    _, seen = line_tracer
    sample()
    lines = marked(Path(__file__))
    assert seen == [
        ("sample", lines["sample_first"]),
        ("sample", lines["sample_second"]),
        # Checked when the frame returns: a change made by its last line is its own.
        ("sample", lines["sample_return"]),
    ]


def test_a_generator_resumed_names_its_own_lines(
    line_tracer: tuple[LineTracer, list[tuple[str, int]]],
) -> None:
    _, seen = line_tracer
    assert list(counted()) == [1, 2]
    lines = marked(Path(__file__))
    assert seen == [
        ("counted", lines["generator_yield"]),  # at the yield
        ("counted", lines["generator_yield"]),  # resumed: the rest of that line
        ("counted", lines["generator_after"]),
        ("counted", lines["generator_last"]),
        ("counted", lines["generator_last"]),
    ]


@before_312
def test_the_line_tracer_gives_way_to_a_trace_function_already_there() -> None:
    if sys.gettrace() is not None:
        pytest.skip("another trace function (coverage.py, a debugger) runs this suite")

    def other(frame: FrameType, event: str, arg: object) -> None:
        return None

    tracer = LineTracer(lambda code, frame: True, lambda ran: None)
    sys.settrace(other)
    try:
        assert tracer.settrace() == (
            "another trace function is installed (sys.settrace: a debugger or coverage.py)"
        )
        assert sys.gettrace() is other
    finally:
        sys.settrace(None)
    assert not tracer.running


@before_312
def test_the_line_tracer_traces_new_threads_unless_another_tool_does() -> None:
    if sys.gettrace() is not None or threading.gettrace() is not None:
        pytest.skip("another trace function (coverage.py, a debugger) runs this suite")
    tracer = LineTracer(lambda code, frame: False, lambda ran: None)
    assert tracer.settrace() is None
    try:
        assert threading.gettrace() is sys.gettrace()
    finally:
        tracer.unsettrace()
    assert (sys.gettrace(), threading.gettrace()) == (None, None)


# -- every mechanism, end to end -------------------------------------------------------------

CONFTEST = """
    import functools

    import numpy.random
    import pytest
    # Bound before the session wraps numpy.random.seed: a Cython function no wrapper sees.
    from numpy.random import seed as early_seed

    @pytest.fixture
    def reseeds_after_yield():
        yield
        early_seed(5)  # origin: fixture_teardown

    @pytest.fixture
    def finalized(request):
        # Called by pytest, from C: no line of the test's runs after it.
        request.addfinalizer(functools.partial(early_seed, 6))
    """

HELPERS = """
    from conftest import early_seed

    def reseed_last():
        value = 3
        early_seed(value)  # origin: helper_last_line
    """

MECHANISMS = """
    import asyncio
    import functools
    import random
    import threading

    import numpy as np
    from conftest import early_seed
    from helpers import reseed_last

    def test_attribute_set():
        other = np.random.RandomState(5)
        other.rand()
        bits = np.random.mtrand._rand._bit_generator
        bits.state = other._bit_generator.state  # origin: attribute_set

    def test_random_attribute_set():
        random._inst.gauss_next = 0.5  # origin: random_attribute_set

    def test_early_bound_cython_call():
        early_seed(3)  # origin: early_bound

    def test_call_from_c():
        list(map(early_seed, [3]))  # origin: call_from_c

    def test_partial_called_from_c():
        list(map(functools.partial(early_seed), [4]))  # origin: partial_from_c

    def test_callback_called_from_c():
        list(map(lambda s: early_seed(s),  # origin: callback
                 [3]))

    def test_last_line_of_a_helper():
        reseed_last()  # origin: calls_helper
        done = True

    def test_draws_around_a_reseed():
        np.random.rand()
        early_seed(3)  # origin: reseed_between_draws
        np.random.rand()

    def test_state_put_back_by_a_later_line():
        early_seed(3)  # origin: made
        kept = np.random.mtrand._rand._bit_generator.state
        early_seed(4)
        np.random.mtrand._rand._bit_generator.state = kept

    def counted():
        yield 1
        early_seed(4)  # origin: generator
        yield 2

    def test_generator():
        for _ in counted():
            pass

    async def reseed_later():
        early_seed(9)  # origin: coroutine

    def test_coroutine():
        asyncio.run(reseed_later())

    def worker():
        early_seed(8)  # origin: thread

    def test_thread():
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()

    def test_fixture_teardown(reseeds_after_yield):
        pass

    def test_finalizer(finalized):
        pass
    """

#: Each test's leak: source, kind, and the origin's mark (None: no line can be named).
EXPECTED = {
    "test_attribute_set": ("numpy", "replaced", "attribute_set"),
    "test_random_attribute_set": ("random", "advanced", "random_attribute_set"),
    "test_early_bound_cython_call": ("numpy", "reseeded", "early_bound"),
    "test_call_from_c": ("numpy", "reseeded", "call_from_c"),
    "test_partial_called_from_c": ("numpy", "reseeded", "partial_from_c"),
    "test_callback_called_from_c": ("numpy", "reseeded", "callback"),
    "test_last_line_of_a_helper": ("numpy", "reseeded", "helper_last_line"),
    "test_draws_around_a_reseed": ("numpy", "reseeded", "reseed_between_draws"),
    "test_state_put_back_by_a_later_line": ("numpy", "reseeded", "made"),
    "test_generator": ("numpy", "reseeded", "generator"),
    "test_coroutine": ("numpy", "reseeded", "coroutine"),
    "test_thread": ("numpy", "reseeded", "thread"),
    "test_fixture_teardown": ("numpy", "reseeded", "fixture_teardown"),
    "test_finalizer": ("numpy", "reseeded", None),
}


@pytest.fixture
def mechanisms(pytester: pytest.Pytester, numpy: Any) -> dict[str, tuple[str, int]]:
    """The suite, and where each mark is: (file, line)."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(helpers=HELPERS, test_mechanisms=MECHANISMS)
    where = {}
    for name in ("conftest.py", "helpers.py", "test_mechanisms.py"):
        where.update({mark: (name, line) for mark, line in marked(pytester.path / name).items()})
    return where


def test_trace_names_the_line_of_every_mechanism(
    pytester: pytest.Pytester, mechanisms: dict[str, tuple[str, int]]
) -> None:
    result, report = run_with_report(
        pytester, "--rngguard-trace", "--rngguard-strict", subprocess=True
    )
    result.assert_outcomes(passed=len(EXPECTED), warnings=len(EXPECTED))
    leaks = leaks_by_test(report)
    assert set(leaks) == set(EXPECTED)
    for test, (source, kind, mark) in EXPECTED.items():
        (leak,) = leaks[test]
        assert (leak["source"], leak["kind"]) == (source, kind), test
        if mark is None:
            assert leak["origin"] is None, test
            continue
        origin = leak["origin"]
        assert origin is not None, test
        assert (origin["file"], origin["line"]) == mechanisms[mark], test
        assert origin["stack"][-1].startswith(f"{origin['file']}:{origin['line']} in "), test
    helper = leaks["test_last_line_of_a_helper"][0]["origin"]
    file, line = mechanisms["calls_helper"]
    assert helper["stack"] == [
        f"{file}:{line} in test_last_line_of_a_helper",
        "{}:{} in reseed_last".format(*mechanisms["helper_last_line"]),
    ]
    assert helper["function"] == "reseed_last"
    output = result.stdout.str()
    assert f"numpy reseeded during teardown ({TRACED_HINT})" in " ".join(output.split())
    assert TRACE_HINT not in output


def test_without_trace_none_of_them_has_an_origin(
    pytester: pytest.Pytester, mechanisms: dict[str, tuple[str, int]]
) -> None:
    """The same suite in the default mode: these are the changes no intercepted call
    explains (the tracer is what finds them)."""
    result, report = run_with_report(pytester, "--rngguard-strict", subprocess=True)
    result.assert_outcomes(passed=len(EXPECTED), warnings=len(EXPECTED))
    leaks = leaks_by_test(report)
    assert {test: [leak["origin"] for leak in leaks[test]] for test in EXPECTED} == {
        test: [None] for test in EXPECTED
    }
    result.stdout.fnmatch_lines([f"*numpy reseeded during call ({TRACE_HINT})*"])
    assert TRACED_HINT not in result.stdout.str()


def test_trace_names_the_line_of_a_torch_flag_set_as_an_attribute(
    pytester: pytest.Pytester,
) -> None:
    require("torch")
    pytester.makepyfile(
        test_flags="""
        import torch

        def test_benchmark():
            torch.backends.cudnn.benchmark = True  # origin: benchmark

        def test_two_flags():
            torch.backends.cudnn.deterministic = True  # origin: deterministic
            unrelated = 1
            torch.backends.cudnn.benchmark = True  # origin: benchmark_again
            unrelated = 2
        """
    )
    lines = marked(pytester.path / "test_flags.py")
    _, report = run_with_report(pytester, "--rngguard-trace", subprocess=True)
    found = {
        (leak["nodeid"], leak["detail"]): (leak["kind"], leak["origin"]["line"])
        for leak in report["leaks"]
    }
    assert found == {
        ("test_flags.py::test_benchmark", "cudnn.benchmark"): ("changed", lines["benchmark"]),
        ("test_flags.py::test_two_flags", "cudnn.deterministic"): (
            "changed",
            lines["deterministic"],
        ),
        ("test_flags.py::test_two_flags", "cudnn.benchmark"): (
            "changed",
            lines["benchmark_again"],
        ),
    }


# -- beside other tools, and what is left afterwards -----------------------------------------

EARLY_CONFTEST = """
    from numpy.random import seed as early_seed
    """


@before_312
def test_a_test_that_removes_the_line_tracer_is_named_and_gets_it_back(
    pytester: pytest.Pytester, numpy: Any
) -> None:
    pytester.makeconftest(EARLY_CONFTEST)
    pytester.makepyfile(
        test_removes="""
        import sys

        from conftest import early_seed

        def test_removes_every_trace_function():
            sys.settrace(None)

        def test_reseeds_afterwards():
            early_seed(3)  # origin: afterwards
        """
    )
    result, report = run_with_report(pytester, "--rngguard-trace", subprocess=True)
    result.assert_outcomes(passed=2, warnings=2)
    result.stdout.fnmatch_lines(
        [
            "*test_removes.py::test_removes_every_trace_function",
            "*rngguard: this test removed the --rngguard-trace line tracer (sys.settrace); "
            "lines after that were not traced; it is installed again",
        ]
    )
    (leak,) = report["leaks"]
    assert leak["nodeid"] == "test_removes.py::test_reseeds_afterwards"
    assert leak["origin"]["line"] == marked(pytester.path / "test_removes.py")["afterwards"]


@before_312
def test_a_trace_function_a_test_leaves_installed_is_left_alone_and_named(
    pytester: pytest.Pytester, numpy: Any
) -> None:
    pytester.makeconftest(EARLY_CONFTEST)
    pytester.makepyfile(
        test_leaves="""
        import sys

        from conftest import early_seed

        def theirs(frame, event, arg):
            return None

        def test_installs_its_own():
            sys.settrace(theirs)

        def test_still_theirs():
            assert sys.gettrace() is theirs
            early_seed(3)

        def test_removes_it():
            sys.settrace(None)

        def test_traced_again():
            early_seed(4)  # origin: traced_again
        """
    )
    result, report = run_with_report(pytester, "--rngguard-trace", subprocess=True)
    result.assert_outcomes(passed=4, warnings=4)
    result.stdout.fnmatch_lines(
        [
            "*test_leaves.py::test_installs_its_own",
            "*rngguard: this test left another trace function installed (sys.settrace); the "
            "--rngguard-trace line tracer cannot run beside it and is off until it is removed",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*test_leaves.py::test_removes_it",
            "*rngguard: this test removed the --rngguard-trace line tracer (sys.settrace)*",
        ]
    )
    origins = {leak["nodeid"].partition("::")[2]: leak["origin"] for leak in report["leaks"]}
    assert origins["test_still_theirs"] is None
    assert (
        origins["test_traced_again"]["line"]
        == marked(pytester.path / "test_leaves.py")["traced_again"]
    )
    text = " ".join(result.stdout.str().split())
    assert f"numpy reseeded during call ({UNTRACED_HINTS['calls']})" in text


COUNTING_CONFTEST = """
    import sys

    from numpy.random import seed as early_seed

    LINES = []

    def local(frame, event, arg):
        if event == "line":
            LINES.append(frame.f_lineno)
        return local

    def count(frame, event, arg):
        return local if frame.f_code.co_filename.endswith("test_counted.py") else None

    sys.settrace(count)

    def pytest_unconfigure(config):
        with open("lines.txt", "w") as out:
            out.write(f"{LINES} {sys.gettrace() is count}")
    """

COUNTED = """
    from conftest import early_seed

    def test_counted():
        total = 0
        for number in range(10):
            total += number
        early_seed(3)  # origin: counted
    """


def test_a_trace_function_installed_before_the_session_sees_every_line(
    pytester: pytest.Pytester, numpy: Any
) -> None:
    """Coverage.py or a debugger started before pytest: on 3.12 and later the tracer runs
    beside it; before, its line part gives way, with a warning.  Either way that function
    sees the very lines it sees without the plugin."""
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(test_counted=COUNTED)
    run(pytester, "-p", "no:rngguard", subprocess=True).assert_outcomes(passed=1)
    alone = (pytester.path / "lines.txt").read_text()
    assert alone.endswith(" True")  # and still installed at the end
    assert len(alone) > len("[] True")
    result, report = run_with_report(pytester, "--rngguard-trace", subprocess=True)
    result.assert_outcomes(passed=1)
    assert (pytester.path / "lines.txt").read_text() == alone
    (leak,) = report["leaks"]
    if MONITORING:
        assert leak["origin"]["line"] == marked(pytester.path / "test_counted.py")["counted"]
        assert "PytestConfigWarning" not in result.stdout.str()
        return
    result.stdout.fnmatch_lines(
        [
            "*PytestConfigWarning: rngguard: --rngguard-trace watches no lines: another trace "
            "function is installed (sys.settrace: a debugger or coverage.py) and the tracer "
            "would replace it; changes that no call explains have no origin",
        ]
    )
    assert leak["origin"] is None


def test_trace_leaves_no_trace_function_profiler_or_monitoring_tool_behind(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_nothing="""
        import random

        def test_reseeds():
            random.seed(3)
        """
    )
    tools = [sys.monitoring.get_tool(t) for t in range(6)] if MONITORING else []  # type: ignore[attr-defined,unused-ignore]
    before = (sys.gettrace(), sys.getprofile(), threading.gettrace(), tools)
    result = run(pytester, "--rngguard-trace", "-p", "no:xdist")
    result.assert_outcomes(passed=1, warnings=1)
    tools = [sys.monitoring.get_tool(t) for t in range(6)] if MONITORING else []  # type: ignore[attr-defined,unused-ignore]
    assert (sys.gettrace(), sys.getprofile(), threading.gettrace(), tools) == before


def test_trace_never_loads_numpy_random(pytester: pytest.Pytester) -> None:
    """NumPy 2 loads ``numpy.random`` lazily: a suite that never uses it does not get it."""
    pytester.makeconftest("import numpy\n")
    pytester.makepyfile(
        test_lazy="""
        import sys

        import numpy

        def test_numpy_random_is_not_loaded():
            lazy = int(numpy.__version__.split(".")[0]) >= 2
            assert ("numpy.random" in sys.modules) is not lazy
        """
    )
    run(pytester, "--rngguard-trace", subprocess=True).assert_outcomes(passed=1)


def test_with_trace_pytest_randomly_and_hypothesis_still_leak_nothing(
    pytester: pytest.Pytester, numpy: Any
) -> None:
    """Their reseeds and Hypothesis's put-backs are nobody's leak, with every line traced
    too; the test's own early-bound reseed still is, at its line."""
    require("pytest_randomly")
    require("hypothesis")
    pytester.makeconftest(EARLY_CONFTEST)
    pytester.makepyfile(
        test_plugins="""
        import random

        import numpy as np
        from conftest import early_seed
        from hypothesis import given, settings, strategies as st

        @settings(max_examples=10, database=None)
        @given(st.integers(0, 2**32 - 1))
        def test_property(seed):
            early_seed(seed)
            random.random()
            np.random.rand()

        def test_draws():
            random.random()
            np.random.rand()

        def test_leaks():
            early_seed(17)  # origin: own
        """
    )
    result, report = run_with_report(
        pytester,
        "-p",
        "randomly",
        "-p",
        "hypothesispytest",
        "--randomly-seed=3",
        "--rngguard-trace",
        subprocess=True,
    )
    result.assert_outcomes(passed=3, warnings=1)
    assert [
        (leak["nodeid"], leak["source"], leak["kind"], leak["origin"]["line"])
        for leak in report["leaks"]
    ] == [
        (
            "test_plugins.py::test_leaks",
            "numpy",
            "reseeded",
            marked(pytester.path / "test_plugins.py")["own"],
        )
    ]


def test_trace_sees_a_wrapped_call_once(pytester: pytest.Pytester) -> None:
    """``random.seed`` calls ``super().seed``: the call tracer must not count that as a
    second, unexplained reseed (it made a fork that puts the state back look like one)."""
    pytester.makepyfile(
        test_fork="""
        import random

        def test_draws_and_forks():
            random.random()
            saved = random.getstate(); random.seed(2); random.random(); random.setstate(saved)
        """
    )
    for args in ((), ("--rngguard-trace",)):
        result, report = run_with_report(pytester, *args, "-p", "no:xdist")
        result.assert_outcomes(passed=1)
        assert report["leaks"] == [], args


def test_with_trace_an_ignored_module_that_sets_a_state_unseen_is_named_by_its_caller(
    pytester: pytest.Pytester, numpy: Any
) -> None:
    """``rngguard_ignore`` excuses the calls the plugin sees; a change an ignored module
    makes without one is the test's, in both modes, and the tracer names the line that
    called into that module."""
    pytester.makeconftest(EARLY_CONFTEST)
    pytester.makeini("[pytest]\nrngguard_ignore = vendored_*\n")
    pytester.makepyfile(
        vendored_lib="""
        import numpy as np
        from conftest import early_seed

        def seed_seen(value):
            np.random.seed(value)

        def seed_unseen(value):
            early_seed(value)
        """,
        test_vendored="""
        import vendored_lib

        def test_seen():
            vendored_lib.seed_seen(3)

        def test_unseen():
            vendored_lib.seed_unseen(3)  # origin: caller
        """,
    )
    line = marked(pytester.path / "test_vendored.py")["caller"]
    for args, origin in (((), None), (("--rngguard-trace",), ("test_vendored.py", line))):
        _, report = run_with_report(pytester, *args, subprocess=True)
        assert [
            (leak["nodeid"], leak["origin"] and (leak["origin"]["file"], leak["origin"]["line"]))
            for leak in report["leaks"]
        ] == [("test_vendored.py::test_unseen", origin)], args


def test_under_xdist_the_summary_says_what_the_workers_traced(
    pytester: pytest.Pytester, numpy: Any
) -> None:
    require("xdist")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_workers="""
        from conftest import early_seed

        def test_finalizer(finalized):
            pass

        def test_early_bound():
            early_seed(3)  # origin: early_bound
        """
    )
    line = marked(pytester.path / "test_workers.py")["early_bound"]
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-n", "2", "--rngguard-trace")
    result.assert_outcomes(passed=2, warnings=2)
    text = " ".join(result.stdout.str().split())
    finalizer = f"test_workers.py::test_finalizer: numpy reseeded during teardown ({TRACED_HINT})"
    assert finalizer in text
    assert (
        f"test_workers.py::test_early_bound: numpy reseeded during call by test_workers.py:{line}"
        in text
    )
