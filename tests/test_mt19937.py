"""The MT19937 arithmetic behind the ``random``, ``numpy`` and ``torch`` sources: drawing numbers
is recognised as moving forward, foreign states are not, and seeded states are recognised.

Everything here runs on private generators: no global state is touched.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rngguard.sources import ADVANCED, REPLACED, RESEEDED
from pytest_rngguard.sources import _mt19937 as mt
from pytest_rngguard.sources.base import mt_kind

try:
    import torch
except ImportError:  # the 3.10, 3.12 and 3.13 CI environments have no torch
    torch = None  # type: ignore[assignment]

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

# -- helpers ---------------------------------------------------------------------------------


def state_of(generator: random.Random) -> mt.MTState:
    words = generator.getstate()[1]
    return mt.MTState(mt.key_bytes(words[: mt.N]), words[mt.N])


def numpy_state_of(generator: np.random.RandomState) -> mt.MTState:
    _, key, pos, *_ = generator.get_state()
    return mt.MTState(np.asarray(key, dtype="<u4").tobytes(), int(pos))


def kind_of_change(old: mt.MTState, new: mt.MTState) -> str:
    """What the MT19937 sources call the move from ``old`` to ``new``."""
    return mt_kind(mt.reachable(old, new), mt.looks_seeded(new))


def random_key(seed: int) -> bytes:
    return random.Random(seed).randbytes(mt.WORDS_BYTES)


#: Any state a generator can be in: freshly seeded, or any key block at any position.
python_starts = st.one_of(
    st.integers(0, 2**64).map(random.Random),
    st.builds(
        lambda seed, pos: _python_generator(random_key(seed), pos),
        st.integers(0, 2**32),
        st.integers(0, mt.N),
    ),
)


def _python_generator(key: bytes, pos: int) -> random.Random:
    generator = random.Random()
    generator.setstate((3, (*mt.key_words(key), pos), None))
    return generator


numpy_starts = st.one_of(
    st.integers(0, 2**32 - 1).map(np.random.RandomState),
    st.builds(
        lambda seed, pos: _numpy_generator(random_key(seed), pos),
        st.integers(0, 2**32),
        st.integers(0, mt.N),
    ),
)


def _numpy_generator(key: bytes, pos: int) -> np.random.RandomState:
    generator = np.random.RandomState()
    generator.set_state(("MT19937", np.frombuffer(key, dtype="<u4").astype(np.uint32), pos, 0, 0.0))
    return generator


python_draws = st.lists(
    st.one_of(
        st.tuples(st.just("random")),
        st.tuples(st.just("gauss")),
        st.tuples(st.just("getrandbits"), st.integers(1, 40_000)),
        st.tuples(st.just("randrange"), st.integers(1, 2**80)),
    ),
    min_size=1,
    max_size=12,
)

numpy_draws = st.lists(
    st.one_of(
        st.tuples(st.just("rand"), st.integers(1, 3_000)),
        st.tuples(st.just("randint"), st.integers(2, 2**40), st.integers(1, 500)),
        st.tuples(st.just("normal"), st.integers(1, 501)),
    ),
    min_size=1,
    max_size=8,
)


def draw_python(generator: random.Random, draws: list[tuple[Any, ...]]) -> None:
    for name, *args in draws:
        if name == "randrange":
            generator.randrange(*args)
        else:
            getattr(generator, name)(*(args or ([0.0, 1.0] if name == "gauss" else [])))


def draw_numpy(generator: np.random.RandomState, draws: list[tuple[Any, ...]]) -> None:
    for name, *args in draws:
        if name == "rand":
            generator.rand(args[0])
        elif name == "randint":
            generator.randint(0, args[0], size=args[1], dtype=np.int64)
        else:
            generator.normal(size=args[0])


# -- twisting --------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_twist_matches_the_python_reference_on_any_block(seed: int) -> None:
    key = random_key(seed)
    assert mt.twist(key) == mt.key_bytes(mt.twist_words(mt.key_words(key)))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**64))
def test_twist_is_what_cpython_does_after_624_words(seed: int) -> None:
    generator = random.Random(seed)
    before = state_of(generator)
    for _ in range(mt.N):
        generator.getrandbits(32)
    assert state_of(generator) == mt.MTState(mt.twist(before.key), mt.N)


def test_twist_through_the_public_api_agrees_with_the_fast_path() -> None:
    public = mt._Twister()
    public._memory = None
    for seed in (0, 1, 2**31, 12345):
        key = random_key(seed)
        assert public.twist(key) == mt.twist(key)


def test_twist_does_not_touch_the_global_generator() -> None:
    before = random.getstate()
    mt.twist(random_key(3))
    assert random.getstate() == before


def test_key_words_and_key_bytes_are_inverse() -> None:
    words = list(range(mt.N))
    assert mt.key_words(mt.key_bytes(words)) == words
    assert len(mt.key_bytes(words)) == mt.WORDS_BYTES


def test_the_memory_fast_path_reads_what_getstate_says() -> None:
    memory = mt.random_memory()
    if memory is None:
        pytest.skip("not CPython's memory layout")
    generator = random.Random(77)
    generator.getrandbits(100)
    assert memory.split(memory.read(generator)) == state_of(generator)
    other = random.Random()
    memory.write(other, memory.read(generator))
    assert other.getstate()[1] == generator.getstate()[1]


# -- drawing is advancing --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(generator=python_starts, draws=python_draws)
def test_any_draws_from_any_python_state_are_advanced(
    generator: random.Random, draws: list[tuple[Any, ...]]
) -> None:
    before = state_of(generator)
    draw_python(generator, draws)
    after = state_of(generator)
    assert mt.reachable(before, after)
    assert kind_of_change(before, after) == ADVANCED


@settings(max_examples=40, deadline=None)
@given(generator=numpy_starts, draws=numpy_draws)
def test_any_draws_from_any_numpy_state_are_advanced(
    generator: np.random.RandomState, draws: list[tuple[Any, ...]]
) -> None:
    before = numpy_state_of(generator)
    draw_numpy(generator, draws)
    after = numpy_state_of(generator)
    assert mt.reachable(before, after)
    assert kind_of_change(before, after) == ADVANCED


def test_draws_across_many_blocks_are_still_advanced() -> None:
    generator = random.Random(5)
    before = state_of(generator)
    generator.getrandbits(32 * mt.N * 1000)  # a thousand twists
    assert kind_of_change(before, state_of(generator)) == ADVANCED


def test_draws_beyond_the_search_bound_are_no_longer_recognised() -> None:
    generator = random.Random(5)
    before = state_of(generator)
    generator.getrandbits(32 * mt.N * 3)
    assert mt.reachable(before, state_of(generator), max_blocks=3)
    assert not mt.reachable(before, state_of(generator), max_blocks=2)


# -- foreign states --------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(generator=python_starts, other=st.integers(0, 2**64), draws=python_draws)
def test_a_state_set_from_another_python_generator_is_replaced(
    generator: random.Random, other: int, draws: list[tuple[Any, ...]]
) -> None:
    before = state_of(generator)
    foreign = random.Random(f"foreign {other}")  # a string seed: never one of the starts
    draw_python(foreign, draws)
    generator.setstate(foreign.getstate())
    assert kind_of_change(before, state_of(generator)) == REPLACED


@settings(max_examples=12, deadline=None)
@given(generator=python_starts, seed=st.integers(-(2**70), 2**70) | st.text() | st.binary())
def test_seeding_a_python_generator_with_anything_is_reseeded(
    generator: random.Random, seed: int | str | bytes
) -> None:
    before = state_of(generator)
    generator.seed(seed)
    after = state_of(generator)
    if after != before:  # seeding again with the seed it started from changes nothing
        assert kind_of_change(before, after) == RESEEDED


@settings(max_examples=12, deadline=None)
@given(generator=numpy_starts, other=st.integers(0, 2**32 - 1), draws=numpy_draws)
def test_a_state_set_from_another_numpy_generator_is_replaced(
    generator: np.random.RandomState, other: int, draws: list[tuple[Any, ...]]
) -> None:
    before = numpy_state_of(generator)
    foreign = np.random.RandomState([other, 7])  # an array seed: never one of the starts
    draw_numpy(foreign, draws)
    generator.set_state(foreign.get_state())
    assert kind_of_change(before, numpy_state_of(generator)) == REPLACED


@settings(max_examples=12, deadline=None)
@given(generator=numpy_starts, seed=st.integers(0, 2**32 - 1))
def test_seeding_a_numpy_generator_is_reseeded(generator: np.random.RandomState, seed: int) -> None:
    before = numpy_state_of(generator)
    generator.seed(seed)
    after = numpy_state_of(generator)
    if after != before:
        assert kind_of_change(before, after) == RESEEDED


def test_going_back_to_an_earlier_state_is_replaced() -> None:
    generator = random.Random(8)
    generator.random()
    earlier = generator.getstate()
    generator.getrandbits(64)
    before = state_of(generator)
    generator.setstate(earlier)  # same block, earlier position
    assert kind_of_change(before, state_of(generator)) == REPLACED
    generator.getrandbits(32 * mt.N * 2)
    before = state_of(generator)
    generator.setstate(earlier)  # an earlier block
    assert kind_of_change(before, state_of(generator)) == REPLACED


# -- recognising seeded states ---------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(-(2**100), 2**100) | st.text() | st.binary())
def test_looks_seeded_recognises_random_seed(seed: int | str | bytes) -> None:
    generator = random.Random()
    generator.seed(seed)
    assert mt.looks_seeded(state_of(generator))
    generator.random()
    assert not mt.looks_seeded(state_of(generator))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_looks_seeded_recognises_numpy_integer_seeds(seed: int) -> None:
    generator = np.random.RandomState()
    generator.seed(seed)
    state = numpy_state_of(generator)
    assert mt.looks_seeded(state)
    assert mt.looks_int_seeded(state)
    assert state.key == mt.init_genrand(seed)
    generator.rand()
    assert not mt.looks_seeded(numpy_state_of(generator))


@settings(max_examples=20, deadline=None)
@given(seed=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=10))
def test_looks_seeded_recognises_numpy_array_seeds(seed: list[int]) -> None:
    state = numpy_state_of(np.random.RandomState(seed))
    assert mt.looks_seeded(state)
    assert not mt.looks_int_seeded(state)


def test_python_seeds_do_not_look_like_integer_seeds() -> None:
    for seed in (0, 1, 2**32 + 5, "text"):
        assert not mt.looks_int_seeded(state_of(random.Random(seed)))


def test_numpy_entropy_seeded_state_is_not_an_integer_seed() -> None:
    # The global RandomState starts like this when NumPy is imported: no user seeded it.
    assert not mt.looks_int_seeded(numpy_state_of(np.random.RandomState()))


@needs_torch
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_init_genrand_is_what_torch_manual_seed_produces(seed: int) -> None:
    generator = torch.Generator()
    generator.manual_seed(seed)
    raw = generator.get_state().numpy().tobytes()
    # torch serialises: u64 seed, i32 left, i32 seeded, u64 next, then 624 u64 words
    words = np.frombuffer(raw[24 : 24 + mt.N * 8], dtype="<u8").astype("<u4")
    assert words.tobytes() == mt.init_genrand(seed)


def test_a_state_with_draws_left_in_its_block_never_looks_seeded() -> None:
    generator = np.random.RandomState(3)
    key = numpy_state_of(generator).key
    for pos in (0, 1, 623):
        assert not mt.looks_seeded(mt.MTState(key, pos))
    assert mt.looks_seeded(mt.MTState(key, mt.N))
