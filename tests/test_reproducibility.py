"""Comparing what runs produced: ``normalize``, ``first_difference`` and ``digest``; recording,
``assert_reproducible``, and fingerprints across processes."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import random
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.random  # NumPy 2 loads it lazily: the numpy source watches it
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from pytest_rngguard import NotReproducibleError, assert_reproducible
from pytest_rngguard.reproducibility import (
    Recorder,
    RepeatOutcome,
    compare_fingerprint,
    compare_runs,
    digest,
    fingerprint,
    fingerprint_file,
    first_difference,
    load_fingerprints,
    normalize,
    version_note,
    versions,
)

try:
    import torch
except ImportError:  # the 3.10, 3.12 and 3.13 CI environments have no torch
    torch = None  # type: ignore[assignment]

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def difference(a: Any, b: Any, path: str = "value") -> str | None:
    return first_difference(normalize(a, path), normalize(b, path), path)


def same_digest(a: Any, b: Any) -> bool:
    return digest(normalize(a)) == digest(normalize(b))


def nan_with_payload(payload: int, sign: int = 0) -> float:
    bits = (sign << 63) | 0x7FF8000000000000 | payload
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return value


@dataclasses.dataclass
class Sample:
    tokens: list[int]
    logits: Any


@dataclasses.dataclass
class OtherSample:
    tokens: list[int]
    logits: Any


# -- floats ----------------------------------------------------------------------------------


def test_floats_are_compared_bit_for_bit() -> None:
    assert difference(0.1 + 0.2, 0.3) == "value: 0.30000000000000004 != 0.3"
    assert difference(-0.0, 0.0) == "value: -0.0 != 0.0"
    assert difference(1.0, 1.0) is None
    assert not same_digest(-0.0, 0.0)


def test_every_nan_equals_every_other_nan_and_nothing_else() -> None:
    quiet, payload, negative = float("nan"), nan_with_payload(0x123), nan_with_payload(7, sign=1)
    assert difference(quiet, payload) is None
    assert difference(quiet, negative) is None
    assert same_digest([quiet], [payload])
    assert difference(quiet, 1.0) == "value: nan != 1.0"
    assert difference(float("inf"), quiet) == "value: inf != nan"


def test_numbers_of_different_types_differ() -> None:
    assert difference(1, 1.0) == "value: 1 != 1.0"
    assert difference(True, 1) == "value: True != 1"
    assert difference("1", b"1") == "value: '1' != b'1'"
    assert difference(1 + 2j, 1 + 3j) == "value[1]: 2.0 != 3.0"


# -- arrays and tensors ----------------------------------------------------------------------


def test_equal_arrays_and_tensors_have_no_difference() -> None:
    data = np.linspace(0, 1, 12).reshape(3, 4)
    assert difference(data, data.copy()) is None
    if torch is not None:
        assert difference(torch.from_numpy(data), torch.from_numpy(data.copy())) is None
    assert same_digest(data, data.copy())


def test_arrays_report_the_index_of_the_first_difference() -> None:
    first = np.zeros((5, 20))
    second = first.copy()
    second[3, 17] = 0.1234
    second[4, 0] = 1.0
    found = difference(first, second, "record 'logits'")
    assert found == "record 'logits'[3, 17]: 0.0 != 0.1234"


@needs_torch
def test_tensors_report_the_index_of_the_first_difference() -> None:
    first = torch.zeros(4, 3, 2, dtype=torch.float32)
    second = first.clone()
    second[2, 1, 1] = 0.5
    assert difference(first, second, "record 'x'") == "record 'x'[2, 1, 1]: 0.0 != 0.5"
    assert difference(torch.tensor([1, 2]), torch.tensor([1, 3])) == "value[1]: 2 != 3"


def test_negative_zero_in_an_array_or_tensor_is_a_difference() -> None:
    assert difference(np.array([1.0, 0.0]), np.array([1.0, -0.0])) == "value[1]: 0.0 != -0.0"
    if torch is not None:
        assert difference(torch.tensor([0.0]), torch.tensor([-0.0])) == "value[0]: 0.0 != -0.0"


def test_nans_in_arrays_and_tensors_are_equal_whatever_their_payload() -> None:
    first = np.array([1.0, float("nan"), nan_with_payload(1)])
    second = np.array([1.0, nan_with_payload(0x456, sign=1), float("nan")])
    assert difference(first, second) is None
    assert same_digest(first, second)
    if torch is not None:
        assert difference(torch.from_numpy(first), torch.from_numpy(second)) is None
    assert difference(first.astype(np.float32), second.astype(np.float32)) is None
    assert difference(np.array([float("nan")]), np.array([0.0])) == "value[0]: nan != 0.0"


def test_a_different_dtype_or_shape_is_reported() -> None:
    assert difference(np.zeros(3, np.float32), np.zeros(3)) == (
        "value: ndarray <f4[3] != ndarray <f8[3]"
    )
    assert difference(np.zeros((2, 3)), np.zeros((3, 2))) == (
        "value: ndarray <f8[2, 3] != ndarray <f8[3, 2]"
    )
    if torch is not None:
        assert difference(torch.zeros(3), torch.zeros(3, dtype=torch.float64)) == (
            "value: tensor float32[3] != tensor float64[3]"
        )
        assert difference(np.zeros(3), torch.zeros(3, dtype=torch.float64)) == (
            "value: ndarray <f8[3] != tensor float64[3]"
        )
    assert difference(np.zeros(2), [0.0, 0.0]) == "value: ndarray <f8[2] != <list>"


def test_empty_and_zero_dimensional_arrays_compare() -> None:
    assert difference(np.zeros(0), np.zeros(0)) is None
    assert difference(np.zeros((0, 3)), np.zeros((0, 2))) == (
        "value: ndarray <f8[0, 3] != ndarray <f8[0, 2]"
    )
    assert difference(np.array(1.5), np.array(2.5)) == "value[]: 1.5 != 2.5"


def test_arrays_are_copied_when_normalized() -> None:
    data = np.zeros(3)
    normalized = normalize(data)
    data[0] = 1.0
    assert first_difference(normalized, normalize(np.zeros(3)), "value") is None


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    array=npst.arrays(
        st.sampled_from([np.float64, np.float32, np.int64, np.uint8]),
        npst.array_shapes(min_dims=1, max_dims=3, max_side=5),
    ),
    as_tensor=st.booleans() if torch is not None else st.just(False),
)
def test_any_changed_element_is_found_at_its_index(
    data: st.DataObject, array: np.ndarray, as_tensor: bool
) -> None:
    index = data.draw(st.integers(0, array.size - 1), label="index")
    changed = array.copy()
    flat = changed.reshape(-1)
    flat[index] = data.draw(npst.from_dtype(array.dtype), label="new value")
    old, new = array.reshape(-1)[index], flat[index]
    assume(old.tobytes() != new.tobytes() and not (np.isnan(old) and np.isnan(new)))
    first, second = (
        (torch.from_numpy(array), torch.from_numpy(changed))
        if as_tensor
        else (
            array,
            changed,
        )
    )
    where = ", ".join(str(int(i)) for i in np.unravel_index(index, array.shape))
    found = difference(first, second, "record 'x'")
    assert found is not None
    assert found.startswith(f"record 'x'[{where}]: ")
    assert not same_digest(first, second)


# -- containers ------------------------------------------------------------------------------


def test_nested_containers_report_the_path_to_the_difference() -> None:
    first: dict[str, Any] = {"layers": [{"weights": (1.0, 2.0, 3.0)}], "name": "m"}
    second = copy.deepcopy(first)
    second["layers"][0]["weights"] = (1.0, 2.0, 3.5)
    assert difference(first, second, "record 'model'") == (
        "record 'model'['layers'][0]['weights'][2]: 3.0 != 3.5"
    )


def test_dataclasses_report_the_field_path() -> None:
    first = Sample([1, 2, 3], np.zeros((4, 20)))
    second = Sample([1, 2, 3], np.zeros((4, 20)))
    second.logits[3, 17] = 1.0
    assert difference(first, second, "record 'x'") == "record 'x'['logits'][3, 17]: 0.0 != 1.0"
    assert difference(Sample([1], None), OtherSample([1], None)) == "value: Sample != OtherSample"


def test_container_shapes_and_kinds_are_reported() -> None:
    assert difference([1, 2], [1, 2, 3]) == "value: length 2 != 3"
    assert difference([1, 2], (1, 2)) == "value: <list> != <tuple>"
    assert difference({"a": 1}, {"b": 1}) == "value: keys [\"'a'\"] != [\"'b'\"]"
    assert difference({1, 2}, {1, 3}) == "value[1]: 2 != 3"


def test_dict_order_does_not_matter() -> None:
    assert difference({"a": 1, "b": 2}, {"b": 2, "a": 1}) is None
    assert same_digest({"a": 1, "b": 2}, {"b": 2, "a": 1})


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=4)
    | st.binary(max_size=4)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=3) | st.integers(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(value=values)
def test_any_value_equals_its_copy(value: Any) -> None:
    assert difference(value, copy.deepcopy(value)) is None
    assert same_digest(value, copy.deepcopy(value))


@settings(max_examples=150, deadline=None)
@given(first=values, second=values)
def test_values_differ_exactly_when_their_digests_differ(first: Any, second: Any) -> None:
    assert (difference(first, second) is None) == same_digest(first, second)


# -- what cannot be compared -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        (object(), "value", "builtins.object"),
        ([1, lambda: 1], "value[1]", "builtins.function"),
        pytest.param(
            {"model": torch.nn.Linear(2, 2) if torch is not None else None},
            "value['model']",
            "torch.nn.modules.linear.Linear",
            marks=needs_torch,
        ),
        (np.array([1, None], dtype=object), "value", "numpy.ndarray"),
    ],
)
def test_objects_whose_repr_may_differ_are_refused_with_what_to_record_instead(
    value: Any, path: str, type_name: str
) -> None:
    with pytest.raises(TypeError) as refused:
        normalize(value)
    message = str(refused.value)
    assert f"cannot compare {path} of type {type_name} reliably" in message
    assert "record numbers, strings, bytes, NumPy arrays, torch tensors" in message


# -- digests ---------------------------------------------------------------------------------


def test_digests_are_the_same_in_every_release() -> None:
    assert digest(normalize({"a": [1, 2.5, "x", None, b"y", (True,)]})) == (
        "65b929c633f5947e2b8c85944e1001ce"
    )


@pytest.mark.skipif(sys.byteorder != "little", reason="dtype strings name the byte order")
def test_array_digests_are_the_same_in_every_release() -> None:
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert digest(normalize(array)) == "478e07e9651b0ad5fac7cc47b295ee23"


def test_digests_tell_arrays_from_tensors_and_dtypes_apart() -> None:
    data = np.arange(4, dtype=np.float32)
    if torch is not None:
        assert not same_digest(data, torch.from_numpy(data))
    assert not same_digest(data, data.astype(np.float64))
    assert not same_digest(data, data.reshape(2, 2))


# -- assert_reproducible ---------------------------------------------------------------------


def seeded_generation(steps: int, *, scale: float = 1.0) -> dict[str, Any]:
    """Draws from each library's global generator (torch's where it is installed)."""
    return {
        "python": [random.random() * scale for _ in range(steps)],
        "numpy": np.random.normal(size=(steps, 3)),
        **({"torch": torch.randn(steps, 2) * scale} if torch is not None else {}),
        "choice": random.choice("abcdef"),
    }


def test_assert_reproducible_passes_seeded_code_and_returns_the_first_result() -> None:
    result = assert_reproducible(seeded_generation, 5, runs=3, seed=4, scale=2.0)
    assert len(result["python"]) == 5
    assert result["numpy"].shape == (5, 3)


def test_assert_reproducible_runs_under_the_given_seed() -> None:
    result = assert_reproducible(random.random, seed=17)
    assert result == random.Random(17).random()


def test_assert_reproducible_puts_the_global_state_back() -> None:
    def states() -> tuple[Any, ...]:
        if torch is None:
            return (random.getstate(),)
        return (random.getstate(), torch.get_rng_state().numpy().tobytes())

    before = states()
    assert_reproducible(seeded_generation, 3)
    assert states() == before


def test_assert_reproducible_names_the_path_and_both_values_for_os_urandom() -> None:
    produced: list[bytes] = []

    def tokens() -> dict[str, Any]:
        produced.append(os.urandom(8))
        return {"ids": [1, 2], "noise": produced[-1]}

    with pytest.raises(NotReproducibleError) as raised:
        assert_reproducible(tokens)
    assert isinstance(raised.value, AssertionError)
    assert str(raised.value) == (
        f"run 2 differs from run 1 at result['noise']: {produced[0]!r} != {produced[1]!r} (seed 0)"
    )


def test_assert_reproducible_catches_code_that_reads_the_clock() -> None:
    produced: list[int] = []

    def timed() -> list[Any]:
        produced.append(time.perf_counter_ns())
        return ["start", produced[-1]]

    with pytest.raises(NotReproducibleError, match=r"at result\[1\]: \d+ != \d+ \(seed 3\)"):
        assert_reproducible(timed, seed=3)
    assert produced[0] != produced[1]


def test_assert_reproducible_catches_an_unseeded_local_generator() -> None:
    with pytest.raises(NotReproducibleError, match=r"run 2 differs from run 1 at result\[0\]: "):
        assert_reproducible(lambda: np.random.default_rng().random(4))


def test_assert_reproducible_names_the_run_that_differed() -> None:
    calls = iter([1, 1, 1, 2])
    with pytest.raises(NotReproducibleError, match=r"^run 4 differs from run 1 at result: 1 != 2"):
        assert_reproducible(lambda: next(calls), runs=4)


@pytest.mark.parametrize("runs", [1, 0, True, 2.0, "2"])
def test_assert_reproducible_needs_at_least_two_runs(runs: Any) -> None:
    with pytest.raises(ValueError, match="runs must be an integer >= 2"):
        assert_reproducible(random.random, runs=runs)


def test_assert_reproducible_refuses_results_it_cannot_compare() -> None:
    with pytest.raises(TypeError, match=r"cannot compare result of type builtins\.object"):
        assert_reproducible(object)


# -- recording -------------------------------------------------------------------------------


def recorder(**records: Any) -> Recorder:
    made = Recorder()
    for name, value in records.items():
        made.record(name, value)
    return made


def test_record_refuses_an_empty_or_repeated_name() -> None:
    made = recorder(x=1)
    with pytest.raises(ValueError, match="'x' was already recorded"):
        made.record("x", 2)
    with pytest.raises(TypeError, match="non-empty string name"):
        made.record("", 2)
    with pytest.raises(TypeError, match="non-empty string name"):
        made.record(3, 2)  # type: ignore[arg-type]


@needs_torch
def test_record_refuses_a_value_it_cannot_compare_naming_the_record() -> None:
    with pytest.raises(TypeError, match=r"cannot compare 'model'\['net'\] of type"):
        recorder(model={"net": torch.nn.Linear(1, 1)})


def test_compare_runs_names_the_record_index_and_both_values() -> None:
    first = recorder(logits=np.zeros((4, 20)))
    changed = np.zeros((4, 20))
    changed[3, 17] = 0.1235
    assert compare_runs(first, recorder(logits=np.zeros((4, 20))), 2) is None
    assert compare_runs(first, recorder(logits=changed), 2) == (
        "run 2 differs from run 1 at record 'logits'[3, 17]: 0.0 != 0.1235"
    )


def test_compare_runs_names_records_that_only_one_run_made() -> None:
    assert compare_runs(recorder(a=1), recorder(a=1, b=2), 3) == (
        "run 3 recorded ['a', 'b'] but run 1 recorded ['a']"
    )


def test_compare_runs_notices_a_different_amount_of_randomness_drawn() -> None:
    first, other = recorder(a=1), recorder(a=1)
    first.end_states, other.end_states = {"numpy": b"one"}, {"numpy": b"two"}
    assert compare_runs(first, other, 2) == (
        "run 2 differs from run 1 in the state of 'numpy' after the call: the test drew a "
        "different amount of randomness"
    )


# -- fingerprints ----------------------------------------------------------------------------


def test_a_seed_that_changed_nothing_is_not_a_difference() -> None:
    # What the test produced is what matters: a test that draws nothing may change seed.
    assert compare_fingerprint(fingerprint(recorder(x=1), 0), fingerprint(recorder(x=1), 1)) is None


def test_equal_runs_have_equal_fingerprints() -> None:
    first = fingerprint(recorder(x=np.arange(3), y="a"), 7)
    second = fingerprint(recorder(x=np.arange(3), y="a"), 7)
    assert first == second
    assert set(first) == {"seed", "digest", "records", "states"}
    assert first["seed"] == 7
    assert set(first["records"]) == {"x", "y"}
    assert compare_fingerprint(first, second) is None
    assert json.loads(json.dumps(first)) == first


def test_compare_fingerprint_names_what_differs() -> None:
    old = fingerprint(recorder(x=1, y=2), 0)
    assert compare_fingerprint(old, fingerprint(recorder(x=1, y=3), 0)) == (
        "differs from the fingerprint file in record 'y'"
    )
    assert compare_fingerprint(old, fingerprint(recorder(x=5, y=2), 1)) == (
        "differs from the fingerprint file in record 'x', seed 0 != 1"
    )
    seeded = recorder(x=1, y=2)
    seeded.end_states = {"torch": b"\x01"}
    drawn = recorder(x=1, y=2)
    drawn.end_states = {"torch": b"\x02"}
    assert compare_fingerprint(fingerprint(seeded, 0), fingerprint(drawn, 0)) == (
        "differs from the fingerprint file in state of 'torch'"
    )


def test_compare_fingerprint_ignores_a_source_seeded_in_one_run_only() -> None:
    # torch was loaded (and so seeded) in one session only: a shard, or -k.
    seeded = recorder(x=1)
    seeded.end_states = {"torch": b"\x01"}
    assert compare_fingerprint(fingerprint(recorder(x=1), 0), fingerprint(seeded, 0)) is None
    assert compare_fingerprint(fingerprint(seeded, 0), fingerprint(recorder(x=1), 0)) is None


def test_fingerprints_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fingerprints.json"
    assert load_fingerprints(str(path)) is None
    tests = {"b.py::t": fingerprint(recorder(x=1), 1), "a.py::t": fingerprint(recorder(), 2)}
    path.write_text(json.dumps(fingerprint_file(tests)), encoding="utf-8")
    loaded = load_fingerprints(str(path))
    assert loaded is not None
    assert list(loaded["tests"]) == ["a.py::t", "b.py::t"]
    assert loaded["tests"]["b.py::t"] == tests["b.py::t"]
    assert version_note(loaded) is None


def test_a_file_that_is_not_a_fingerprint_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"version": 2, "tests": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="is not a pytest-rngguard fingerprint file"):
        load_fingerprints(str(path))


def test_version_note_names_the_versions_that_changed() -> None:
    stored = {"versions": {**versions(), "python": "3.0.0", "numpy": "1.0.0"}}
    assert version_note(stored) == (
        "the fingerprints were made with other versions (numpy 1.0.0 -> "
        f"{np.__version__}, python 3.0.0 -> {platform.python_version()})"
    )


def test_version_note_ignores_a_library_loaded_in_one_session_only() -> None:
    made = {k: v for k, v in versions().items() if k != "numpy"}
    assert version_note({"versions": made}) is None


def test_versions_name_python_and_the_loaded_libraries() -> None:
    loaded = {"python": platform.python_version(), "numpy": np.__version__}
    if torch is not None:
        loaded["torch"] = torch.__version__
    # Loaded by other tests of this process where installed (the GPU suite imports CuPy).
    for name in ("tensorflow", "cupy"):
        if name in sys.modules:
            loaded[name] = sys.modules[name].__version__
    assert versions() == loaded


def test_a_repeat_outcome_has_the_fields_of_the_json_report() -> None:
    outcome = RepeatOutcome("t.py::test", 2, "run 2 differs from run 1 at record 'x': 1 != 2")
    assert outcome.to_json() == {
        "nodeid": "t.py::test",
        "runs": 2,
        "detail": "run 2 differs from run 1 at record 'x': 1 != 2",
    }
