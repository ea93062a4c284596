"""Seeding everything, setting the determinism environment and flags, and putting them back:
``derive_seed`` and the ``deterministic()`` context manager."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.random  # NumPy 2 loads it lazily: the numpy source watches it
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rngguard import deterministic
from pytest_rngguard.determinism import RECIPE_ENV, SEED_LIMIT, Recipe, apply, derive_seed, undo
from pytest_rngguard.sources import build_sources
from pytest_rngguard.sources.env import DEFAULT_VARIABLES
from pytest_rngguard.sourceset import SourceSet

try:
    import torch
except ImportError:  # the 3.10, 3.12 and 3.13 CI environments have no torch
    torch = None  # type: ignore[assignment]

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

DETERMINISM_VARIABLES = (
    "VLLM_ENABLE_V1_MULTIPROCESSING",
    "CUBLAS_WORKSPACE_CONFIG",
    "PYTHONHASHSEED",
)


def legacy_numpy_state() -> Any:
    """NumPy's global state, the legacy tuple it is at run time (its stubs say a dict)."""
    return np.random.get_state()


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or unset, with None) variables for the block and put them back in the same phase,
    so the guard running this suite sees nothing changed."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def torch_flags() -> tuple[bool, bool, bool, bool]:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )


@contextlib.contextmanager
def torch_flags_set(flags: tuple[bool, bool, bool, bool]) -> Iterator[None]:
    saved = torch_flags()

    def apply(values: tuple[bool, bool, bool, bool]) -> None:
        torch.use_deterministic_algorithms(values[0], warn_only=values[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = values[2:]

    apply(flags)
    try:
        yield
    finally:
        apply(saved)


def draws() -> tuple[Any, ...]:
    """A few numbers from each library's global generator (torch's where it is installed)."""
    drawn = (
        random.random(),
        random.gauss(0.0, 1.0),
        np.random.rand(3).tobytes(),
        np.random.standard_normal(),
    )
    if torch is None:
        return drawn
    return (
        *drawn,
        torch.rand(3).numpy().tobytes(),
        torch.randn(2, dtype=torch.float64).numpy().tobytes(),
    )


def global_states() -> tuple[Any, ...]:
    """The state of every library's global generator (torch's too, where it is installed)."""
    numpy_state = legacy_numpy_state()
    states = (
        random.getstate(),
        numpy_state[0],
        numpy_state[1].tobytes(),
        *numpy_state[2:],
    )
    if torch is None:
        return states
    return (*states, torch.get_rng_state().numpy().tobytes())


# -- derive_seed -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "nodeid", "seed"),
    [
        (0, "tests/test_gen.py::test_sample", 553725913),
        (0, "tests/test_gen.py::test_sample[1]", 3705911522),
        (1, "tests/test_gen.py::test_sample", 2418635496),
        (2**40, "a.py::t", 1293174648),
    ],
)
def test_derive_seed_gives_the_same_seeds_in_every_release(
    base: int, nodeid: str, seed: int
) -> None:
    assert derive_seed(base, nodeid) == seed


@settings(max_examples=100, deadline=None)
@given(base=st.integers(0, 2**64), nodeid=st.text())
def test_derive_seed_is_the_blake2b_of_base_and_node_id_below_2_to_the_32(
    base: int, nodeid: str
) -> None:
    digest = hashlib.blake2b(f"{base}\0{nodeid}".encode(), digest_size=8).digest()
    seed = derive_seed(base, nodeid)
    assert seed == int.from_bytes(digest, "big") % 2**32
    assert 0 <= seed < 2**32 == SEED_LIMIT


def test_derive_seed_differs_between_node_ids_and_base_seeds() -> None:
    nodeids = [f"tests/test_gen.py::test_sample[{i}]" for i in range(200)]
    assert len({derive_seed(0, nodeid) for nodeid in nodeids}) == len(nodeids)
    assert len({derive_seed(base, nodeids[0]) for base in range(200)}) == 200


def test_derive_seed_does_not_depend_on_the_hash_seed_of_the_process() -> None:
    code = "from pytest_rngguard.determinism import derive_seed; print(derive_seed(3, 'a.py::b'))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == str(derive_seed(3, "a.py::b"))


# -- seeding ---------------------------------------------------------------------------------


def test_deterministic_yields_its_seed() -> None:
    with deterministic(42) as seed:
        assert seed == 42
    with deterministic() as seed:
        assert seed == 0


def test_the_same_seed_gives_the_same_draws_from_every_library() -> None:
    with deterministic(7):
        first = draws()
    random.random()
    np.random.rand(5)
    if torch is not None:
        torch.rand(5)
    with deterministic(7):
        second = draws()
    assert first == second
    with deterministic(8):
        assert draws() != first


def test_deterministic_seeds_like_each_librarys_own_seed_function() -> None:
    with deterministic(1234):
        assert random.random() == random.Random(1234).random()
        assert np.random.rand() == np.random.RandomState(1234).rand()
        if torch is not None:
            generator = torch.Generator()
            generator.manual_seed(1234)
            assert torch.equal(torch.rand(4), torch.rand(4, generator=generator))


def test_deterministic_accepts_the_largest_seed_numpy_takes() -> None:
    with deterministic(2**32 - 1):
        assert np.random.rand() == np.random.RandomState(2**32 - 1).rand()


# -- the environment -------------------------------------------------------------------------


def test_deterministic_sets_the_determinism_environment() -> None:
    with environment(**dict.fromkeys(DETERMINISM_VARIABLES)), deterministic(5):
        assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert os.environ["PYTHONHASHSEED"] == "5"
    assert dict(RECIPE_ENV) == {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }


def test_deterministic_sets_the_env_it_is_given_over_its_own() -> None:
    names = {"RNGGUARD_TEST_EXTRA": None, "CUBLAS_WORKSPACE_CONFIG": None}
    with environment(**names):
        with deterministic(
            3, env={"RNGGUARD_TEST_EXTRA": "yes", "CUBLAS_WORKSPACE_CONFIG": ":16:8"}
        ):
            assert os.environ["RNGGUARD_TEST_EXTRA"] == "yes"
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        assert "RNGGUARD_TEST_EXTRA" not in os.environ
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_deterministic_unsets_again_what_was_unset_and_keeps_what_was_set() -> None:
    before = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": None,
        "CUBLAS_WORKSPACE_CONFIG": ":16:8",
        "PYTHONHASHSEED": "random",
        "RNGGUARD_TEST_EXTRA": "",
    }
    with environment(**before):
        with deterministic(9, env={"RNGGUARD_TEST_EXTRA": "1"}):
            pass
        assert {name: os.environ.get(name) for name in before} == before


# -- torch flags -----------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("warn_only", [False, True])
@pytest.mark.parametrize("before", list(itertools.product([False, True], repeat=4)))
def test_deterministic_turns_on_torch_determinism_and_puts_the_flags_back(
    warn_only: bool, before: tuple[bool, bool, bool, bool]
) -> None:
    # From every starting point, the flags already as the recipe wants them included (only
    # the others are set, and undone).
    with torch_flags_set(before):
        with deterministic(1, warn_only=warn_only):
            assert torch_flags() == (True, warn_only, True, False)
        assert torch_flags() == before


@needs_torch
def test_deterministic_leaves_torch_flags_alone_when_told() -> None:
    with torch_flags_set((False, False, True, True)):
        with deterministic(1, torch_flags=False):
            assert torch_flags() == (False, False, True, True)
        assert torch_flags() == (False, False, True, True)


INDUCTOR_SCRIPT = """
import sys
import torch
from pytest_rngguard import deterministic

with deterministic(1):
    assert torch.are_deterministic_algorithms_enabled()
    # torch.use_deterministic_algorithms would import it: over a second, and not asked for
    assert "torch._inductor.config" not in sys.modules
    import torch._inductor.config as config
    assert config.deterministic is True, "torch.compile imported in the block is deterministic"
assert config.deterministic is False
assert not torch.are_deterministic_algorithms_enabled()

config.deterministic = True  # the user's own setting, with inductor loaded before the block
with deterministic(1, warn_only=True):
    assert config.deterministic is True
    assert torch.is_deterministic_algorithms_warn_only_enabled()
assert config.deterministic is True
config.deterministic = False
with deterministic(1):
    assert config.deterministic is True
assert config.deterministic is False
with deterministic(1, torch_flags=False):
    assert config.deterministic is False
"""


@needs_torch
def test_deterministic_sets_inductors_flag_without_importing_it_and_puts_it_back() -> None:
    done = subprocess.run(
        [sys.executable, "-c", INDUCTOR_SCRIPT], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


# -- putting everything back -----------------------------------------------------------------


def test_deterministic_puts_every_generator_back_exactly() -> None:
    random.gauss(0.0, 1.0)  # leaves a cached gaussian in random ...
    np.random.standard_normal()  # ... and in NumPy
    if torch is not None:
        torch.randn(1, dtype=torch.float64)
    before = global_states()
    with deterministic(11):
        draws()
    assert global_states() == before


def test_deterministic_puts_everything_back_when_the_block_raises() -> None:
    before, flags = global_states(), torch_flags() if torch is not None else None

    def fail_inside() -> None:
        with deterministic(13, env={"RNGGUARD_TEST_EXTRA": "1"}):
            draws()
            raise RuntimeError("the test failed")

    with environment(**dict.fromkeys((*DETERMINISM_VARIABLES, "RNGGUARD_TEST_EXTRA"))):
        with pytest.raises(RuntimeError, match="the test failed"):
            fail_inside()
        assert all(os.environ.get(name) is None for name in DETERMINISM_VARIABLES)
        assert "RNGGUARD_TEST_EXTRA" not in os.environ
    assert global_states() == before
    if flags is not None:
        assert torch_flags() == flags


@needs_torch
def test_apply_tells_record_the_environment_and_torch_flags_as_they_were_before_it() -> None:
    # The plugin puts them back to that at the end of the test, whatever the test changed of
    # them (see test_marker_undo.py).
    sources = SourceSet(build_sources(DEFAULT_VARIABLES))
    env, flags = sources.get("env"), sources.get("torch.flags")
    assert env is not None
    assert flags is not None
    before = {"env": env.capture(), "torch.flags": flags.capture()}
    told: dict[str, Any] = {}
    applied = apply(Recipe(3), sources, record=told.__setitem__)
    try:
        assert {name: told[name] for name in before} == before
        assert env.capture() != before["env"]
        assert flags.capture() != before["torch.flags"]
    finally:
        undo(applied, sources)
    assert {"env": env.capture(), "torch.flags": flags.capture()} == before


def test_nested_deterministic_blocks_put_back_their_own_state() -> None:
    before = global_states()
    with deterministic(1):
        inside = global_states()
        with deterministic(2):
            pass
        assert global_states() == inside
        assert os.environ["PYTHONHASHSEED"] == "1"
    assert global_states() == before


# -- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": "3"}, "seed"),
        ({"env": {"A": 1}}, "env"),
        ({"env": {1: "a"}}, "env"),
        ({"env": ["A=1"]}, "env"),
        ({"torch_flags": "yes"}, "torch_flags"),
        ({"torch_flags": None}, "torch_flags"),
        ({"warn_only": 1}, "warn_only"),
    ],
)
def test_a_bad_argument_is_a_value_error_naming_it_and_changes_nothing(
    arguments: dict[str, Any], named: str
) -> None:
    before, environ = global_states(), dict(os.environ)
    message = rf"^{named} must be .*, got {re.escape(repr(arguments[named]))}$"
    with pytest.raises(ValueError, match=message), deterministic(**arguments):
        pytest.fail("the block must not run")
    assert global_states() == before
    assert dict(os.environ) == environ


def test_the_recipe_environment_puts_the_seed_in_pythonhashseed() -> None:
    recipe = Recipe(77, env=(("A", "1"), ("PYTHONHASHSEED", "0")))
    assert recipe.environment() == {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "PYTHONHASHSEED": "0",
        "A": "1",
    }
    assert Recipe(77).environment()["PYTHONHASHSEED"] == "77"


class _SeedsHalfThenRaises:
    """A source whose library is still being imported (it reads as unavailable, as a
    library does while the recipe seeds it from an import watcher) and whose seeding sets
    part of its state before it raises."""

    name = "half"
    module = "half_seeded_library"
    seedable = True

    def __init__(self) -> None:
        self.value = 1

    def available(self) -> bool:
        return False

    def capture(self) -> int:
        return self.value

    def restore(self, state: int) -> None:
        self.value = state

    def seed(self, seed: int) -> None:
        self.value = 42
        raise RuntimeError("half way")

    def classify(self, before: Any, after: Any) -> list[Any]:
        return []

    def seeders(self) -> tuple[()]:
        return ()


def test_a_seeding_that_raises_half_way_is_put_back_while_its_library_is_imported() -> None:
    source = _SeedsHalfThenRaises()
    sources = SourceSet([source])  # type: ignore[list-item]

    assert sources.seed(source, 7, source.capture()) is False  # type: ignore[arg-type]
    assert source.value == 1  # the state the seeding started from, not its half
    assert sources.get("half") is None  # disabled for the rest of the session
    assert any("'half'" in error and "seeding it" in error for error in sources.errors)
