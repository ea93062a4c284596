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
    Same,
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
        probe.set_state(tuple(state))
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
            key_read = memory.mt_state(key) == mt.MTState(expected[1].tobytes(), expected[2])
            if not key_read or (has_gauss, cached) != (expected[3], expected[4]):
                return None
        other = RandomState(MT19937(3))
        other.standard_normal(5)
        memory.write(probe, _address(probe), memory.read(other, _address(other)))
        got: Any = probe.get_state()
        want: Any = other.get_state()
        if not ((got[1] == want[1]).all() and got[2:] == want[2:]):
            return None
    except Exception:  # pragma: no cover - any surprise means: use the public API
        return None
    return memory


_MTRAND = "numpy.random.mtrand"
_GAUSS = struct.Struct("i4xd")
#: The state of a global generator whose bit generator is not an MT19937
#: (``np.random.set_bit_generator``): its public state, frozen into something comparable.
_OTHER = "other"


def _frozen(value: Any) -> Any:
    """A bit generator's ``state`` dict as nested tuples of plain values (arrays as bytes)."""
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in sorted(value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    tobytes = getattr(value, "tobytes", None)
    if tobytes is not None and not isinstance(value, (int, float)):
        return (str(getattr(value, "dtype", "")), bytes(tobytes()))
    return value


class NumpySource(ModuleSource):
    """Available as soon as ``numpy`` is imported.  NumPy 2 loads ``numpy.random`` lazily:
    until something loads it, the global generator does not exist yet, its state is captured
    as None, and the plugin never imports it just to look; its state the moment it is first
    loaded is what the plugin puts back to (``import_module``).  Seeding it (the
    ``deterministic`` marker) loads it.

    The global generator is the ``RandomState`` behind ``np.random.rand`` and the other
    module functions.  Its state is ``(key and position, cached gaussian, bit generator)``
    as raw bytes, read from the MT19937's own memory where that is proven to work; the
    generator and its bit generator are checked at every read (``set_bit_generator`` swaps
    the bit generator), and anything unexpected is read through NumPy's public API."""

    name = "numpy"
    module = "numpy"
    import_module = "numpy.random"
    whole_state = True  # one MT19937: see base.py

    def __init__(self) -> None:
        self._rand: Any = None
        self._bit_generator: Any = None
        self._same: Same = Same(None)
        #: Raw views over the MT19937's key block and the cached gaussian, valid while the
        #: two objects above are the ones in use (they are held, so they stay alive).
        self._views: tuple[Any, Any] | None = None

    def available(self) -> bool:
        numpy = sys.modules.get("numpy")
        # Not while numpy itself is still being imported (another thread, or its own hooks).
        return numpy is not None and not getattr(numpy.__spec__, "_initializing", False)

    @staticmethod
    def _global(mtrand: Any) -> Any:
        """The RandomState the module functions draw from (they are its bound methods)."""
        rand = getattr(getattr(mtrand, "get_state", None), "__self__", None)
        return rand if rand is not None else mtrand._rand

    def _bind(self, rand: Any, bit_generator: Any) -> None:
        from numpy.random import MT19937, RandomState

        self._rand, self._bit_generator, self._views = rand, bit_generator, None
        self._same = Same(bit_generator)
        if type(rand) is not RandomState or type(bit_generator) is not MT19937:
            return
        memory = _numpy_memory()
        if memory is not None:
            self._views = memory.views(rand, _address(rand))

    def _current(self) -> Any:
        """The global generator, with the views rebound if it or its bit generator changed;
        None while ``numpy.random`` is not loaded."""
        mtrand = sys.modules.get(_MTRAND)
        if mtrand is None:
            return None
        # ``_global`` inlined: this runs at every check of every test.
        try:
            rand = mtrand.get_state.__self__
        except AttributeError:  # get_state replaced by a plain function
            rand = self._global(mtrand)
        bit_generator = rand._bit_generator
        if rand is not self._rand or bit_generator is not self._bit_generator:
            self._bind(rand, bit_generator)
        return rand

    def capture(self) -> Any:
        rand = self._current()
        if rand is None:
            return None
        views = self._views
        if views is not None:
            return views[0].raw, views[1].raw, self._same
        return self._public_state(rand)

    def _public_state(self, rand: Any) -> Any:
        bit_generator = self._bit_generator
        if type(bit_generator).__name__ != "MT19937":
            return _OTHER, _frozen(bit_generator.state), self._same
        state: Any = rand.get_state()
        key = state[1].tobytes() + struct.pack("i", int(state[2]))
        return key, _GAUSS.pack(int(state[3]), float(state[4])), self._same

    def restore(self, state: Any) -> None:
        rand = self._current()
        if rand is None:
            return  # still not loaded: nothing to put back
        if state is None:  # it did not exist: start it afresh, as its first import does
            rand.seed()
            return
        key, gauss, same = state
        bit_generator = same.obj
        if bit_generator is not self._bit_generator:
            from numpy.random import mtrand

            if rand is not mtrand._rand:
                raise RuntimeError("the global RandomState was replaced: cannot restore it")
            mtrand.set_bit_generator(bit_generator)
            rand = self._current()
        if key == _OTHER:
            bit_generator.state = _thawed(gauss)
            return
        if self._views is not None:
            memory = _numpy_memory()
            assert memory is not None
            memory.write(rand, _address(rand), (key, gauss))
            return
        import numpy

        words = numpy.frombuffer(key[: mt.WORDS_BYTES], dtype=numpy.uint32).copy()
        has_gauss, cached = _GAUSS.unpack(gauss)
        rand.set_state(("MT19937", words, mt.native_int(key, mt.WORDS_BYTES), has_gauss, cached))

    def seed(self, seed: int) -> None:
        mtrand = sys.modules.get(_MTRAND)
        if mtrand is None:
            import importlib

            # numpy is loaded; this loads its lazy submodule at most.  Not ``import
            # numpy.random``: that reads the attribute, which recurses while the submodule is
            # still being imported (the marker seeds it from an import hook).
            importlib.import_module("numpy.random")
            mtrand = sys.modules[_MTRAND]
        rand = self._global(mtrand)
        if seed < 2**32:
            rand.seed(seed)
            return
        # NumPy's legacy seed takes 32 bits, or an array of 32-bit words (another routine):
        # a larger seed is its words, so that distinct seeds never share a stream.
        words = []
        while seed:
            words.append(seed & 0xFFFFFFFF)
            seed >>= 32
        rand.seed(words)

    @staticmethod
    def _mt(state: Any) -> mt.MTState | None:
        key = state[0]
        if key == _OTHER:
            return None
        return mt.MTState(key[: mt.WORDS_BYTES], mt.native_int(key, mt.WORDS_BYTES))

    def classify(self, before: Any, after: Any) -> list[Difference]:
        if after is None:  # not loaded: cannot have changed
            return []
        if before is not None and before[2] == after[2] and before[0] is not _OTHER:
            old_raw, new_raw = before[0], after[0]
            # The same key block and a position not moved back: draws alone (the common
            # case, told without converting the states).
            if new_raw.startswith(old_raw[: mt.WORDS_BYTES]) and mt.native_int(
                new_raw, mt.WORDS_BYTES
            ) >= mt.native_int(old_raw, mt.WORDS_BYTES):
                return [DREW]
        new = self._mt(after)
        if before is None:  # loaded meanwhile: its import state carries the by-array marker
            return [Difference(RESEEDED)] if new is not None and mt.looks_int_seeded(new) else []
        old = self._mt(before)
        if old is None or new is None or before[2] != after[2]:
            return [Difference(REPLACED)]  # another bit generator: nothing to follow
        if old == new:  # only the cached gaussian was used
            return [Difference(ADVANCED)]
        return [Difference(mt_kind(mt.reachable(old, new), mt.looks_seeded(new)))]

    def seeders(self) -> Sequence[Seeder]:
        return tuple(
            Seeder(module, target, kind)
            for module in ("numpy.random", "numpy.random.mtrand")
            for target, kind in (
                ("seed", RESEEDED),
                ("set_state", REPLACED),
                ("set_bit_generator", REPLACED),
            )
        )

    def trace_targets(self) -> Sequence[TraceTarget]:
        def owners() -> Sequence[object]:
            # Never loads numpy.random (NumPy 2 loads it lazily): until it is, nothing to see.
            mtrand = sys.modules.get(_MTRAND)
            return () if mtrand is None else (self._global(mtrand),)

        return (TraceTarget(owners, "seed", RESEEDED), TraceTarget(owners, "set_state", REPLACED))


def _thawed(value: Any) -> Any:
    """A frozen bit generator state back as the dict its ``state`` setter takes."""
    import numpy

    if (
        isinstance(value, tuple)
        and value
        and all(
            isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            for item in value
        )
    ):
        return {k: _thawed(v) for k, v in value}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bytes):
        return numpy.frombuffer(value[1], dtype=value[0]).copy()
    return value
