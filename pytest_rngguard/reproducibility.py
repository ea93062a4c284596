"""Recording what tests produce, comparing runs deeply, and fingerprints across processes."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import platform
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .errors import NotReproducibleError
from .files import read_json

FINGERPRINT_VERSION = 1

# -- normalising values ----------------------------------------------------------------------


class Array:
    """An array or tensor as compared: kind, dtype, shape and a CPU copy of the data."""

    __slots__ = ("data", "dtype", "kind", "shape")

    def __init__(self, kind: str, dtype: str, shape: tuple[int, ...], data: Any) -> None:
        self.kind, self.dtype, self.shape, self.data = kind, dtype, shape, data

    def digest_bytes(self) -> bytes:
        return _array_bits(self)


def _float_key(value: float) -> tuple[str, bytes]:
    if math.isnan(value):
        return ("float", b"nan")  # every NaN is the same NaN here
    return ("float", struct.pack("<d", value))


class _Unreadable(TypeError):
    """A part of a value that cannot be compared: (what it is, where inside the value, hint)."""


def normalize(value: Any, path: str = "value", *, record: str | None = None) -> Any:
    """A comparable, hashable-by-digest form of ``value``; TypeError for what cannot be
    compared reliably, naming the record (or ``path``) and where inside it."""
    try:
        return _normalize(value, path, "", set())
    except _Unreadable as exc:
        what, where, hint = exc.args
        head = f"{path}: cannot compare" if record is None else f"record {record!r}: cannot record"
        at = f" at {where}" if where else ""
        raise TypeError(f"{head} {what}{at}{hint}") from None


def _normalize(value: Any, path: str, where: str, inside: set[int]) -> Any:
    """``normalize`` below ``path``; ``where`` is the same place relative to the top value and
    ``inside`` the ids of the containers around it (a container met again is in itself)."""
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, float):
        return _float_key(value)
    if isinstance(value, complex):
        return ("complex", _float_key(value.real), _float_key(value.imag))
    array = _as_array(value, where)
    if array is not None:
        return array
    if id(value) in inside:
        raise _Unreadable(f"a {type(value).__name__} that contains itself", where, "")
    inside.add(id(value))
    try:
        found = _container(value, path, where, inside)
    finally:
        inside.discard(id(value))
    if found is not None:
        return found
    raise TypeError(
        f"rngguard cannot compare {path} of type {type(value).__module__}."
        f"{type(value).__qualname__} reliably (its repr or identity may differ between runs); "
        f"record numbers, strings, bytes, NumPy arrays, torch tensors, or containers and "
        f"dataclasses of these derived from it instead"
    )


def _container(value: Any, path: str, where: str, inside: set[int]) -> Any:
    def part(item: Any, step: str) -> Any:
        return _normalize(item, f"{path}{step}", f"{where}{step}", inside)

    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [part(v, f"[{i}]") for i, v in enumerate(value)])
    if isinstance(value, dict):
        items = [(part(k, " key"), v, k) for k, v in value.items()]
        items.sort(key=lambda item: repr(item[0]))
        return ("dict", [(nk, part(v, f"[{k!r}]")) for nk, v, k in items])
    if isinstance(value, (set, frozenset)):
        return ("set", sorted((part(v, " member") for v in value), key=repr))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return ("dataclass", type(value).__qualname__, part(fields, ""))
    return None


#: What to record instead of a tensor that has no plain data to compare.
_TENSOR_HINT = (
    "; record a dense CPU copy (tensor.to_dense(), torch.nested.to_padded_tensor()) or "
    "numbers derived from it"
)


def _tensor_kind(tensor: Any) -> str | None:
    """What kind of tensor without plain strided data ``tensor`` is; None for a plain one."""
    if tensor.is_nested:
        return "nested"
    if tensor.is_meta:
        return "meta"
    layout = str(tensor.layout).removeprefix("torch.")
    if layout != "strided":
        return "sparse" if layout == "sparse_coo" else layout
    return "quantized" if tensor.is_quantized else None


def _as_array(value: Any, where: str) -> Array | None:
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        data = numpy.array(value, copy=True)
        if data.dtype.hasobject:
            return None
        return Array("ndarray", data.dtype.str, tuple(data.shape), data)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        kind = _tensor_kind(value)
        if kind is not None:
            raise _Unreadable(f"a {kind} tensor", where, _TENSOR_HINT)
        data = value.detach().to("cpu", copy=True).contiguous()
        return Array("tensor", str(data.dtype).replace("torch.", ""), tuple(data.shape), data)
    return None


def _array_bits(array: Array) -> bytes:
    data = array.data
    if array.kind == "tensor":
        import torch

        flat = data.reshape(-1)
        if flat.is_floating_point() or flat.is_complex():
            flat = torch.where(torch.isnan(flat), torch.full_like(flat, float("nan")), flat)
        return bytes(flat.view(torch.uint8).numpy().tobytes()) if flat.numel() else b""
    import numpy

    flat = data.reshape(-1)
    if flat.dtype.char in "gG":
        return _long_double_bits(flat)
    if flat.dtype.kind in "fc":
        flat = numpy.where(numpy.isnan(flat), numpy.array(numpy.nan, dtype=flat.dtype), flat)
    return bytes(flat.tobytes())


def _long_double_bits(flat: Any) -> bytes:
    """Long doubles by value: x87's 80 bits sit in 12 or 16 bytes whose padding is whatever
    was in memory.  Per number: NaN or infinity, sign, exponent, then the fraction's bits in
    32-bit words (each step exact, in any binary format); every NaN is the same NaN."""
    import numpy

    if flat.dtype.kind == "c":
        flat = flat.view(flat.real.dtype)  # real, imaginary, real, ...
    nan, finite = numpy.isnan(flat), numpy.isfinite(flat)
    fraction, exponent = numpy.frexp(numpy.where(finite, flat, 0))
    columns = [nan * 2 + ~finite, numpy.signbit(flat) & ~nan, exponent]
    fraction = numpy.abs(fraction)
    for _ in range(-(-(numpy.finfo(flat.dtype).nmant + 1) // 32)):
        fraction = numpy.ldexp(fraction, 32)
        word = numpy.floor(fraction)
        columns.append(word)
        fraction -= word
    return bytes(numpy.stack([c.astype(numpy.uint32) for c in columns], axis=-1).tobytes())


def _element(array: Array, index: int) -> Any:
    flat = array.data.reshape(-1)
    item = flat[index]
    return item.item() if hasattr(item, "item") else item


def _unravel(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for size in reversed(shape):
        out.append(index % size if size else 0)
        index //= size if size else 1
    return tuple(reversed(out))


def _first_array_difference(a: Array, b: Array) -> str | None:
    if (a.kind, a.dtype, a.shape) != (b.kind, b.dtype, b.shape):
        return f": {a.kind} {a.dtype}{list(a.shape)} != {b.kind} {b.dtype}{list(b.shape)}"
    bits_a, bits_b = _array_bits(a), _array_bits(b)
    if bits_a == bits_b:
        return None
    count = 1
    for size in a.shape:
        count *= size
    itemsize = len(bits_a) // count if count else 1
    for i in range(count):
        if bits_a[i * itemsize : (i + 1) * itemsize] != bits_b[i * itemsize : (i + 1) * itemsize]:
            index = _unravel(i, a.shape)
            where = ", ".join(map(str, index))
            return f"[{where}]: {_element(a, i)!r} != {_element(b, i)!r}"
    return ": differ"  # pragma: no cover


def _show(node: Any) -> str:
    if isinstance(node, Array):
        return f"{node.kind} {node.dtype}{list(node.shape)}"
    if node[0] == "float":
        return "nan" if node[1] == b"nan" else repr(struct.unpack("<d", node[1])[0])
    if node[0] in ("list", "tuple", "dict", "set", "dataclass", "complex"):
        return f"<{node[0]}>"
    return repr(node[1])


def first_difference(a: Any, b: Any, path: str) -> str | None:
    """Where two normalized values first differ, as ``path: a != b``; None if equal."""
    if isinstance(a, Array) or isinstance(b, Array):
        if not (isinstance(a, Array) and isinstance(b, Array)):
            return f"{path}: {_show(a)} != {_show(b)}"
        found = _first_array_difference(a, b)
        return None if found is None else f"{path}{found}"
    if a[0] != b[0]:
        return f"{path}: {_show(a)} != {_show(b)}"
    kind = a[0]
    if kind in ("list", "tuple", "set"):
        return _first_item_difference(a[1], b[1], path)
    if kind == "dict":
        return _first_entry_difference(a[1], b[1], path)
    if kind == "dataclass":
        if a[1] != b[1]:
            return f"{path}: {a[1]} != {b[1]}"
        return first_difference(a[2], b[2], path)
    if kind == "complex":
        return first_difference(("tuple", [a[1], a[2]]), ("tuple", [b[1], b[2]]), path)
    if a != b:
        return f"{path}: {_show(a)} != {_show(b)}"
    return None


def _first_item_difference(a: list[Any], b: list[Any], path: str) -> str | None:
    """``first_difference`` of two sequences' normalized items."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        found = first_difference(x, y, f"{path}[{i}]")
        if found:
            return found
    if len(a) != len(b):
        return f"{path}: length {len(a)} != {len(b)}"
    return None


def _first_entry_difference(
    a: list[tuple[Any, Any]], b: list[tuple[Any, Any]], path: str
) -> str | None:
    """``first_difference`` of two dicts' normalized (key, value) entries."""
    keys_a = [k for k, _ in a]
    keys_b = [k for k, _ in b]
    if keys_a != keys_b:
        return f"{path}: keys {[_show(k) for k in keys_a]} != {[_show(k) for k in keys_b]}"
    for (key, x), (_, y) in zip(a, b, strict=True):
        found = first_difference(x, y, f"{path}[{_show(key)}]")
        if found:
            return found
    return None


def digest(node: Any) -> str:
    """A stable digest of a normalized value (for fingerprints)."""
    hasher = hashlib.sha256()

    def feed(item: Any) -> None:
        if isinstance(item, Array):
            hasher.update(f"A{item.kind}{item.dtype}{item.shape}".encode())
            hasher.update(item.digest_bytes())
        elif isinstance(item, (list, tuple)):
            hasher.update(f"({len(item)}".encode())
            for part in item:
                feed(part)
            hasher.update(b")")
        elif isinstance(item, bytes):
            hasher.update(b"b%d:" % len(item) + item)
        else:
            text = repr(item).encode()
            hasher.update(b"r%d:" % len(text) + text)

    feed(node)
    return hasher.hexdigest()[:32]


# -- recording -------------------------------------------------------------------------------


class Recorder:
    """What one run of a test produced: its records and the sources' states after the call."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}
        self.end_states: dict[str, Any] = {}

    def record(self, name: str, value: Any) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"rngguard.record() needs a non-empty string name, got {name!r}")
        if name in self.records:
            raise ValueError(f"rngguard.record(): {name!r} was already recorded in this run")
        self.records[name] = normalize(value, repr(name), record=name)


def compare_runs(first: Recorder, other: Recorder, run: int) -> str | None:
    """Why run ``run`` differs from run 1 (records first, then end states); None if same."""
    names_a, names_b = list(first.records), list(other.records)
    if names_a != names_b:
        return f"run {run} recorded {names_b} but run 1 recorded {names_a}"
    for name in names_a:
        found = first_difference(first.records[name], other.records[name], f"record {name!r}")
        if found:
            return f"run {run} differs from run 1 at {found}"
    # A source seeded in one run only (its library was loaded meanwhile) says nothing.
    for source in sorted(set(first.end_states) & set(other.end_states)):
        if first.end_states[source] != other.end_states[source]:
            return (
                f"run {run} differs from run 1 in the state of {source!r} after the call: the "
                f"test drew a different amount of randomness"
            )
    return None


class Rngguard:
    """The ``rngguard`` fixture's helper for the current test."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def record(self, name: str, value: Any) -> None:
        """Store a value the reproducibility gate compares across runs."""
        self._recorder.record(name, value)

    def snapshot(self) -> Any:
        from .guards import snapshot

        return snapshot()

    def assert_no_leak(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` and raise RNGLeakError if it changed global random state."""
        from .guards import guard

        with guard(label=getattr(fn, "__qualname__", repr(fn))):
            return fn(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class RepeatOutcome:
    """A test that is not reproducible: an entry of the JSON report's ``not_reproducible``."""

    nodeid: str
    runs: int
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "runs": self.runs, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RepeatOutcome:
        return cls(data["nodeid"], data["runs"], data["detail"])


def assert_reproducible(
    fn: Callable[..., Any], *args: Any, runs: int = 2, seed: int = 0, **kwargs: Any
) -> Any:
    """Run ``fn(*args, **kwargs)`` under ``deterministic(seed)`` ``runs`` times and compare the
    results deeply (arrays and tensors bit for bit, NaN-aware floats, nested containers).

    Returns the first run's result; raises NotReproducibleError naming the first differing
    path and both values.
    """
    from .determinism import deterministic

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise ValueError(f"assert_reproducible: runs must be an integer >= 2, got {runs!r}")
    results = []
    for _ in range(runs):
        with deterministic(seed):
            results.append(fn(*args, **kwargs))
    first = normalize(results[0], "result")
    for run, result in enumerate(results[1:], start=2):
        found = first_difference(first, normalize(result, "result"), "result")
        if found:
            raise NotReproducibleError(f"run {run} differs from run 1 at {found} (seed {seed})")
    return results[0]


# -- fingerprints ----------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Python's version and those of the guarded libraries loaded in this process."""
    found = {"python": platform.python_version()}
    for name in ("numpy", "torch", "tensorflow", "cupy"):
        version = getattr(sys.modules.get(name), "__version__", None)
        if isinstance(version, str):
            found[name] = version
    return found


def fingerprint(recorder: Recorder, seed: int | None) -> dict[str, Any]:
    records = {name: digest(value) for name, value in recorder.records.items()}
    states = {name: digest(_state_bytes(state)) for name, state in recorder.end_states.items()}
    total = digest([sorted(records.items()), sorted(states.items())])
    return {"seed": seed, "digest": total, "records": records, "states": states}


def _state_bytes(state: Any) -> Any:
    if isinstance(state, (bytes, str, int, float, bool)) or state is None:
        return state
    if isinstance(state, (tuple, list)):
        return [_state_bytes(s) for s in state]
    return repr(state)


def compare_fingerprint(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    if old.get("digest") == new.get("digest"):
        return None
    problems: list[str] = []
    before, after = old.get("records", {}), new.get("records", {})
    problems.extend(
        f"record {name!r}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    )
    # States only of the sources seeded in both: which libraries a run had loaded depends on
    # the other tests it ran with (a shard, -k), not on this test.
    before, after = old.get("states", {}), new.get("states", {})
    problems.extend(
        f"state of {name!r}"
        for name in sorted(set(before) & set(after))
        if before[name] != after[name]
    )
    if old.get("seed") != new.get("seed"):
        problems.append(f"seed {old.get('seed')} != {new.get('seed')}")
    if not problems:
        return None
    return "differs from the fingerprint file in " + ", ".join(problems)


def load_fingerprints(path: str) -> dict[str, Any] | None:
    """The fingerprint file's content, or None where there is none; ``ValueError`` naming
    the file and what is wrong with it where it is not a fingerprint file."""
    if not os.path.exists(path):
        return None
    checked: dict[str, Any] = read_json(
        path, "a pytest-rngguard fingerprint file", fingerprint_file_problem
    )
    return checked


_JSON_TYPES = (
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)
#: An entry's fields, as ``fingerprint`` writes them, and the JSON type of each.
_ENTRY_FIELDS = (
    ("seed", "an integer"),
    ("digest", "a string"),
    ("records", "an object"),
    ("states", "an object"),
)


def fingerprint_file_problem(data: Any) -> str | None:
    """What keeps ``data`` (a parsed JSON file) from being a fingerprint file, or None."""
    if not isinstance(data, dict):
        return f"it holds {_json_type(data)}, not an object"
    if "version" not in data:
        return "it has no version"
    if data["version"] != FINGERPRINT_VERSION or isinstance(data["version"], bool):
        return f"version {data['version']!r} is not supported (this plugin reads 1)"
    if "tests" not in data:
        return "it has no tests"
    return next(_problems(data), None)


def _problems(data: dict[str, Any]) -> Iterator[str]:
    yield from _typed("versions", data.get("versions", {}), "an object", "a string")
    yield from _typed("tests", data["tests"], "an object")
    for nodeid, entry in data["tests"].items():
        where = f"tests[{nodeid!r}]"
        yield from _typed(where, entry, "an object")
        for field, wanted in _ENTRY_FIELDS:
            if field not in entry:
                yield f"{where} has no {field}"
            else:
                values = "a string" if wanted == "an object" else None
                yield from _typed(f"{where}[{field!r}]", entry[field], wanted, values)


def _typed(where: str, value: Any, wanted: str, values: str | None = None) -> Iterator[str]:
    """What is wrong with ``value`` at ``where`` if it is not of the JSON type ``wanted``
    (``values``: the type of an object's values).  "an integer" also allows null: the seed
    of a test that applied none."""
    found = _json_type(value)
    if wanted == "an integer":
        ok = value is None or (found == "a number" and isinstance(value, int))
    else:
        ok = found == wanted
    if not ok:
        yield f"{where} is {found}, not {wanted}"
    elif values is not None:
        for key, item in value.items():
            yield from _typed(f"{where}[{key!r}]", item, values)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


def version_note(stored: dict[str, Any]) -> str | None:
    made, now = stored.get("versions", {}), versions()
    # A library loaded in one session only is not a version change.
    differing = [
        f"{k} {made[k]} -> {now[k]}"
        for k in sorted(now)
        if made.get(k) is not None and made[k] != now[k]
    ]
    if differing:
        return "the fingerprints were made with other versions (" + ", ".join(differing) + ")"
    return None


def fingerprint_file(tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": FINGERPRINT_VERSION,
        "versions": versions(),
        "tests": dict(sorted(tests.items())),
    }
