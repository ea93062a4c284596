"""The ``tensorflow`` source: global seed, global generator and op determinism, read without
creating anything, classified, restored and seeded; and the plugin with TensorFlow loaded.

Runs where TensorFlow is installed (the ``tensorflow`` tox environment, tensorflow-cpu).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import leak_rows, run, run_with_report
from hypothesis import given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")

from tensorflow.python.eager import context  # noqa: E402
from tensorflow.python.framework import config  # noqa: E402
from tensorflow.python.ops import stateful_random_ops  # noqa: E402

from pytest_rngguard.sources import ADVANCED, CHANGED, REPLACED, RESEEDED  # noqa: E402
from pytest_rngguard.sources.tensorflow import (  # noqa: E402
    GENERATOR,
    OP_DETERMINISM,
    TensorflowSource,
)

#: The unit tests below change TensorFlow's state on purpose; the plugin running this suite
#: must not report them (the end-to-end tests check its reports in inner runs).
pytestmark = pytest.mark.allow_rng_leak("tensorflow", reason="the source under test")


@pytest.fixture(autouse=True)
def _tensorflow_state_kept() -> Iterator[None]:
    """Every test here changes TensorFlow's global state on purpose: put it back with
    TensorFlow's own API (not the source under test) so no test sees another's."""
    ctx = context.context()
    seed, rng = ctx._seed, getattr(ctx, "_rng", None)
    draws = rng.getstate() if rng is not None else None
    generator = stateful_random_ops.global_generator
    words = generator.state.numpy() if generator is not None else None
    determinism = config.is_op_determinism_enabled()
    yield
    ctx._set_global_seed(seed)
    if rng is not None:
        rng.setstate(draws)
        ctx._rng = rng
    stateful_random_ops.global_generator = generator
    if generator is not None:
        generator.reset(words)
    if determinism:
        config.enable_op_determinism()
    else:
        config.disable_op_determinism()


@pytest.fixture
def source() -> TensorflowSource:
    return TensorflowSource()


def kinds(source: TensorflowSource, before: Any, after: Any) -> list[tuple[str, str]]:
    return [(d.kind, d.detail) for d in source.classify(before, after)]


def leaks_by_test(report: dict[str, Any], *fields: str) -> list[tuple[Any, ...]]:
    """The report's leaks as (test function, *fields), sorted."""
    return sorted(
        (leak["nodeid"].rpartition("::")[2], *(leak[f] for f in fields)) for leak in report["leaks"]
    )


def uniform() -> list[float]:
    return [float(x) for x in tf.random.uniform([4]).numpy()]


# -- reading ---------------------------------------------------------------------------------


def test_capturing_never_creates_the_global_generator(source: TensorflowSource) -> None:
    stateful_random_ops.global_generator = None
    for _ in range(3):
        state = source.capture()
    assert stateful_random_ops.global_generator is None
    assert state.generator_state is None


def test_a_capture_compares_equal_exactly_while_nothing_is_drawn_or_set(
    source: TensorflowSource,
) -> None:
    tf.random.set_seed(5)
    tf.random.get_global_generator()
    assert source.capture() == source.capture()
    before = source.capture()
    tf.random.uniform([1])
    assert source.capture() != before


# -- classifying -----------------------------------------------------------------------------


def test_setting_the_global_seed_is_reseeded_even_to_the_same_value(
    source: TensorflowSource,
) -> None:
    tf.random.set_seed(1)
    first = source.capture()
    uniform()
    drawn = source.capture()
    tf.random.set_seed(1)
    assert kinds(source, first, drawn) == [(ADVANCED, "")]
    assert kinds(source, drawn, source.capture()) == [(RESEEDED, "")]


def test_random_ops_without_a_global_seed_leave_nothing_to_report(
    source: TensorflowSource,
) -> None:
    context.context()._set_global_seed(None)
    before = source.capture()
    uniform()
    assert source.capture() == before


def test_global_generator_draws_resets_and_replacements_are_told_apart(
    source: TensorflowSource,
) -> None:
    stateful_random_ops.global_generator = None
    absent = source.capture()
    generator = tf.random.get_global_generator()
    created = source.capture()
    generator.normal([3])
    drawn = source.capture()
    generator.reset_from_seed(3)
    reset = source.capture()
    tf.random.set_global_generator(tf.random.Generator.from_seed(4))
    replaced = source.capture()
    assert (ADVANCED, GENERATOR) in kinds(source, absent, created)
    assert kinds(source, created, drawn) == [(ADVANCED, GENERATOR)]
    assert kinds(source, drawn, reset) == [(RESEEDED, GENERATOR)]
    assert kinds(source, reset, replaced) == [(REPLACED, GENERATOR)]


def test_turning_op_determinism_on_is_a_change_of_its_switch(source: TensorflowSource) -> None:
    config.disable_op_determinism()
    before = source.capture()
    tf.config.experimental.enable_op_determinism()
    assert kinds(source, before, source.capture()) == [(CHANGED, OP_DETERMINISM)]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(["uniform", "normal", "generator", "shuffle"]), min_size=1))
def test_any_sequence_of_draws_is_advanced(draws: list[str]) -> None:
    source = TensorflowSource()
    tf.random.set_seed(11)
    tf.random.set_global_generator(tf.random.Generator.from_seed(11))
    before = source.capture()
    for draw in draws:
        if draw == "uniform":
            tf.random.uniform([2])
        elif draw == "normal":
            tf.random.normal([3])
        elif draw == "generator":
            tf.random.get_global_generator().uniform([5])
        else:
            tf.random.shuffle(tf.range(4))
    assert {d.kind for d in source.classify(before, source.capture())} == {ADVANCED}


# -- restoring and seeding -------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), leaked_seed=st.integers(0, 2**31 - 1))
def test_restore_puts_back_exactly_what_later_draws_see(seed: int, leaked_seed: int) -> None:
    source = TensorflowSource()
    tf.random.set_seed(seed)
    tf.random.set_global_generator(tf.random.Generator.from_seed(seed))
    uniform()
    saved = source.capture()
    expected = (uniform(), tf.random.get_global_generator().normal([3]).numpy().tolist())
    source.restore(saved)
    tf.random.set_seed(leaked_seed)
    tf.random.get_global_generator().reset_from_seed(leaked_seed)
    tf.config.experimental.enable_op_determinism()
    source.restore(saved)
    assert source.capture() == saved
    assert (uniform(), tf.random.get_global_generator().normal([3]).numpy().tolist()) == expected
    assert not config.is_op_determinism_enabled()


def test_restore_removes_a_global_generator_created_since(source: TensorflowSource) -> None:
    stateful_random_ops.global_generator = None
    saved = source.capture()
    tf.random.get_global_generator().normal([2])
    source.restore(saved)
    assert stateful_random_ops.global_generator is None


def test_seeding_makes_random_ops_and_the_global_generator_reproducible(
    source: TensorflowSource,
) -> None:
    stateful_random_ops.global_generator = None
    saved = source.capture()
    results = []
    for _ in range(2):
        source.seed(1234)
        assert config.is_op_determinism_enabled()
        results.append((uniform(), tf.random.get_global_generator().normal([2]).numpy().tolist()))
        source.restore(saved)
    assert results[0] == results[1]
    assert source.capture() == saved
    assert stateful_random_ops.global_generator is None


# -- the plugin with TensorFlow loaded -------------------------------------------------------

AFTER = """
        def test_zz_sees_the_state_from_before():
            from tensorflow.python.eager import context
            from tensorflow.python.framework import config
            from tensorflow.python.ops import stateful_random_ops

            assert context.global_seed() is None
            assert stateful_random_ops.global_generator is None
            assert not config.is_op_determinism_enabled()
"""


@pytest.fixture
def clean_tensorflow() -> None:
    """The state the inner runs start from: no seed, no global generator, no determinism."""
    context.context()._set_global_seed(None)
    stateful_random_ops.global_generator = None
    config.disable_op_determinism()


@pytest.mark.usefixtures("clean_tensorflow")
def test_reports_a_test_that_sets_the_tensorflow_seed_and_puts_it_back(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import tensorflow as tf

        def test_seeds():
            tf.random.set_seed(1)
        """
        + AFTER
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["rngguard: * sources=*tensorflow*"])
    result.stdout.fnmatch_lines(
        ["*tensorflow reseeded during call: unset -> 1 at *:4 in test_seeds*"]
    )
    assert leaks_by_test(report, "phase", "source", "kind", "detail", "restored") == [
        ("test_seeds", "call", "tensorflow", "reseeded", "", True)
    ]


@pytest.mark.usefixtures("clean_tensorflow")
def test_reports_the_global_generator_and_op_determinism_by_detail(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import tensorflow as tf

        def test_resets_the_generator():
            tf.random.get_global_generator().reset_from_seed(5)

        def test_replaces_the_generator():
            tf.random.set_global_generator(tf.random.Generator.from_seed(1))

        def test_turns_on_op_determinism():
            tf.config.experimental.enable_op_determinism()
        """
        + AFTER
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=4, warnings=3)
    assert leaks_by_test(report, "kind", "detail") == [
        ("test_replaces_the_generator", "replaced", "global_generator"),
        ("test_resets_the_generator", "reseeded", "global_generator"),
        ("test_turns_on_op_determinism", "changed", "op_determinism"),
    ]
    assert [leak["origin"]["line"] for leak in report["leaks"]] == [4, 7, 10]


@pytest.mark.usefixtures("clean_tensorflow")
def test_fail_mode_fails_a_test_that_reseeds_tensorflow(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import tensorflow as tf

        def test_seeds():
            tf.compat.v1.set_random_seed(3)
        """
        + AFTER
    )
    result = run(pytester, "--rngguard=fail")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*tensorflow reseeded during call: unset -> 3 at *in test_seeds*"])


@pytest.mark.usefixtures("clean_tensorflow")
def test_attributes_keras_set_random_seed_to_keras(pytester: pytest.Pytester) -> None:
    keras = pytest.importorskip("keras")
    assert keras.utils.set_random_seed  # loaded before the inner run, like TensorFlow
    state = random.getstate()
    pytester.makepyfile(
        """
        import keras

        def test_seeds_everything():
            keras.utils.set_random_seed(42)
        """
        + AFTER
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=2, warnings=1)
    tensorflow = [leak for leak in report["leaks"] if leak["source"] == "tensorflow"]
    assert [(leak["kind"], leak["origin"]["function"]) for leak in tensorflow] == [
        ("reseeded", "set_random_seed")
    ]
    assert tensorflow[0]["origin"]["file"].endswith("rng_utils.py")
    assert tensorflow[0]["origin"]["stack"][0].endswith("in test_seeds_everything")
    assert {leak["source"] for leak in report["leaks"]} >= {"random", "tensorflow"}
    assert random.getstate() == state


@pytest.mark.usefixtures("clean_tensorflow")
def test_deterministic_marker_makes_tensorflow_draws_reproducible_and_puts_everything_back(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        import tensorflow as tf
        from tensorflow.python.framework import config

        draws = []

        @pytest.mark.deterministic(seed=7)
        def test_draws(rngguard):
            assert config.is_op_determinism_enabled()
            values = (
                tf.random.uniform([4]).numpy().tolist(),
                tf.random.get_global_generator().normal([4]).numpy().tolist(),
            )
            rngguard.record("values", values)
            draws.append(values)

        @pytest.mark.deterministic(seed=7)
        def test_same_seed_same_draws():
            values = (
                tf.random.uniform([4]).numpy().tolist(),
                tf.random.get_global_generator().normal([4]).numpy().tolist(),
            )
            assert values == draws[0]
        """
        + AFTER
    )
    result, report = run_with_report(pytester, "--rngguard-repeat=3")
    result.assert_outcomes(passed=3)
    assert report["leaks"] == []
    assert report["not_reproducible"] == []


@pytest.mark.usefixtures("clean_tensorflow")
def test_a_test_that_only_draws_is_not_a_leak_unless_strict(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import tensorflow as tf

        tf.random.set_seed(0)
        """
    )
    pytester.makepyfile(
        """
        import tensorflow as tf

        def test_draws():
            tf.random.uniform([3])
            tf.random.get_global_generator().normal([3])
        """
    )
    run(pytester).assert_outcomes(passed=1)
    stateful_random_ops.global_generator = None
    result, report = run_with_report(pytester, "--rngguard-strict")
    result.assert_outcomes(passed=1, warnings=1)
    assert leak_rows(report, "source", "kind", "detail") == [
        ("tensorflow", "advanced", ""),
        ("tensorflow", "advanced", "global_generator"),
    ]
