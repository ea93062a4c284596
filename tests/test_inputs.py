"""What a user can hand the plugin (ini values, sources of their own, records, profilers)
is either honoured or refused with a message naming it, never an internal error."""

from __future__ import annotations

import math
import sys
from types import ModuleType
from typing import Any

import pytest
from conftest import leak_rows, require, run, run_with_report

from pytest_rngguard.reproducibility import Recorder, digest, first_difference, normalize

# -- ini booleans ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["rngguard_strict", "rngguard_trace"])
def test_a_bad_boolean_in_the_ini_file_is_a_usage_error_naming_the_key_and_the_values(
    pytester: pytest.Pytester, key: str
) -> None:
    pytester.makeini(f"[pytest]\n{key} = maybe\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: rngguard: {key} (ini) is not a boolean (invalid truth value 'maybe'): "
            f"use true or false (or yes/no, on/off, 1/0)"
        ]
    )
    result.stderr.no_fnmatch_line("*Traceback*")


@pytest.mark.parametrize("value", ["yes", "On", "1", "true"])
def test_every_spelling_of_true_pytest_accepts_turns_strict_on(
    pytester: pytest.Pytester, value: str
) -> None:
    pytester.makeini(f"[pytest]\nrngguard_strict = {value}\n")
    pytester.makepyfile("def test_nothing(): pass")
    run(pytester).stdout.fnmatch_lines(["rngguard: mode=warn strict=yes *"])


# -- sources from entry points ---------------------------------------------------------------

JITTER_SOURCE = """
    from pytest_rngguard.sources import ModuleSource, Difference

    STATE = {"value": 1}

    class JitterSource(ModuleSource):
        name = "jitter"
        module = "jitter_source"

        def capture(self):
            return STATE["value"]

        def restore(self, state):
            STATE["value"] = state

        def seed(self, seed):
            STATE["value"] = seed

        def classify(self, before, after):
            return [Difference("reseeded")]
    """


def _install_jitter(pytester: pytest.Pytester) -> None:
    """A distribution as pip installs one: its module and a dist-info whose
    entry_points.txt declares the source."""
    pytester.makepyfile(jitter_source=JITTER_SOURCE)
    info = pytester.path / "jitter_source-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: jitter-source\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[pytest_rngguard.sources]\njitter = jitter_source:JitterSource\n"
    )
    pytester.syspathinsert()


LEAKS_JITTER = """
    import pytest
    import jitter_source

    @pytest.mark.allow_rng_leak("jitter", reason="it is the point")
    def test_allowed():
        jitter_source.STATE["value"] = 5

    def test_reported():
        jitter_source.STATE["value"] = 6
    """


def test_allow_rng_leak_accepts_a_source_from_an_entry_point(pytester: pytest.Pytester) -> None:
    _install_jitter(pytester)
    pytester.makepyfile(test_jitter=LEAKS_JITTER)
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=2, warnings=1)
    assert leak_rows(report, "nodeid", "source") == [("test_jitter.py::test_reported", "jitter")]
    result.stdout.no_fnmatch_line("*not a source*")


def test_rngguard_sources_accepts_a_source_from_an_entry_point(pytester: pytest.Pytester) -> None:
    _install_jitter(pytester)
    pytester.makeini("[pytest]\nrngguard_sources = jitter\n")
    pytester.makepyfile(
        test_jitter="""
        import random
        import jitter_source

        def test_reseeds_both():
            random.seed(1)
            jitter_source.STATE["value"] = 6
        """
    )
    result, report = run_with_report(pytester)
    assert result.ret == pytest.ExitCode.OK
    assert leak_rows(report, "source") == [("jitter",)]


def test_rngguard_sources_still_refuses_an_unknown_name_listing_entry_point_sources(
    pytester: pytest.Pytester,
) -> None:
    _install_jitter(pytester)
    pytester.makeini("[pytest]\nrngguard_sources = jiter\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: rngguard: rngguard_sources (ini)='jiter' is not valid: known sources are *jitter"]
    )


# -- rngguard_sources narrows checking, not seeding ----------------------------------------


def test_the_deterministic_marker_seeds_sources_that_rngguard_sources_leaves_unchecked(
    pytester: pytest.Pytester, numpy: ModuleType, torch: ModuleType
) -> None:
    pytester.makeini("[pytest]\nrngguard_sources = numpy\n")
    pytester.makepyfile(
        """
        import random

        import numpy as np
        import pytest
        import torch

        BEFORE = {}

        def test_before():
            BEFORE["random"] = random.getstate()
            BEFORE["torch"] = torch.get_rng_state()

        @pytest.mark.deterministic
        def test_seeded(rngguard_seed):
            assert random.random() == random.Random(rngguard_seed).random()
            expected = torch.rand(3, generator=torch.Generator().manual_seed(rngguard_seed))
            assert torch.equal(torch.rand(3), expected)
            np.random.rand()

        def test_after():
            assert random.getstate() == BEFORE["random"]
            assert torch.equal(torch.get_rng_state(), BEFORE["torch"])
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=3)
    assert report["leaks"] == []
    result.stdout.fnmatch_lines(["rngguard: mode=warn strict=no seed=0 sources=numpy"])


def test_the_marker_seeds_torch_first_imported_in_the_test_though_unchecked(
    pytester: pytest.Pytester,
) -> None:
    require("torch")
    pytester.makeini("[pytest]\nrngguard_sources = env\n")
    pytester.makepyfile(
        """
        import sys

        import pytest

        STATES = []

        @pytest.mark.deterministic(seed=3)
        def test_imports_torch():
            assert "torch" not in sys.modules
            import torch

            STATES.append(torch.get_rng_state())
            expected = torch.rand(3, generator=torch.Generator().manual_seed(3))
            assert torch.equal(torch.rand(3), expected)

        def test_after():
            import torch

            # Back to the state its import made, not left as the seeded test left it.
            assert not torch.equal(torch.get_rng_state(), STATES[0])
            assert torch.initial_seed() != 3
        """
    )
    run(pytester, alone=True).assert_outcomes(passed=2)


# -- records the comparison cannot read ------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*(prototype|[Ss]parse).*:UserWarning")
@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda t: t.sparse_coo_tensor([[0, 1]], [1.0, 2.0], (3,)), "a sparse tensor"),
        (lambda t: t.eye(2).to_sparse_csr(), None),
        (lambda t: t.zeros(2, device="meta"), "a meta tensor"),
        (lambda t: t.nested.nested_tensor([t.zeros(2), t.zeros(3)]), "a nested tensor"),
    ],
    ids=["sparse", "sparse_csr", "meta", "nested"],
)
def test_recording_a_tensor_without_plain_data_names_the_record_and_the_path(
    torch: ModuleType, make: Any, what: str | None
) -> None:
    value = make(torch)
    what = what or f"a {str(value.layout).removeprefix('torch.')} tensor"
    with pytest.raises(TypeError) as caught:
        Recorder().record("x", [{"w": value}])
    assert str(caught.value) == (
        f"record 'x': cannot record {what} at [0]['w']; record a dense CPU copy "
        f"(tensor.to_dense(), torch.nested.to_padded_tensor()) or numbers derived from it"
    )


def test_recording_a_meta_tensor_itself_names_the_record(torch: ModuleType) -> None:
    with pytest.raises(TypeError, match=r"^record 'x': cannot record a meta tensor;"):
        Recorder().record("x", torch.zeros(2, device="meta"))


def test_recording_a_list_that_contains_itself_names_where_it_recurs() -> None:
    a: list[Any] = []
    a.append(a)
    with pytest.raises(TypeError) as caught:
        Recorder().record("x", {"k": a})
    assert str(caught.value) == (
        "record 'x': cannot record a list that contains itself at ['k'][0]"
    )


def test_a_value_shared_twice_is_not_mistaken_for_recursion() -> None:
    shared = [1.0, 2.0]
    recorder = Recorder()
    recorder.record("x", [shared, shared, {"a": shared}])
    copies = [[1.0, 2.0], [1.0, 2.0], {"a": [1.0, 2.0]}]
    assert first_difference(recorder.records["x"], normalize(copies), "x") is None


def test_assert_reproducible_names_the_result_path_of_a_recursive_value() -> None:
    from pytest_rngguard import assert_reproducible

    a: list[Any] = []
    a.append(a)
    with pytest.raises(
        TypeError, match=r"^result: cannot compare a list that contains itself at \[0\]$"
    ):
        assert_reproducible(lambda: a)


# -- long doubles ----------------------------------------------------------------------------


def _with_padding(numpy: ModuleType, values: list[Any], fill: int) -> Any:
    """Long doubles equal to ``values`` whose padding bytes (x87's 80 bits in 16) are ``fill``."""
    array = numpy.array(values, dtype=numpy.longdouble)
    width = array.dtype.itemsize
    used = 10
    raw = bytearray(array.tobytes())
    for start in range(0, len(raw), width):
        raw[start + used : start + width] = bytes([fill]) * (width - used)
    return numpy.frombuffer(bytes(raw), dtype=numpy.longdouble).copy()


@pytest.fixture
def x87(numpy: ModuleType) -> None:
    info = numpy.finfo(numpy.longdouble)
    if info.nmant != 63 or numpy.dtype(numpy.longdouble).itemsize <= 10:
        pytest.skip("long double here is not x87's 80-bit format with padding")


@pytest.mark.usefixtures("x87")
def test_equal_long_doubles_with_different_padding_are_the_same(numpy: ModuleType) -> None:
    # 2**-16400 is below double's range: long doubles are not compared as doubles.
    values = [1.5, -0.0, math.inf, math.nan, numpy.longdouble(2) ** -16400]
    a = _with_padding(numpy, values, 0x00)
    b = _with_padding(numpy, values, 0xAB)
    assert a.tobytes() != b.tobytes()
    assert first_difference(normalize(a), normalize(b), "value") is None
    assert digest(normalize(a)) == digest(normalize(b))
    assert first_difference(normalize(a[0]), normalize(b[0]), "value") is None
    complex_a = a[:2].astype(numpy.clongdouble)
    complex_b = b[:2].astype(numpy.clongdouble)
    assert first_difference(normalize(complex_a), normalize(complex_b), "value") is None


@pytest.mark.usefixtures("x87")
def test_long_doubles_that_differ_in_the_last_bit_or_the_sign_of_zero_still_differ(
    numpy: ModuleType,
) -> None:
    one = numpy.longdouble(1)
    a = numpy.array([one, 0.0], dtype=numpy.longdouble)
    b = numpy.array([numpy.nextafter(one, numpy.longdouble(2)), 0.0], dtype=numpy.longdouble)
    assert first_difference(normalize(a), normalize(b), "value") is not None
    assert digest(normalize(a)) != digest(normalize(b))
    zeros = normalize(numpy.array([0.0], dtype=numpy.longdouble))
    minus = normalize(numpy.array([-0.0], dtype=numpy.longdouble))
    assert first_difference(zeros, minus, "value") is not None
    tiny = numpy.array([numpy.longdouble(2) ** -16400], dtype=numpy.longdouble)
    assert first_difference(normalize(tiny), normalize(tiny * 2), "value") is not None
    huge = numpy.array([numpy.finfo(numpy.longdouble).max], dtype=numpy.longdouble)
    assert first_difference(normalize(huge), normalize(huge / 2), "value") is not None


def test_a_reproducibility_run_with_long_doubles_that_differ_only_in_padding_passes(
    pytester: pytest.Pytester, numpy: ModuleType, x87: None
) -> None:
    pytester.makepyfile(
        """
        import itertools

        import numpy as np
        import pytest

        FILL = itertools.count(1)

        @pytest.mark.deterministic
        def test_sums(rngguard):
            value = np.array([1.5], dtype=np.longdouble)
            raw = bytearray(value.tobytes())
            raw[10:] = bytes([next(FILL)]) * (len(raw) - 10)
            rngguard.record("sum", np.frombuffer(bytes(raw), dtype=np.longdouble))
        """
    )
    result, report = run_with_report(pytester, "--rngguard-repeat=3")
    result.assert_outcomes(passed=1)
    assert report["not_reproducible"] == []


# -- --rngguard-trace beside profilers ------------------------------------------------------

REMOVES_PROFILE = """
    import random
    import sys

    def test_removes_every_profiler():
        sys.setprofile(None)

    def test_reseeds_through_the_generator_object():
        random._inst.seed(3)
    """


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ traces with sys.monitoring")
def test_trace_comes_back_with_a_warning_after_a_test_removed_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_profile=REMOVES_PROFILE)
    before = sys.getprofile()
    result, report = run_with_report(pytester, "--rngguard-trace", "-p", "no:xdist")
    assert sys.getprofile() is before
    result.assert_outcomes(passed=2, warnings=2)
    result.stdout.fnmatch_lines(
        [
            "*test_profile.py::test_removes_every_profiler*",
            "*rngguard: this test removed the --rngguard-trace tracer (sys.setprofile); "
            "origins after that were not traced; it is installed again",
        ]
    )
    (leak,) = report["leaks"]
    assert leak["nodeid"] == "test_profile.py::test_reseeds_through_the_generator_object"
    assert leak["origin"]["function"] == "test_reseeds_through_the_generator_object"


PROFILED_CONFTEST = """
    import cProfile
    import pstats

    PROFILER = cProfile.Profile()
    PROFILER.enable()

    def pytest_unconfigure(config):
        PROFILER.disable()
        calls = sum(
            stats[1] for key, stats in pstats.Stats(PROFILER).stats.items() if key[2] == "work"
        )
        with open("calls.txt", "w") as out:
            out.write(str(calls))
    """

PROFILED_TEST = """
    def work():
        return 1

    def test_works():
        for _ in range(50):
            work()
    """


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ traces with sys.monitoring")
def test_trace_leaves_a_profiler_installed_before_the_session_alone_and_says_so(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(PROFILED_CONFTEST)
    pytester.makepyfile(test_profiled=PROFILED_TEST)
    result = run(pytester, "--rngguard-trace", subprocess=True)
    result.assert_outcomes(passed=1)
    assert (pytester.path / "calls.txt").read_text() == "50"
    result.stdout.fnmatch_lines(
        [
            "*PytestConfigWarning: rngguard: --rngguard-trace watches no calls: another "
            "profiler is installed (sys.setprofile) and the tracer would replace it; origins "
            "are still found from the lines that ran",
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ traces with sys.monitoring")
def test_a_profiler_a_test_starts_gets_every_call_and_the_test_is_named(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_profiled="""
        import cProfile
        import pstats

        def work():
            return 1

        def test_profiles_itself(tmp_path):
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(50):
                work()
            profiler.disable()
            calls = [s[1] for k, s in pstats.Stats(profiler).stats.items() if k[2] == "work"]
            assert calls == [50]
        """
    )
    result = run(pytester, "--rngguard-trace", "-p", "no:xdist")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*rngguard: this test removed the --rngguard-trace tracer (sys.setprofile)*"]
    )
