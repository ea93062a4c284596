"""PyTorch's default CPU generator (``torch.manual_seed``, ``torch.rand``, ...)."""

from __future__ import annotations

import array
import functools
import sys
from collections.abc import Sequence
from typing import Any

from . import _mt19937 as mt
from .base import (
    ADVANCED,
    DREW,
    REPLACED,
    RESEEDED,
    Difference,
    ModuleSource,
    Seeder,
    TraceTarget,
    mt_kind,
)

# torch's serialised CPU generator state (``get_state``): u64 initial seed, i32 left,
# i32 seeded, u64 next, u64 state[624] (32-bit words), then the cached normals.
_LEFT = 8
_WORDS = 24
# The generator's own memory (``at::mt19937``): u64 seed, i32 left, bool seeded, u32 next,
# u32 state[624], then the cached float and double normals (std::optional each).
_ENGINE_KEY = 20
_ENGINE_KEY_END = _ENGINE_KEY + 624 * 4
_ENGINE_BYTES = 2544
_SERIALISED_BYTES = 5056
# Bytes of the generator's memory that are not state: struct padding (13-15 after the bool,
# 2516-2519 after the engine, 2525-2527 and 2537-2543 after each optional's flag) and the
# payload of a cached normal whose flag (byte 2524 for the float at 2520, 2536 for the double
# at 2528) says it is empty.  Whatever is left there is stale, so a capture zeroes it: equal
# states then capture equal bytes.
_FLOAT_FLAG = 2524
_DOUBLE_FLAG = 2536
_NO_FLOAT = bytes(5)
_NO_DOUBLE = bytes(9)


def _normalised(raw: bytes) -> bytes:
    """The generator's bytes with padding and empty cached normals zeroed."""
    return b"".join(
        (
            raw[:13],
            bytes(3),
            raw[16:2516],
            bytes(4),
            raw[2520:2525] if raw[_FLOAT_FLAG] else _NO_FLOAT,
            bytes(3),
            raw[2528:2537] if raw[_DOUBLE_FLAG] else _NO_DOUBLE,
            bytes(7),
        )
    )


def _left(raw: bytes) -> int:
    """Words left before the next twist."""
    return int.from_bytes(raw[_LEFT : _LEFT + 4], "little", signed=True)


def _mt(raw: bytes) -> mt.MTState:
    left = _left(raw)
    if len(raw) == _ENGINE_BYTES:
        key = raw[_ENGINE_KEY : _ENGINE_KEY + mt.WORDS_BYTES]
    else:
        words = array.array("Q")
        words.frombytes(raw[_WORDS : _WORDS + mt.N * 8])
        if sys.byteorder != "little":  # pragma: no cover
            words.byteswap()
        key = mt.key_bytes([w & 0xFFFFFFFF for w in words])
    # ``left`` counts down to the next twist: left == 1 is MT's "position 624".
    return mt.MTState(key, mt.N + 1 - left)


def _serialised(generator: Any) -> bytes:
    import ctypes

    state = generator.get_state()
    return ctypes.string_at(state.data_ptr(), state.numel())


@functools.cache
def _engine_offset() -> int | None:
    """Where a CPU generator keeps its ``at::mt19937`` engine, relative to the generator's
    implementation object; found and checked on scratch generators, None if it does not hold.

    ``get_state()`` copies the state into a new tensor (microseconds); reading the engine's
    2.5 KB directly takes a fraction of that, and it runs at every phase of every test.
    """
    if sys.byteorder != "little" or sys.implementation.name != "cpython":
        return None  # pragma: no cover
    import ctypes

    import torch

    try:
        probe = torch.Generator()
        probe.manual_seed(2024)
        torch.rand(3, generator=probe)
        state = _serialised(probe)
        memory = ctypes.string_at(_impl_address(probe), 4096)
        found = memory.find(_mt(state).key)
        if found < _ENGINE_KEY:
            return None
        offset = found - _ENGINE_KEY
        other = torch.Generator()
        for seed in (0, 7, 2**40 + 3):
            probe.manual_seed(seed)
            torch.rand(5, generator=probe)
            torch.randn(3, generator=probe, dtype=torch.float64)
            raw = ctypes.string_at(_impl_address(probe) + offset, _ENGINE_BYTES)
            if raw[:8] != _serialised(probe)[:8] or _mt(raw) != _mt(_serialised(probe)):
                return None
            ctypes.memmove(_impl_address(other) + offset, raw, _ENGINE_BYTES)
            if _serialised(other) != _serialised(probe) or not torch.equal(
                torch.rand(4, generator=other), torch.rand(4, generator=probe)
            ):
                return None
        if not _cached_normals_where_expected(probe, offset):
            return None
    except Exception:  # pragma: no cover - any surprise means: use the public API
        return None
    return offset


# Where ``set_state`` keeps the cached normals in the serialised state: the double
# (``normal_y``, valid when the int at 5040 is set) and the float (valid when byte 5052 is).
_SERIALISED_DOUBLE, _SERIALISED_DOUBLE_VALID = 5024, 5040
_SERIALISED_FLOAT, _SERIALISED_FLOAT_VALID = 5048, 5052


def _cached_normals_where_expected(probe: Any, offset: int) -> bool:
    """Whether the cached normals and their flags sit where ``_normalised`` expects them."""
    import ctypes
    import struct

    import torch

    state = bytearray(_serialised(probe))
    state[_SERIALISED_FLOAT : _SERIALISED_FLOAT + 4] = struct.pack("<f", 1.5)
    state[_SERIALISED_FLOAT_VALID] = 1
    state[_SERIALISED_DOUBLE : _SERIALISED_DOUBLE + 8] = struct.pack("<d", 2.25)
    state[_SERIALISED_DOUBLE_VALID : _SERIALISED_DOUBLE_VALID + 4] = struct.pack("<i", 1)
    probe.set_state(torch.frombuffer(state, dtype=torch.uint8))
    raw = ctypes.string_at(_impl_address(probe) + offset, _ENGINE_BYTES)
    return (
        raw[2520:2525] == struct.pack("<f", 1.5) + b"\x01"
        and raw[2528:2537] == struct.pack("<d", 2.25) + b"\x01"
    )


def _impl_address(generator: Any) -> int:
    # A torch.Generator is PyObject_HEAD followed by its at::Generator (one pointer).
    import ctypes

    address = ctypes.c_void_p.from_address(id(generator) + 2 * ctypes.sizeof(ctypes.c_void_p))
    return int(address.value or 0)


class TorchSource(ModuleSource):
    name = "torch"
    module = "torch"
    whole_state = True  # one MT19937: see base.py

    def __init__(self) -> None:
        self._generator: Any = None
        self._view: Any = None
        # The last bytes read and their normalised form: most captures find the generator
        # untouched, and comparing 2.5 KB costs a fraction of normalising them.
        self._raw = b""
        self._state = b""

    def _prepare(self) -> None:
        import ctypes

        import torch

        self._generator = torch.default_generator
        self._view = None
        offset = _engine_offset()
        if offset is not None and type(self._generator) is torch.Generator:
            address = _impl_address(self._generator) + offset
            self._view = (ctypes.c_char * _ENGINE_BYTES).from_address(address)

    def capture(self) -> Any:
        if self._generator is not sys.modules["torch"].default_generator:
            self._prepare()  # first use, or torch's default generator is another object now
        if self._view is not None:
            raw = self._view.raw
            if raw != self._raw:
                self._raw, self._state = raw, _normalised(raw)
            return self._state
        return _serialised(self._generator)

    def restore(self, state: Any) -> None:
        if self._generator is not sys.modules["torch"].default_generator:
            self._prepare()
        if len(state) == _ENGINE_BYTES and self._view is not None:
            self._view.raw = state  # one memcpy; slice assignment copies byte by byte
            return
        import torch

        self._generator.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))

    def seed(self, seed: int) -> None:
        import torch

        torch.default_generator.manual_seed(seed)

    def classify(self, before: Any, after: Any) -> list[Difference]:
        if before is None:
            # A fresh import seeds from 64 bits of entropy; user seeds are small integers.
            seed = int.from_bytes(after[:8], "little")
            return [Difference(RESEEDED)] if seed < 2**32 else []
        if (
            len(before) == len(after) == _ENGINE_BYTES
            and before[:8] == after[:8]
            and after.startswith(before[_ENGINE_KEY:_ENGINE_KEY_END], _ENGINE_KEY)
            and _left(after) <= _left(before)
        ):
            # Same seed, same key block, no fewer words drawn: draws alone (the common
            # case, told without converting the states).
            return [DREW]
        old, new = _mt(before), _mt(after)
        if before[:8] != after[:8]:
            # A new initial seed: a reseed leaves exactly init_genrand(seed), not yet drawn
            # from; anything else came from set_state (a state drawn from elsewhere).
            seed = int.from_bytes(after[:8], "little") & 0xFFFFFFFF
            seeded = mt.looks_int_seeded(new) and new.key[:4] == seed.to_bytes(4, "little")
            return [Difference(RESEEDED if seeded else REPLACED)]
        if old == new:
            return [Difference(ADVANCED)]  # only the cached normal was used
        return [Difference(mt_kind(mt.reachable(old, new), mt.looks_int_seeded(new)))]

    def seeders(self) -> Sequence[Seeder]:
        return tuple(
            Seeder(module, target, kind)
            for module in ("torch", "torch.random")
            for target, kind in (
                ("manual_seed", RESEEDED),
                ("seed", RESEEDED),
                ("set_rng_state", REPLACED),
            )
        )

    def trace_targets(self) -> Sequence[TraceTarget]:
        def owners() -> Sequence[object]:
            import torch

            return (torch.default_generator,)

        return (
            TraceTarget(owners, "manual_seed", RESEEDED),
            TraceTarget(owners, "seed", RESEEDED),
            TraceTarget(owners, "set_state", REPLACED),
        )
