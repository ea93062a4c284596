"""The ``torch.flags`` source watches every torch setting that decides whether two runs agree
(matmul precision, TF32, the ``fp32_precision`` tree, reduced-precision reductions, default
dtype, beside the determinism switches), and the ``deterministic`` recipe sets full float32
precision and puts everything back.

The oracle is torch's own public getters (``tests/torch_settings.py``), read before and after:
any sequence of setter calls, through the legacy and the fine-grained APIs mixed, before and
inside a guarded stretch, must leave every getter reading what it read before (a getter
that raised raising again), the report must name exactly the settings whose getters changed,
and the plugin must never warn.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from conftest import run_with_report  # noqa: E402
from torch_settings import (  # noqa: E402  (needs torch)
    GETTERS,
    Operation,
    details_of,
    hidden_cudnn_tf32,
    hidden_matmul_precision,
    inheritance,
    observe,
    operations,
    perform_all,
    precision_operations,
    reset_to_defaults,
    torch_defaults_afterwards,
)

from pytest_rngguard import deterministic  # noqa: E402
from pytest_rngguard.sources import CHANGED  # noqa: E402
from pytest_rngguard.sources.torch_flags import (  # noqa: E402
    DETAILS,
    TorchFlags,
    TorchFlagsSource,
    cudnn_tf32,
    current_flags,
    matmul_precision,
    set_flags,
)

pytestmark = pytest.mark.allow_rng_leak(
    "torch.flags", reason="the settings under test (each test puts torch's defaults back)"
)

#: Any setter calls, half of them about the matmul and cuDNN precision (the states where the
#: legacy getters raise are a few such calls deep).
sequences = st.lists(st.one_of(operations, precision_operations), max_size=8)

#: What the deterministic recipe reads inside, getter by getter; the other getters read
#: what they read before the block.
RECIPE_READS = {
    "torch.are_deterministic_algorithms_enabled()": True,
    "torch.is_deterministic_algorithms_warn_only_enabled()": False,
    "torch.backends.cudnn.deterministic": True,
    "torch.backends.cudnn.benchmark": False,
    "torch.get_float32_matmul_precision()": "highest",
    "torch.backends.cuda.matmul.allow_tf32": False,
    "torch.backends.cudnn.allow_tf32": False,
    "torch.backends.cuda.matmul.fp32_precision": "ieee",
    "torch.backends.cudnn.conv.fp32_precision": "ieee",
    "torch.backends.cudnn.rnn.fp32_precision": "ieee",
    "torch.backends.mkldnn.matmul.fp32_precision": "ieee",
    "torch.backends.mkldnn.conv.fp32_precision": "ieee",
    "torch.backends.mkldnn.rnn.fp32_precision": "ieee",
}


@pytest.fixture(autouse=True)
def _torch_defaults(torch: Any) -> Any:
    """Each test starts from torch's defaults and leaves them (the session fixture ``torch``
    has loaded what ``use_deterministic_algorithms`` imports the first time)."""
    reset_to_defaults()
    yield
    reset_to_defaults()


class NoWarnings(warnings.catch_warnings):
    """Record every warning in the block, so the test can assert there was none."""

    def __init__(self) -> None:
        super().__init__(record=True)

    def __enter__(self) -> list[warnings.WarningMessage]:
        caught = super().__enter__()
        warnings.simplefilter("always")
        assert caught is not None
        return caught


# -- the oracle itself -----------------------------------------------------------------------


def test_the_oracle_reset_gives_what_a_fresh_torch_reads() -> None:
    code = (
        "import json, torch_settings as s; "
        "print(json.dumps({k: repr(v) for k, v in s.observe().items()}))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=__file__.rsplit("/", 1)[0],
    )
    perform_all([("set_float32_matmul_precision", "high"), ("fp32_precision", "bf16")])
    reset_to_defaults()
    assert json.loads(fresh.stdout) == {k: repr(v) for k, v in observe().items()}


def test_every_setting_has_a_detail_and_every_getter_one_of_them() -> None:
    assert len(DETAILS) == len(TorchFlags._fields)
    assert {detail for _, detail in GETTERS.values()} == set(DETAILS)


def test_mixing_the_apis_makes_torchs_legacy_getters_raise() -> None:
    # The states the source must read without raising itself (see TorchFlags).
    perform_all([("set_float32_matmul_precision", "high"), ("cuda.matmul.fp32_precision", "ieee")])
    assert observe()["torch.backends.cuda.matmul.allow_tf32"] is RuntimeError
    assert observe()["torch.get_float32_matmul_precision()"] == "high"
    perform_all(
        [("set_float32_matmul_precision", "highest"), ("cuda.matmul.fp32_precision", "tf32")]
    )
    seen = observe()
    assert seen["torch.get_float32_matmul_precision()"] is RuntimeError
    assert seen["torch.backends.cuda.matmul.allow_tf32"] is RuntimeError
    perform_all([("cudnn.conv.fp32_precision", "ieee")])
    assert observe()["torch.backends.cudnn.allow_tf32"] is RuntimeError
    flags = current_flags()
    assert flags.float32_matmul_precision is None
    assert flags.cuda_matmul_allow_tf32 is None
    assert flags.cudnn_allow_tf32 is None


@settings(max_examples=300, deadline=None)
@given(sequence=st.lists(precision_operations, max_size=8))
def test_the_legacy_settings_behind_raising_getters_are_told_from_the_others(
    sequence: list[Operation],
) -> None:
    # Restoring needs them: only torch's legacy setters set them, so they are set first.
    perform_all(sequence)
    flags = current_flags()
    assert matmul_precision(flags) == hidden_matmul_precision()
    told = cudnn_tf32(flags)
    if told is None:  # the getter raises whatever the switch is
        assert flags.cudnn_allow_tf32 is None
        assert (flags.cudnn_conv_fp32_precision == "tf32") != (
            flags.cudnn_rnn_fp32_precision == "tf32"
        )
    else:
        assert told == hidden_cudnn_tf32()


# -- the source ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(before=sequences, inside=sequences)
def test_restore_gives_every_getter_back_after_any_setter_calls(
    before: list[Operation], inside: list[Operation]
) -> None:
    source = TorchFlagsSource()
    with torch_defaults_afterwards():
        perform_all(before)
        expected = observe()
        with NoWarnings() as caught:
            state = source.capture()
        perform_all(inside)
        changed = details_of(expected, observe())
        with NoWarnings() as more:
            differences = source.classify(state, source.capture())
            source.restore(state)
            again = source.capture()
        assert observe() == expected
        assert again == state
        assert caught == more == []
        assert {d.detail for d in differences} == changed
        assert {d.kind for d in differences} <= {CHANGED}
        assert len({d.detail for d in differences}) == len(differences)


@settings(max_examples=100, deadline=None)
@given(before=sequences, inside=sequences, order=st.permutations(range(3)))
def test_restoring_from_any_state_in_any_order_of_states_is_exact(
    before: list[Operation], inside: list[Operation], order: list[int]
) -> None:
    # Three states, then each put back from whichever the last one was.
    source = TorchFlagsSource()
    with torch_defaults_afterwards():
        states, seen = [], []
        for sequence in ([], before, inside):
            perform_all(sequence)
            states.append(source.capture())
            seen.append(observe())
        for index in order:
            source.restore(states[index])
            assert observe() == seen[index]
            assert source.capture() == states[index]


def test_a_restored_setting_follows_the_settings_above_it_again() -> None:
    # A conftest turns TF32 on everywhere with the generic setting; a test sets one
    # operation's own, and vLLM's worker resets the matmul precision: once put back, both
    # matmul settings inherit the generic one again, as they did before the test.
    source = TorchFlagsSource()
    torch.backends.fp32_precision = "tf32"
    before = source.capture()
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.set_float32_matmul_precision("highest")
    source.restore(before)
    torch.backends.fp32_precision = "ieee"
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"


def test_classify_names_each_setting_with_its_values() -> None:
    source = TorchFlagsSource()
    before = source.capture()
    perform_all(
        [
            ("set_float32_matmul_precision", "high"),
            ("cudnn.allow_tf32", False),
            ("cuda.matmul.allow_bf16_reduced_precision_reduction", (False, False)),
            ("set_default_dtype", torch.float64),
        ]
    )
    assert {d.detail: d.description for d in source.classify(before, source.capture())} == {
        "float32_matmul_precision": "'highest' -> 'high'",
        "cuda.matmul.allow_tf32": "False -> True",
        "cuda.matmul.fp32_precision": "'none' -> 'tf32'",
        "mkldnn.matmul.fp32_precision": "'none' -> 'tf32'",
        "cudnn.allow_tf32": "True -> False",
        "cudnn.conv.fp32_precision": "'tf32' -> 'none'",
        "cudnn.rnn.fp32_precision": "'tf32' -> 'none'",
        "cuda.matmul.allow_bf16_reduced_precision_reduction": "True -> False",
        "cuda.matmul.allow_bf16_reduced_precision_reduction_split_k": "True -> False",
        "default_dtype": "torch.float32 -> torch.float64",
    }
    before = source.capture()
    perform_all([("cuda.matmul.fp32_precision", "ieee")])
    assert [(d.detail, d.description) for d in source.classify(before, source.capture())] == [
        (
            "cuda.matmul.allow_tf32",
            "True -> unreadable (legacy and fp32_precision settings mixed)",
        ),
        ("cuda.matmul.fp32_precision", "'tf32' -> 'ieee'"),
    ]


def test_resetting_the_precision_to_highest_from_the_start_is_a_change() -> None:
    # What vLLM's worker does: "highest" is torch's default, but the fine-grained setting
    # behind it reads "ieee" after the call and "none" before.
    source = TorchFlagsSource()
    before = source.capture()
    torch.set_float32_matmul_precision("highest")
    assert [(d.detail, d.description) for d in source.classify(before, source.capture())] == [
        ("cuda.matmul.fp32_precision", "'none' -> 'ieee'"),
        ("mkldnn.matmul.fp32_precision", "'none' -> 'ieee'"),
    ]
    source.restore(before)
    assert torch.backends.cuda.matmul.fp32_precision == "none"


# -- the deterministic recipe ----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(before=sequences, inside=sequences, warn_only=st.booleans())
def test_deterministic_computes_float32_in_float32_and_puts_every_setting_back(
    before: list[Operation], inside: list[Operation], warn_only: bool
) -> None:
    with torch_defaults_afterwards():
        perform_all(before)
        expected = observe()
        block = deterministic(7, warn_only=warn_only)
        with NoWarnings() as entering:
            block.__enter__()
        try:
            seen = observe()
            perform_all(inside)
        finally:
            with NoWarnings() as leaving:
                block.__exit__(None, None, None)
        assert observe() == expected
        assert entering == leaving == []
        wanted = {
            **RECIPE_READS,
            "torch.is_deterministic_algorithms_warn_only_enabled()": warn_only,
        }
        assert {name: seen[name] for name in wanted} == wanted
        assert {n: v for n, v in seen.items() if n not in wanted} == {
            n: v for n, v in expected.items() if n not in wanted
        }


@settings(max_examples=50, deadline=None)
@given(before=sequences, inside=sequences)
def test_deterministic_without_torch_flags_leaves_every_setting_alone(
    before: list[Operation], inside: list[Operation]
) -> None:
    with torch_defaults_afterwards():
        perform_all(before)
        expected = observe()
        with deterministic(7, torch_flags=False):
            assert observe() == expected
            perform_all(inside)
            changed = observe()
        # Without torch_flags the block leaves the settings to whoever changed them.
        assert observe() == changed


# -- end to end: a guarded test, a deterministic one -----------------------------------------


def test_names_the_library_call_that_reset_the_matmul_precision(pytester: pytest.Pytester) -> None:
    # What vLLM's in-process GPU worker does when it starts.
    pytester.makepyfile(
        worker="""
        import torch

        def init_device():
            torch.set_float32_matmul_precision("highest")
        """,
        test_engine="""
        import worker

        def test_starts_the_engine():
            worker.init_device()
        """,
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=1)
    assert observe()["torch.backends.cuda.matmul.fp32_precision"] == "none"
    assert sorted(
        (leak["detail"], leak["kind"], leak["origin"]["function"], leak["restored"])
        for leak in report["leaks"]
    ) == [
        ("cuda.matmul.fp32_precision", CHANGED, "init_device", True),
        ("mkldnn.matmul.fp32_precision", CHANGED, "init_device", True),
    ]


INNER = """
import pytest
from torch_settings import perform_all

import torch

@pytest.mark.parametrize("index", range({count}))
def test_changes_settings(index):
    perform_all({tests!r}[index])

@pytest.mark.deterministic
def test_deterministic_changes_settings():
    perform_all({inside!r})
"""

#: The details the recipe sets: a deterministic test's own changes to them are undone with
#: the recipe, not reported (as for the environment variables it sets).
RECIPE_DETAILS = {GETTERS[name][1] for name in RECIPE_READS}


def changes_from(before: list[Operation], sequence: list[Operation], recipe: bool) -> set[str]:
    """The details of the settings ``sequence`` changes, replayed from torch's defaults after
    ``before`` (inside a ``deterministic`` block with ``recipe``)."""
    reset_to_defaults()
    perform_all(before)
    with deterministic(0) if recipe else contextlib.nullcontext():
        start = observe()
        perform_all(sequence)
        changed = details_of(start, observe())
    reset_to_defaults()
    return changed - RECIPE_DETAILS if recipe else changed


def leaves_hidden_inheritance(before: list[Operation], sequence: list[Operation]) -> bool:
    """Whether ``sequence``, once every getter reads again what it read before (the plugin's
    put-back), leaves a node of the ``fp32_precision`` tree holding its own value where it
    inherited its parent's before, or the reverse.  torch's getters read the same in both
    cases, so no guard that reads them can see or undo it; only a later change of the parent
    shows it (docs/sources.md, "What it cannot see")."""
    reset_to_defaults()
    perform_all(before)
    start = current_flags()
    expected = inheritance()
    reset_to_defaults()
    perform_all(before)
    perform_all(sequence)
    set_flags(start, current_flags())
    found = inheritance()
    reset_to_defaults()
    return found != expected


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(before=sequences, tests=st.lists(sequences, min_size=1, max_size=3), inside=sequences)
def test_the_plugin_reports_each_changed_setting_and_puts_everything_back(
    pytester: pytest.Pytester,
    before: list[Operation],
    tests: list[list[Operation]],
    inside: list[Operation],
) -> None:
    # The one coupling between tests no reader of torch's getters can undo (see above).
    assume(not any(leaves_hidden_inheritance(before, sequence) for sequence in tests))
    wanted = sorted(
        (f"test_changes_settings[{index}]", detail)
        for index, sequence in enumerate(tests)
        for detail in changes_from(before, sequence, recipe=False)
    ) + sorted(
        ("test_deterministic_changes_settings", detail)
        for detail in changes_from(before, inside, recipe=True)
    )
    with torch_defaults_afterwards():
        perform_all(before)
        expected = observe()
        pytester.makepyfile(
            test_settings=INNER.format(count=len(tests), tests=tests, inside=inside)
        )
        with NoWarnings() as caught:
            result, report = run_with_report(
                # Any other warning fails the inner test it is raised in.
                pytester,
                "-W",
                "error",
                "-W",
                "default::pytest_rngguard.RNGLeakWarning",
            )
        result.assert_outcomes(passed=len(tests) + 1)
        assert observe() == expected
    leaks = [leak for leak in report["leaks"] if leak["source"] == "torch.flags"]
    assert sorted((leak["nodeid"].split("::")[1], leak["detail"]) for leak in leaks) == wanted
    assert {leak["kind"] for leak in leaks} <= {CHANGED}
    assert all(leak["restored"] for leak in leaks)
    assert [str(w.message) for w in caught if w.category.__name__ != "RNGLeakWarning"] == []
