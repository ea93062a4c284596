"""The ``cupy`` source on a real GPU: CuPy's global ``RandomState`` per device, detected,
attributed, restored and seeded, without creating a state or a CUDA context itself."""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import NO_RANDOMLY, run_with_report

cupy = pytest.importorskip("cupy")

from cupy.random import _generator  # noqa: E402

from pytest_rngguard.sources import ADVANCED, REPLACED, RESEEDED  # noqa: E402
from pytest_rngguard.sources.cupy import ENV_SEED, CupySource  # noqa: E402

#: The unit tests change CuPy's state on purpose: the plugin running them must not report it.
pytestmark = pytest.mark.allow_rng_leak("cupy", reason="the source under test")


@pytest.fixture(autouse=True)
def _cupy_state_kept() -> Iterator[None]:
    states, env = dict(_generator._random_states), os.environ.get(ENV_SEED)
    yield
    _generator._random_states = states  # what reset_states does: rebind the module's dict
    if env is None:
        os.environ.pop(ENV_SEED, None)
    else:
        os.environ[ENV_SEED] = env


@pytest.fixture
def source() -> CupySource:
    return CupySource()


def kinds(source: CupySource, before: Any, after: Any) -> list[tuple[str, str]]:
    return [(d.kind, d.detail) for d in source.classify(before, after)]


def draws() -> list[float]:
    return [*cupy.random.rand(4).get().tolist(), *cupy.random.poisson(3.0, 4).get().tolist()]


# -- the source on its own -------------------------------------------------------------------


def test_reading_and_seeding_create_no_state_and_seeding_sets_cupy_seed(
    source: CupySource,
) -> None:
    _generator._random_states = {}
    os.environ.pop(ENV_SEED, None)
    saved = source.capture()
    source.seed(5)
    assert _generator._random_states == {}
    assert os.environ[ENV_SEED] == "5"
    first = draws()  # the state created now starts from CUPY_SEED
    source.restore(saved)
    assert _generator._random_states == {}
    assert ENV_SEED not in os.environ
    source.seed(5)
    assert draws() == first
    source.restore(saved)


def test_kernel_draws_reseeds_and_replacements_are_told_apart_by_state(
    source: CupySource,
) -> None:
    cupy.random.seed(100)
    seeded = source.capture()
    cupy.random.poisson(1.0, 10)
    drawn = source.capture()
    cupy.random.seed(1)
    reseeded = source.capture()
    cupy.random.set_random_state(cupy.random.RandomState(1))
    replaced = source.capture()
    cupy.random.reset_states()
    dropped = source.capture()
    assert kinds(source, seeded, drawn) == [(ADVANCED, "cuda:0")]
    assert kinds(source, drawn, reseeded) == [(RESEEDED, "cuda:0")]
    assert kinds(source, reseeded, replaced) == [(REPLACED, "cuda:0")]
    assert kinds(source, replaced, dropped) == [(REPLACED, "cuda:0")]


def test_curand_draws_leave_nothing_readable(source: CupySource) -> None:
    """The documented limit: cuRAND's position cannot be read back."""
    cupy.random.seed(3)
    before = source.capture()
    cupy.random.rand(100)
    assert source.capture() == before


def test_restore_after_a_replacement_continues_the_old_stream_exactly(
    source: CupySource,
) -> None:
    reference = cupy.random.RandomState(3)
    reference.rand(2)
    expected = reference.rand(4).get().tolist()
    cupy.random.seed(3)
    cupy.random.rand(2)
    saved = source.capture()
    cupy.random.set_random_state(cupy.random.RandomState(9))
    cupy.random.rand(5)
    source.restore(saved)
    assert cupy.random.rand(4).get().tolist() == expected


def test_seeding_is_reproducible_and_leaves_the_old_state_untouched(source: CupySource) -> None:
    reference = cupy.random.RandomState(3)
    reference.rand(2)
    expected = reference.rand(4).get().tolist()
    cupy.random.seed(3)
    cupy.random.rand(2)
    saved = source.capture()
    results = []
    for _ in range(2):
        source.seed(7)
        results.append(draws())
        source.restore(saved)
    assert results[0] == results[1]
    assert source.capture() == saved
    assert cupy.random.rand(4).get().tolist() == expected


# -- the plugin with CuPy --------------------------------------------------------------------


def test_reports_cupy_reseeds_replacements_and_draws_with_origins_and_puts_them_back(
    pytester: pytest.Pytester, observe: Callable[[str, Any], None]
) -> None:
    cupy.random.seed(1)
    cupy.random.rand(8)  # cuRAND moves on; seeding 1 again must still be a reseed
    pytester.makepyfile(
        """
        import cupy

        BEFORE = cupy.random.get_random_state()

        def test_seeds_with_the_same_value():
            cupy.random.seed(1)

        def test_seeds_with_another_value():
            cupy.random.seed(2)

        def test_replaces_the_state():
            cupy.random.set_random_state(cupy.random.RandomState(1))

        def test_draws_with_a_cupy_kernel():
            cupy.random.poisson(1.0, 10)

        def test_draws_with_curand():
            cupy.random.rand(10)

        def test_zz_the_state_was_put_back():
            assert cupy.random.get_random_state() is BEFORE
            assert BEFORE._rk_seed == 1
        """
    )
    result, report = run_with_report(pytester, "--rngguard-strict")
    rows = sorted(
        (
            leak["nodeid"].rpartition("::")[2],
            leak["kind"],
            leak["detail"],
            (leak["origin"] or {}).get("line"),
        )
        for leak in report["leaks"]
    )
    observe("cupy leaks (strict)", [list(r) for r in rows])
    result.assert_outcomes(passed=6, warnings=4)
    assert rows == [
        ("test_draws_with_a_cupy_kernel", "advanced", "cuda:0", None),
        ("test_replaces_the_state", "replaced", "cuda:0", 12),
        ("test_seeds_with_another_value", "reseeded", "cuda:0", 9),
        ("test_seeds_with_the_same_value", "reseeded", "cuda:0", 6),
    ]
    capture = CupySource().capture
    observe("cupy capture with one state, µs", round(timeit.timeit(capture, number=2000) * 500, 2))


def test_a_reseed_of_the_second_device_names_only_that_device(
    pytester: pytest.Pytester,
) -> None:
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two CUDA devices")
    pytester.makepyfile(
        """
        import cupy

        def test_seeds_device_one():
            with cupy.cuda.Device(1):
                cupy.random.seed(5)
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=1, warnings=1)
    assert [(leak["kind"], leak["detail"]) for leak in report["leaks"]] == [("reseeded", "cuda:1")]


def test_deterministic_cupy_draws_are_reproducible_and_the_state_comes_back(
    pytester: pytest.Pytester,
) -> None:
    cupy.random.seed(1)
    # Only CuPy's own sources: this is about CuPy, and torch (loaded in this process) has a
    # reproducibility bug of its own, reproduced without a GPU.
    pytester.makeini(
        """
        [pytest]
        rngguard_sources =
            random
            numpy
            cupy
        """
    )
    pytester.makepyfile(
        """
        import cupy
        import pytest

        BEFORE = cupy.random.get_random_state()

        @pytest.mark.deterministic
        def test_draws(rngguard):
            rngguard.record("rand", cupy.random.rand(4).get())
            rngguard.record("poisson", cupy.random.poisson(3.0, 4).get())

        def test_zz_the_state_was_put_back():
            assert cupy.random.get_random_state() is BEFORE
        """
    )
    result, report = run_with_report(pytester, "--rngguard-repeat=3")
    result.assert_outcomes(passed=2)
    assert report["leaks"] == []
    assert report["not_reproducible"] == []


def test_the_plugin_creates_no_cupy_state_in_a_session_that_draws_none(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import atexit

        import cupy
        from cupy.random import _generator

        atexit.register(lambda: print(f"CUPY_STATES={len(_generator._random_states)}"))
        """
    )
    pytester.makepyfile(
        """
        import pytest
        import pytest_rngguard

        def test_plain():
            pass

        @pytest.mark.deterministic
        def test_deterministic():
            pass

        def test_library_api():
            with pytest_rngguard.isolated(), pytest_rngguard.deterministic(1):
                pass
        """
    )
    result = pytester.runpytest_subprocess(*NO_RANDOMLY, "--rngguard-repeat=2")
    result.assert_outcomes(passed=3)
    assert "CUPY_STATES=0" in result.stdout.lines
