"""Each built-in source on its own: capture and restore give back the exact state, and
classify names the kind of change (and the device, variable or flag where there are several).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rngguard.sources import ADVANCED, CHANGED, REPLACED, RESEEDED, Difference, Source
from pytest_rngguard.sources.env import DEFAULT_VARIABLES, EnvSource, read_environ
from pytest_rngguard.sources.numpy import NumpySource
from pytest_rngguard.sources.python_random import PythonRandomSource
from pytest_rngguard.sources.torch import TorchSource
from pytest_rngguard.sources.torch_cuda import QUEUED, CudaState, TorchCudaSource
from pytest_rngguard.sources.torch_flags import TorchFlagsSource

try:
    import torch
except ImportError:  # the 3.10, 3.12 and 3.13 CI environments have no torch
    torch = None  # type: ignore[assignment]

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

#: These tests change the global generators on purpose; the plugin running this suite must not
#: report them (the fixture below puts everything back).
pytestmark = pytest.mark.allow_rng_leak(
    "random", "numpy", "torch", "torch.cuda", "torch.flags", reason="the sources under test"
)


def legacy_numpy_state() -> Any:
    """NumPy's global state, the legacy tuple it is at run time (its stubs say a dict)."""
    return np.random.get_state()


@pytest.fixture(autouse=True)
def _global_state_kept() -> Iterator[None]:
    """Put the generators and flags back with the libraries' own API (not the code under
    test), so no test sees another's."""
    python, numpy_state = random.getstate(), legacy_numpy_state()
    torch_state = torch.get_rng_state() if torch is not None else None
    flags = flags_now() if torch is not None else None
    yield
    if random.getstate() != python:
        random.setstate(python)
    if not numpy_state_equal(np.random.get_state(), numpy_state):
        np.random.set_state(numpy_state)
    if torch_state is not None and not torch.equal(torch.get_rng_state(), torch_state):
        torch.set_rng_state(torch_state)
    if flags is not None and flags_now() != flags:
        set_flags_directly(flags)


def kinds(differences: list[Difference]) -> list[str]:
    return [d.kind for d in differences]


def test_every_builtin_source_implements_the_protocol() -> None:
    for source in (
        PythonRandomSource(),
        NumpySource(),
        TorchSource(),
        TorchCudaSource(),
        EnvSource(),
        TorchFlagsSource(),
    ):
        assert isinstance(source, Source)
        if torch is None and source.name.startswith("torch"):
            assert source.available() is False  # and checking did not fail
        else:
            assert source.available() is True or source.name == "torch.cuda"


# -- random ----------------------------------------------------------------------------------

python_draws = st.lists(
    st.one_of(
        st.tuples(st.just("random")),
        st.tuples(st.just("gauss")),
        st.tuples(st.just("getrandbits"), st.integers(1, 30_000)),
        st.tuples(st.just("randrange"), st.integers(1, 2**80)),
        st.tuples(st.just("shuffle"), st.integers(0, 50)),
    ),
    max_size=10,
)


def draw_random(draws: list[tuple[Any, ...]]) -> None:
    for name, *args in draws:
        if name == "gauss":
            random.gauss(0.0, 1.0)
        elif name == "shuffle":
            random.shuffle(list(range(args[0])))
        else:
            getattr(random, name)(*args)


@settings(max_examples=40, deadline=None)
@given(draws=python_draws, more=python_draws)
def test_random_restore_returns_the_exact_state_with_the_cached_gaussian(
    draws: list[tuple[Any, ...]], more: list[tuple[Any, ...]]
) -> None:
    source = PythonRandomSource()
    draw_random(draws)
    state, expected = source.capture(), random.getstate()
    following = [random.gauss(0.0, 1.0) for _ in range(3)]
    draw_random(more)
    source.restore(state)
    assert random.getstate() == expected  # (version, words and position, gauss_next)
    assert source.capture() == state
    assert [random.gauss(0.0, 1.0) for _ in range(3)] == following


@settings(max_examples=40, deadline=None)
@given(draws=python_draws.filter(bool))
def test_random_draws_are_advanced(draws: list[tuple[Any, ...]]) -> None:
    source = PythonRandomSource()
    before = source.capture()
    draw_random(draws)
    after = source.capture()
    if after != before:  # shuffling nothing draws nothing
        assert kinds(source.classify(before, after)) == [ADVANCED]


def test_random_using_only_the_cached_gaussian_is_advanced() -> None:
    source = PythonRandomSource()
    random.gauss(0.0, 1.0)
    before = source.capture()
    random.gauss(0.0, 1.0)  # the second of the pair: no new words are drawn
    after = source.capture()
    assert after != before
    assert kinds(source.classify(before, after)) == [ADVANCED]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(-(2**70), 2**70) | st.text(max_size=20))
def test_random_seed_is_reseeded(seed: int | str) -> None:
    source = PythonRandomSource()
    random.random()
    before = source.capture()
    random.seed(seed)
    assert kinds(source.classify(before, source.capture())) == [RESEEDED]


def test_random_setstate_with_a_foreign_state_is_replaced() -> None:
    source = PythonRandomSource()
    foreign = random.Random("elsewhere")
    foreign.random()
    before = source.capture()
    random.setstate(foreign.getstate())
    assert kinds(source.classify(before, source.capture())) == [REPLACED]


def test_random_seen_for_the_first_time_is_reported_only_when_freshly_seeded() -> None:
    source = PythonRandomSource()
    random.seed(3)
    assert kinds(source.classify(None, source.capture())) == [RESEEDED]
    random.random()
    assert source.classify(None, source.capture()) == []


def test_random_restore_undoes_a_reseed() -> None:
    source = PythonRandomSource()
    state = source.capture()
    random.seed(99)
    source.restore(state)
    assert source.capture() == state


# -- numpy -----------------------------------------------------------------------------------

numpy_draws = st.lists(
    st.one_of(
        st.tuples(st.just("rand"), st.integers(1, 2_000)),
        st.tuples(st.just("randint"), st.integers(2, 2**40), st.integers(1, 300)),
        st.tuples(st.just("normal"), st.integers(1, 7)),
        st.tuples(st.just("standard_normal")),
    ),
    max_size=6,
)


def draw_numpy(draws: list[tuple[Any, ...]]) -> None:
    for name, *args in draws:
        if name == "rand":
            np.random.rand(args[0])
        elif name == "randint":
            np.random.randint(0, args[0], size=args[1], dtype=np.int64)
        elif name == "normal":
            np.random.normal(size=args[0])
        else:
            np.random.standard_normal()


def numpy_state_equal(a: Any, b: Any) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


@settings(max_examples=40, deadline=None)
@given(draws=numpy_draws, more=numpy_draws)
def test_numpy_restore_returns_the_exact_state_with_the_cached_gaussian(
    draws: list[tuple[Any, ...]], more: list[tuple[Any, ...]]
) -> None:
    source = NumpySource()
    draw_numpy(draws)
    state, expected = source.capture(), np.random.get_state()
    following = np.random.standard_normal(3)
    draw_numpy(more)
    source.restore(state)
    assert numpy_state_equal(np.random.get_state(), expected)  # incl. has_gauss, gauss
    assert source.capture() == state
    assert np.random.standard_normal(3).tobytes() == following.tobytes()


def test_numpy_restore_brings_back_a_pending_gaussian() -> None:
    source = NumpySource()
    np.random.seed(4)
    np.random.standard_normal()  # computes a pair, caches the second
    assert legacy_numpy_state()[3] == 1
    state = source.capture()
    cached = np.random.standard_normal()
    np.random.standard_normal()
    source.restore(state)
    assert legacy_numpy_state()[3] == 1
    assert np.random.standard_normal() == cached


@settings(max_examples=30, deadline=None)
@given(draws=numpy_draws.filter(bool))
def test_numpy_draws_are_advanced(draws: list[tuple[Any, ...]]) -> None:
    source = NumpySource()
    before = source.capture()
    draw_numpy(draws)
    assert kinds(source.classify(before, source.capture())) == [ADVANCED]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_numpy_seed_is_reseeded(seed: int) -> None:
    source = NumpySource()
    np.random.rand()
    before = source.capture()
    np.random.seed(seed)
    assert kinds(source.classify(before, source.capture())) == [RESEEDED]


def test_numpy_set_state_with_a_foreign_state_is_replaced() -> None:
    source = NumpySource()
    foreign = np.random.RandomState(123)
    foreign.rand(5)
    before = source.capture()
    np.random.set_state(foreign.get_state())
    assert kinds(source.classify(before, source.capture())) == [REPLACED]


def test_numpy_seen_for_the_first_time_is_reported_only_when_seeded_by_a_user() -> None:
    source = NumpySource()
    np.random.set_state(np.random.RandomState().get_state())  # as NumPy starts at import
    assert source.classify(None, source.capture()) == []
    np.random.seed(3)
    assert kinds(source.classify(None, source.capture())) == [RESEEDED]


def test_numpy_default_rng_generators_are_not_the_source() -> None:
    source = NumpySource()
    before = source.capture()
    np.random.default_rng(5).random(100)
    assert source.capture() == before


@settings(max_examples=25, deadline=None)
@given(low=st.integers(0, 2**32 - 1), high=st.integers(1, 2**32 - 1))
def test_numpy_seeds_beyond_32_bits_never_share_a_stream_with_a_smaller_one(
    low: int, high: int
) -> None:
    source = NumpySource()
    source.seed(low)
    small = np.random.rand(4)
    source.seed(low + high * 2**32)
    large = np.random.rand(4)
    source.seed(low + high * 2**32)
    assert np.random.rand(4).tobytes() == large.tobytes()  # still a seed: the same stream
    assert large.tobytes() != small.tobytes()


# -- torch -----------------------------------------------------------------------------------

torch_draws = st.lists(
    st.one_of(
        st.tuples(st.just("rand"), st.integers(1, 3_000)),
        st.tuples(st.just("randn"), st.integers(1, 40)),
        st.tuples(st.just("randn64"), st.integers(1, 40)),
        st.tuples(st.just("randint"), st.integers(2, 2**40), st.integers(1, 300)),
        st.tuples(st.just("randperm"), st.integers(1, 300)),
    ),
    max_size=6,
)


def draw_torch(draws: list[tuple[Any, ...]]) -> None:
    for name, *args in draws:
        if name == "rand":
            torch.rand(args[0])
        elif name == "randn":
            torch.randn(args[0])
        elif name == "randn64":
            torch.randn(args[0], dtype=torch.float64)
        elif name == "randint":
            torch.randint(0, args[0], (args[1],))
        else:
            torch.randperm(args[0])


@needs_torch
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), draws=torch_draws, more=torch_draws)
def test_torch_restore_returns_the_exact_state_with_the_cached_normals(
    seed: int, draws: list[tuple[Any, ...]], more: list[tuple[Any, ...]]
) -> None:
    source = TorchSource()
    torch.manual_seed(seed)
    draw_torch(draws)
    state, expected = source.capture(), torch.get_rng_state()
    following = torch.randn(3, dtype=torch.float64)
    draw_torch(more)
    source.restore(state)
    assert torch.equal(torch.get_rng_state(), expected)
    assert source.capture() == state
    assert torch.equal(torch.randn(3, dtype=torch.float64), following)


@needs_torch
def test_torch_restore_accepts_the_serialised_state() -> None:
    source = TorchSource()
    expected = torch.get_rng_state()
    serialised = bytes(expected.numpy().tobytes())
    torch.manual_seed(1)
    source.restore(serialised)
    assert torch.equal(torch.get_rng_state(), expected)


@needs_torch
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), draws=torch_draws.filter(bool))
def test_torch_draws_are_advanced(seed: int, draws: list[tuple[Any, ...]]) -> None:
    source = TorchSource()
    torch.manual_seed(seed)
    before = source.capture()
    draw_torch(draws)
    assert kinds(source.classify(before, source.capture())) == [ADVANCED]


@needs_torch
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_torch_manual_seed_is_reseeded(seed: int) -> None:
    source = TorchSource()
    torch.manual_seed(seed ^ 1)
    torch.rand(3)
    before = source.capture()
    torch.manual_seed(seed)
    assert kinds(source.classify(before, source.capture())) == [RESEEDED]


@needs_torch
def test_torch_manual_seed_with_the_same_seed_is_reseeded() -> None:
    source = TorchSource()
    torch.manual_seed(11)
    torch.rand(10)
    before = source.capture()
    torch.manual_seed(11)
    assert kinds(source.classify(before, source.capture())) == [RESEEDED]


@needs_torch
def test_torch_seed_is_reseeded() -> None:
    source = TorchSource()
    before = source.capture()
    torch.seed()
    assert kinds(source.classify(before, source.capture())) == [RESEEDED]


@needs_torch
def test_torch_going_back_to_an_earlier_state_is_replaced() -> None:
    source = TorchSource()
    torch.manual_seed(5)
    torch.rand(4)
    earlier = torch.get_rng_state()
    torch.rand(10)
    before = source.capture()
    torch.set_rng_state(earlier)
    assert kinds(source.classify(before, source.capture())) == [REPLACED]


@needs_torch
def test_torch_set_rng_state_with_a_foreign_state_is_replaced() -> None:
    source = TorchSource()
    foreign = torch.Generator()
    foreign.manual_seed(1234)
    torch.rand(5, generator=foreign)
    torch.manual_seed(5)
    before = source.capture()
    torch.set_rng_state(foreign.get_state())
    assert kinds(source.classify(before, source.capture())) == [REPLACED]


@needs_torch
def test_torch_state_put_back_by_fork_rng_is_captured_unchanged() -> None:
    source = TorchSource()
    torch.manual_seed(3)
    torch.rand(7)
    before = source.capture()
    with torch.random.fork_rng():
        torch.rand(3)
    assert source.capture() == before


@needs_torch
def test_torch_seen_for_the_first_time_is_reported_only_when_seeded_by_a_user() -> None:
    source = TorchSource()
    torch.manual_seed(3)
    assert kinds(source.classify(None, source.capture())) == [RESEEDED]
    torch.seed()  # 64 bits of entropy, like the state torch starts with
    assert source.classify(None, source.capture()) == []


# -- torch.cuda (CPU-only build, or CUDA not started) -----------------------------------------


@needs_torch
@pytest.mark.skipif(
    torch is not None and torch.backends.cuda.is_built(), reason="a CPU-only build of torch"
)
def test_torch_cuda_is_not_available_on_a_cpu_only_build() -> None:
    assert TorchCudaSource().available() is False


@needs_torch
def test_torch_cuda_is_never_initialised_by_the_source() -> None:
    if torch.cuda.is_initialized():
        pytest.skip("CUDA was started by someone else")
    source = TorchCudaSource()
    state = source.capture()
    source.seed(5)
    source.classify(state, source.capture())
    source.restore(state)
    assert not torch.cuda.is_initialized()


@needs_torch
def test_torch_cuda_seeds_queued_before_cuda_starts_are_reseeded() -> None:
    if torch.cuda.is_initialized():
        pytest.skip("CUDA was started by someone else")
    source = TorchCudaSource()
    before = source.capture()
    torch.manual_seed(7)  # queues torch.cuda.manual_seed_all(7)
    after = source.capture()
    assert source.classify(before, after) == [Difference(RESEEDED, QUEUED)]
    assert source.classify(None, after) == [Difference(RESEEDED, QUEUED)]
    source.restore(before)
    assert source.capture() == before
    assert source.classify(before, source.capture()) == []


def test_torch_cuda_with_nothing_queued_is_not_reported_when_first_seen() -> None:
    assert TorchCudaSource().classify(None, CudaState((), 0, None)) == []


def test_torch_cuda_device_changes_are_classified_per_device() -> None:
    source = TorchCudaSource()
    before = CudaState((), 0, ((1, 100), (1, 100), (1, 100), (1, 100), (1, 100)))
    after = CudaState((), 0, ((1, 100), (1, 164), (2, 0), (1, 40), (1, 0)))
    assert [(d.kind, d.detail) for d in source.classify(before, after)] == [
        (ADVANCED, "cuda:1"),
        (RESEEDED, "cuda:2"),
        (REPLACED, "cuda:3"),
        (RESEEDED, "cuda:4"),
    ]
    assert source.classify(before, after)[0].description == "seed 1 offset 100 -> seed 1 offset 164"


def test_torch_cuda_starting_with_torchs_default_seed_is_not_reported() -> None:
    source = TorchCudaSource()
    before = CudaState((), 0, None)
    started = CudaState((), 0, ((67280421310721, 0),))
    assert source.classify(before, started) == []
    reseeded = CudaState((), 0, ((9, 0),))
    assert [(d.kind, d.detail) for d in source.classify(before, reseeded)] == [(RESEEDED, "cuda:0")]


@needs_torch
def test_torch_cuda_starting_with_the_seed_queued_before_is_not_reported() -> None:
    if torch.cuda.is_initialized():
        pytest.skip("CUDA was started by someone else")
    source = TorchCudaSource()
    torch.manual_seed(7)  # queued; CUDA applies it when it starts
    before = source.capture()
    assert before.queued == (("all", 7),)
    started = CudaState(before.queued, before.calls, ((7, 0),))
    assert source.classify(before, started) == []
    other = CudaState(before.queued, before.calls, ((8, 0),))
    assert [(d.kind, d.detail) for d in source.classify(before, other)] == [(RESEEDED, "cuda:0")]


# -- env -------------------------------------------------------------------------------------

TEST_VARIABLES = ("RNGGUARD_TEST_A", "RNGGUARD_TEST_B", "RNGGUARD_TEST_C")


@contextlib.contextmanager
def variables_kept() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in TEST_VARIABLES}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def set_variables(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


env_values = st.dictionaries(
    st.sampled_from(TEST_VARIABLES),
    st.none()
    | st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=10),
)


def test_env_watches_the_documented_variables_by_default() -> None:
    assert EnvSource().variables == DEFAULT_VARIABLES
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" in DEFAULT_VARIABLES
    assert EnvSource(["A", "B", "A"]).variables == ("A", "B")


@settings(max_examples=50, deadline=None)
@given(first=env_values, then=env_values)
def test_env_restore_returns_every_variable_exactly_including_unset_ones(
    first: dict[str, str | None], then: dict[str, str | None]
) -> None:
    with variables_kept():
        set_variables(first)
        expected = {name: os.environ.get(name) for name in TEST_VARIABLES}
        source = EnvSource(TEST_VARIABLES)
        state = source.capture()
        set_variables(then)
        source.restore(state)
        assert {name: os.environ.get(name) for name in TEST_VARIABLES} == expected
        assert source.capture() == state


@settings(max_examples=50, deadline=None)
@given(values=env_values)
def test_read_environ_agrees_with_os_environ_get(values: dict[str, str | None]) -> None:
    names = (*TEST_VARIABLES, "PATH", "RNGGUARD_TEST_NEVER_SET")
    with variables_kept():
        set_variables(values)
        assert read_environ(names) == {name: os.environ.get(name) for name in names}


def test_read_environ_uses_the_public_api_where_os_environ_keeps_no_store() -> None:
    # An os.environ without CPython's ``_data`` store (a plain mapping stands in for
    # another implementation's), swapped back before pytest next sets PYTEST_CURRENT_TEST.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", {"RNGGUARD_TEST_A": "1"})
        found = read_environ(["RNGGUARD_TEST_A", "RNGGUARD_TEST_B"])
    assert found == {"RNGGUARD_TEST_A": "1", "RNGGUARD_TEST_B": None}


def test_env_classify_names_each_changed_variable() -> None:
    with variables_kept():
        set_variables({"RNGGUARD_TEST_A": "1", "RNGGUARD_TEST_B": None, "RNGGUARD_TEST_C": "x"})
        source = EnvSource(TEST_VARIABLES)
        before = source.capture()
        set_variables({"RNGGUARD_TEST_A": None, "RNGGUARD_TEST_B": "42", "RNGGUARD_TEST_C": "x"})
        assert source.classify(before, source.capture()) == [
            Difference(CHANGED, "RNGGUARD_TEST_A", "'1' -> unset"),
            Difference(CHANGED, "RNGGUARD_TEST_B", "unset -> '42'"),
        ]
        os.environ["RNGGUARD_TEST_B"] = "43"
        after = source.capture()
        set_variables({"RNGGUARD_TEST_A": None, "RNGGUARD_TEST_B": "42"})
        assert source.classify(source.capture(), after) == [
            Difference(CHANGED, "RNGGUARD_TEST_B", "'42' -> '43'")
        ]


def test_env_seen_for_the_first_time_reports_the_variables_that_are_set() -> None:
    with variables_kept():
        set_variables({"RNGGUARD_TEST_A": None, "RNGGUARD_TEST_B": "1", "RNGGUARD_TEST_C": None})
        source = EnvSource(TEST_VARIABLES)
        assert source.classify(None, source.capture()) == [
            Difference(CHANGED, "RNGGUARD_TEST_B", "unset -> '1'")
        ]


def test_env_sees_variables_set_with_putenv_through_os_environ_only() -> None:
    with variables_kept():
        source = EnvSource(TEST_VARIABLES)
        os.environ.pop("RNGGUARD_TEST_A", None)
        before = source.capture()
        os.environ["RNGGUARD_TEST_A"] = "1"
        assert kinds(source.classify(before, source.capture())) == [CHANGED]


def test_env_seeder_details_are_only_about_watched_variables() -> None:
    source = EnvSource(TEST_VARIABLES)
    (putenv, unsetenv) = source.seeders()
    assert (putenv.module, putenv.target, unsetenv.target) == ("os", "putenv", "unsetenv")
    assert putenv.detail is not None
    assert putenv.detail("RNGGUARD_TEST_A", "1") == "RNGGUARD_TEST_A"
    assert putenv.detail(b"RNGGUARD_TEST_B", b"1") == "RNGGUARD_TEST_B"
    assert putenv.detail("HOME", "/") is None


def test_env_is_not_seedable() -> None:
    source = EnvSource(TEST_VARIABLES)
    state = source.capture()
    source.seed(3)
    assert source.seedable is False
    assert source.capture() == state


# -- torch.flags -----------------------------------------------------------------------------


# The determinism switches; the numerics settings the source also watches (matmul precision,
# TF32, fp32_precision, reductions, default dtype) are tested in test_torch_settings.py.
Flags = tuple[bool, bool, bool, bool]
flag_values = st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans())


def set_flags_directly(flags: Flags) -> None:
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2:]


def flags_now() -> Flags:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )


@needs_torch
@settings(max_examples=30, deadline=None)
@given(first=flag_values, then=flag_values)
def test_torch_flags_restore_returns_every_flag(first: Flags, then: Flags) -> None:
    source = TorchFlagsSource()
    set_flags_directly(first)
    expected = flags_now()
    state = source.capture()
    assert state[:4] == expected
    set_flags_directly(then)
    source.restore(state)
    assert flags_now() == expected
    assert source.capture() == state


@needs_torch
def test_torch_flags_classify_names_each_flag() -> None:
    source = TorchFlagsSource()
    set_flags_directly((False, False, False, False))
    before = source.capture()
    set_flags_directly((True, True, False, True))
    assert source.classify(before, source.capture()) == [
        Difference(CHANGED, "deterministic_algorithms", "False -> True"),
        Difference(CHANGED, "deterministic_algorithms_warn_only", "False -> True"),
        Difference(CHANGED, "cudnn.benchmark", "False -> True"),
    ]
    before = source.capture()
    torch.backends.cudnn.deterministic = True
    assert source.classify(before, source.capture()) == [
        Difference(CHANGED, "cudnn.deterministic", "False -> True")
    ]


@needs_torch
def test_torch_flags_seen_for_the_first_time_are_not_reported() -> None:
    source = TorchFlagsSource()
    set_flags_directly((True, False, True, False))
    assert source.classify(None, source.capture()) == []
