"""The monitor's and the sources' shortcuts give the answers of the slow paths they skip.

Each shortcut exists for speed only, so each is run here next to the path it replaces, on the
real libraries, with Hypothesis choosing what a stretch of a test does (seeding, drawing,
setting a state behind the monitor's back), and the two answers must be the same.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rngguard.monitor import Monitor
from pytest_rngguard.origins import IgnoreRules, Origin, PathShortener
from pytest_rngguard.settings import Settings
from pytest_rngguard.snapshots import Change
from pytest_rngguard.sources import build_sources
from pytest_rngguard.sourceset import SourceSet

torch = pytest.importorskip("torch")

#: These tests seed and draw from the global generators on purpose, and put them back.
pytestmark = pytest.mark.allow_rng_leak("random", "numpy", "torch", reason="the sources under test")


@contextlib.contextmanager
def generators_kept() -> Iterator[None]:
    """Put random, NumPy and torch back with their own API after each example."""
    python, legacy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(legacy)
        torch.set_rng_state(cpu)


#: For each generator: seed it, draw ``n`` 32-bit words' worth from it.  Looked up at each
#: call: the monitor wraps the seeding functions when it starts.
SEED: dict[str, Callable[[int], Any]] = {
    "random": lambda seed: random.seed(seed),
    "numpy": lambda seed: np.random.seed(seed),
    "torch": lambda seed: torch.manual_seed(seed),
}
DRAW: dict[str, Callable[[int], Any]] = {
    "random": lambda n: [random.getrandbits(32) for _ in range(n)],
    "numpy": lambda n: np.random.randint(0, 2**31, size=n),
    "torch": lambda n: torch.randint(0, 2**31, (n,)),
}

#: What a stretch does to one generator: seed it (seen), draw, or seed it unseen (a state
#: set where no intercepted call shows it).
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("seed"), st.integers(0, 2**32 - 1)),
        st.tuples(st.just("draw"), st.integers(0, 2000)),
        st.tuples(st.just("unseen"), st.integers(0, 2**32 - 1)),
    ),
    max_size=5,
)


def where(origin: Origin | None) -> str | None:
    return None if origin is None else origin.location


def changes_of(name: str, steps: list[tuple[str, int]], shortcut: bool, keep: bool) -> list[Any]:
    """The changes one checkpoint reports after ``steps``, from the same start each time."""
    sources = SourceSet(build_sources(()))
    source = sources.get(name)
    assert source is not None
    assert getattr(source, "whole_state", False) is True
    if not shortcut:
        source.whole_state = False  # type: ignore[attr-defined]
    monitor = Monitor(
        sources,
        ignore=IgnoreRules(Settings().ignore),
        shorten=PathShortener(),
        keep_advanced=keep,
    )
    monitor.start()
    try:
        monitor.reset()
        monitor.active = True
        for step, value in steps:
            if step == "seed":
                SEED[name](value)
            elif step == "draw":
                DRAW[name](value)
            else:
                with monitor.paused():
                    SEED[name](value)
        found: list[Change] = [c for c in monitor.checkpoint() if c.source == name]
        # Origins without their stacks: the two runs are called from two lines of the test.
        return [
            (
                c.source,
                c.kind,
                c.detail,
                c.description,
                where(c.origin),
                [where(o) for o in c.calls],
            )
            for c in found
        ]
    finally:
        monitor.stop()


@pytest.mark.parametrize("name", sorted(SEED))
@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 2**32 - 1), ahead=st.integers(0, 3000), steps=STEPS, keep=st.booleans())
def test_a_reseed_that_explains_the_change_is_reported_as_classifying_would(
    name: str, start: int, ahead: int, steps: list[tuple[str, int]], keep: bool
) -> None:
    with generators_kept():
        SEED[name](start)
        DRAW[name](ahead)
        python, legacy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
        fast = changes_of(name, steps, shortcut=True, keep=keep)
        random.setstate(python)
        np.random.set_state(legacy)
        torch.set_rng_state(cpu)
        slow = changes_of(name, steps, shortcut=False, keep=keep)
    assert fast == slow


@pytest.mark.parametrize("name", sorted(SEED))
def test_a_reseed_followed_by_draws_is_one_reseed_with_its_origin(name: str) -> None:
    with generators_kept():
        found = changes_of(name, [("draw", 5), ("seed", 1234), ("draw", 1500)], True, False)
    assert [(source, kind) for source, kind, *_ in found] == [(name, "reseeded")]
    assert "test_fast_paths.py" in found[0][4]
