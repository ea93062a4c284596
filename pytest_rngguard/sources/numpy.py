"""NumPy's legacy global ``RandomState`` (``np.random.seed``, ``np.random.rand``, ...).

``np.random.default_rng()`` generators are local objects and never a source.
"""

from __future__ import annotations

import functools
import struct
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

_PROBE_GAUSS = 1.2345678901234567


class _NumpyMemory:
    """Reads a legacy ``RandomState``'s MT19937 block and its cached gaussian directly.

    ``np.random.get_state()`` costs tens of microseconds; the bit generator publishes the
    address of its ``{key[624], pos}`` struct (``ctypes.state_address``), and the cached
    gaussian (``has_gauss``, ``gauss``) sits at a fixed offset in the ``RandomState`` object,
    found once on a scratch instance.  Both are validated against ``get_state``.
    """

    def __init__(self, gauss_offset: int) -> None:
        import ctypes

        self._gauss_offset = gauss_offset
        self._string_at = ctypes.string_at
        self._memmove = ctypes.memmove

    def views(self, rs: Any, address: int) -> tuple[Any, Any]:
        """ctypes arrays over the bytes ``read`` copies; ``.raw`` reads them cheaply.  Valid
        while ``rs`` lives: the caller keeps a reference."""
        import ctypes

        return (
            (ctypes.c_char * (mt.WORDS_BYTES + 4)).from_address(address),
            (ctypes.c_char * 16).from_address(id(rs) + self._gauss_offset - 8),
        )

    def read(self, rs: Any, address: int) -> tuple[bytes, bytes]:
        return (
            self._string_at(address, mt.WORDS_BYTES + 4),
            self._string_at(id(rs) + self._gauss_offset - 8, 16),
        )

    def write(self, rs: Any, address: int, state: tuple[bytes, bytes]) -> None:
        self._memmove(address, state[0], mt.WORDS_BYTES + 4)
        self._memmove(id(rs) + self._gauss_offset - 8, state[1], 16)

    @staticmethod
    def mt_state(raw: bytes) -> mt.MTState:
        position = int.from_bytes(raw[-4:], sys.byteorder, signed=True)
        return mt.MTState(raw[: mt.WORDS_BYTES], position)


def _address(rs: Any) -> int:
    return int(rs._bit_generator.ctypes.state_address)


@functools.cache
def _numpy_memory() -> _NumpyMemory | None:
    import ctypes

    from numpy.random import MT19937, RandomState

    try:
        probe = RandomState(MT19937(0))
        state: list[Any] = list(probe.get_state())
        state[3], state[4] = 1, _PROBE_GAUSS
        probe.set_state(tuple(state))  # type: ignore[arg-type]
        size = type(probe).__basicsize__
        offset = ctypes.string_at(id(probe), size).find(struct.pack("d", _PROBE_GAUSS))
        if offset < 8:
            return None
        memory = _NumpyMemory(offset)
        for seed in (0, 7, 2**32 - 1):
            probe.seed(seed)
            probe.standard_normal(3)
            expected: Any = probe.get_state()
            key, gauss = memory.read(probe, _address(probe))
            has_gauss, cached = struct.unpack_from("i4xd", gauss)
            if (
                memory.mt_state(key) != mt.MTState(expected[1].tobytes(), expected[2])
                or (has_gauss, cached) != (expected[3], expected[4])
            ):
                return None
        other = RandomState(MT19937(3))
        other.standard_normal(5)
        memory.write(probe, _address(probe), memory.read(other, _address(other)))
        got: Any = probe.get_state()
        want: Any = other.get_state()
        if not (
            (got[1] == want[1]).all() and got[2:] == want[2:]
        ):
            return None
    except Exception:  # pragma: no cover - any surprise means: use the public API
        return None
    return memory


_MTRAND = "numpy.random.mtrand"


class NumpySource(ModuleSource):
    """Available as soon as ``numpy`` is imported.  NumPy 2 loads ``numpy.random`` lazily:
    until something loads it, the global generator does not exist yet, its state is captured
    as None, and the plugin never imports it just to look.  Seeding it (the ``deterministic``
    marker) loads it; restoring to None gives it a fresh, unpredictable seed, as a first
    import would."""

    name = "numpy"
    module = "numpy"

    def __init__(self) -> None:
        self._prepared = False
        self._memory: _NumpyMemory | None = None
        self._rand: Any = None
        self._address = 0
        self._views: tuple[Any, Any] = (None, None)

    def available(self) -> bool:
        numpy = sys.modules.get("numpy")
        # Not while numpy itself is still being imported (another thread, or its own hooks).
        return numpy is not None and not getattr(numpy.__spec__, "_initializing", False)

    def _prepare(self) -> bool:
        """Bind the global generator once ``numpy.random`` is loaded; False until then."""
        if _MTRAND not in sys.modules:
            return False
        from numpy.random import mtrand

        self._rand = mtrand._rand
        self._memory = _numpy_memory()
        if self._memory is not None:
            self._address = _address(self._rand)
            self._views = self._memory.views(self._rand, self._address)
        self._prepared = True
        return True

    def capture(self) -> Any:
        if not self._prepared and not self._prepare():
            return None
        if self._memory is not None:
            key, gauss = self._views
            return key.raw, gauss.raw
        state = self._rand.get_state()
        return state[1].tobytes(), state[2:]

    def restore(self, state: Any) -> None:
        if not self._prepared and not self._prepare():
            return  # still not loaded: nothing to put back
        if state is None:  # it did not exist: start it afresh, as its first import does
            self._rand.seed()
            return
        if self._memory is not None:
            self._memory.write(self._rand, self._address, state)
            return
        import numpy

        key = numpy.frombuffer(state[0], dtype=numpy.uint32).copy()
        self._rand.set_state(("MT19937", key, *state[1]))

    def seed(self, seed: int) -> None:
        import numpy.random  # numpy is loaded; this loads its lazy submodule at most

        numpy.random.mtrand._rand.seed(seed % 2**32)

    def _mt(self, state: Any) -> mt.MTState:
        if self._memory is not None:
            return self._memory.mt_state(state[0])
        return mt.MTState(state[0], state[1][0])

    def classify(self, before: Any, after: Any) -> list[Difference]:
        if after is None:  # not loaded: cannot have changed
            return []
        if before is not None and self._memory is not None:
            old_raw, new_raw = before[0], after[0]
            # The same key block and a position not moved back: draws alone (the common
            # case, told without converting the states).
            if new_raw.startswith(old_raw[: mt.WORDS_BYTES]) and mt.native_int(
                new_raw, mt.WORDS_BYTES
            ) >= mt.native_int(old_raw, mt.WORDS_BYTES):
                return [DREW]
        new = self._mt(after)
        if before is None:  # loaded meanwhile: its import state carries the by-array marker
            return [Difference(RESEEDED)] if mt.looks_int_seeded(new) else []
        old = self._mt(before)
        if old == new:  # only the cached gaussian was used
            return [Difference(ADVANCED)]
        return [Difference(mt_kind(mt.reachable(old, new), mt.looks_seeded(new)))]

    def seeders(self) -> Sequence[Seeder]:
        return tuple(
            Seeder(module, target, kind)
            for module in ("numpy.random", "numpy.random.mtrand")
            for target, kind in (("seed", RESEEDED), ("set_state", REPLACED))
        )

    def trace_targets(self) -> Sequence[TraceTarget]:
        def owners() -> Sequence[object]:
            from numpy.random import mtrand

            return (mtrand._rand,)

        return (TraceTarget(owners, "seed", RESEEDED), TraceTarget(owners, "set_state", REPLACED))
