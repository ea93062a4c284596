"""MT19937 arithmetic shared by the Mersenne Twister sources (``random``, NumPy, torch CPU).

Both Python's ``random`` and NumPy's legacy ``RandomState`` are MT19937: 624 32-bit words
plus a position.  Drawing numbers only moves the position forward and, every 624 words,
"twists" the whole block.  So "could drawing numbers have led from state A to state B" is
answered by twisting A's block forward until it equals B's (or a bound is reached), and a
freshly seeded block is recognisable by the arithmetic of the seeding routines.
"""

from __future__ import annotations

import array
import functools
import random
import struct
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

N = 624
WORDS_BYTES = N * 4
_MATRIX_A = 0x9908B0DF
_UPPER = 0x80000000
_LOWER = 0x7FFFFFFF
_MASK = 0xFFFFFFFF

#: How many 624-word blocks a sequence of draws is followed forward before giving up
#: (about 2.5 million 32-bit words).  Only reached when a state changed without any
#: intercepted call explaining it, so the cost is paid on leaks, never on the clean path.
MAX_BLOCKS = 4096


_NATIVE_INT = struct.Struct("i")


def native_int(raw: bytes, offset: int = 0) -> int:
    """The native 32-bit int at ``offset`` (an MT19937 position as C keeps it)."""
    return int(_NATIVE_INT.unpack_from(raw, offset)[0])


class MTState(NamedTuple):
    """The part of an MT19937 generator that draws move: the key block and the position."""

    key: bytes  # 624 little-endian uint32 words
    pos: int  # 0..624; 624 means "the next draw twists first"


def key_words(key: bytes) -> list[int]:
    words = array.array("I")
    words.frombytes(key)
    if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
        words.byteswap()
    return words.tolist()


def key_bytes(words: Sequence[int]) -> bytes:
    return struct.pack(f"<{N}I", *words)


def twist_words(mt: list[int]) -> list[int]:
    """One MT19937 twist, in Python (the reference the fast path is checked against)."""
    mt = list(mt)
    for i in range(N):
        y = (mt[i] & _UPPER) | (mt[(i + 1) % N] & _LOWER)
        value = mt[(i + 397) % N] ^ (y >> 1)
        if y & 1:
            value ^= _MATRIX_A
        mt[i] = value
    return mt


class RandomMemory:
    """Direct access to a ``_random.Random`` object's C struct (``index`` then ``state[624]``).

    ``getstate()`` builds a 625-int tuple (tens of microseconds); copying the struct's bytes
    takes well under one.  The layout is a CPython implementation detail, so it is checked
    against ``getstate``/``setstate`` on a scratch generator before it is trusted; where the
    check fails (another interpreter, a free-threaded build) callers use the public API.
    """

    def __init__(self, offset: int) -> None:
        import ctypes

        self._offset = offset
        self._string_at = ctypes.string_at
        self._memmove = ctypes.memmove

    def read(self, obj: random.Random) -> bytes:
        """``index`` (4 bytes) followed by the 624 key words."""
        return self._string_at(id(obj) + self._offset, 4 + WORDS_BYTES)

    def view(self, obj: random.Random) -> Any:
        """A ctypes array over the same bytes: ``view.raw`` reads them in a fraction of
        ``read``'s time.  Valid while ``obj`` lives: the caller keeps a reference."""
        import ctypes

        return (ctypes.c_char * (4 + WORDS_BYTES)).from_address(id(obj) + self._offset)

    def write(self, obj: random.Random, raw: bytes) -> None:
        self._memmove(id(obj) + self._offset, raw, 4 + WORDS_BYTES)

    @staticmethod
    def split(raw: bytes) -> MTState:
        return MTState(raw[4:], int.from_bytes(raw[:4], sys.byteorder, signed=True))

    @staticmethod
    def join(state: MTState) -> bytes:
        return state.pos.to_bytes(4, sys.byteorder, signed=True) + state.key


@functools.cache
def random_memory() -> RandomMemory | None:
    """The validated fast path for ``_random.Random`` objects, or None if it does not hold."""
    if sys.implementation.name != "cpython" or not hasattr(sys, "getrefcount"):
        return None  # pragma: no cover
    offset = 2 * struct.calcsize("P")  # PyObject_HEAD: refcount and type pointer
    try:
        memory = RandomMemory(offset)
        probe = random.Random()
        for seed in (0, 1, 12345):
            probe.seed(seed)
            probe.random()
            words = probe.getstate()[1]
            if memory.split(memory.read(probe)) != MTState(key_bytes(words[:N]), words[N]):
                return None
        other = random.Random(99)
        other.getrandbits(7)
        memory.write(probe, memory.read(other))
        if probe.getstate() != other.getstate():
            return None
    except Exception:  # pragma: no cover - any surprise means: use the public API
        return None
    return memory


class _Twister:
    """Twists key blocks with CPython's own C implementation through a scratch generator.

    A private generator is put at position 624 with the block to twist; one draw makes the
    C code twist it, and the new block is read back.  No user-visible state is touched.
    """

    def __init__(self) -> None:
        self._scratch = random.Random()
        self._memory = random_memory()

    def twist(self, key: bytes) -> bytes:
        if self._memory is not None:
            self._memory.write(self._scratch, self._memory.join(MTState(key, N)))
            self._scratch.getrandbits(32)
            return self._memory.split(self._memory.read(self._scratch)).key
        self._scratch.setstate((3, (*key_words(key), N), None))
        self._scratch.getrandbits(32)
        return key_bytes(self._scratch.getstate()[1][:N])


@functools.cache
def _twister() -> _Twister:
    return _Twister()


def twist(key: bytes) -> bytes:
    return _twister().twist(key)


def reachable(old: MTState, new: MTState, max_blocks: int = MAX_BLOCKS) -> bool:
    """Whether drawing numbers from ``old`` can produce ``new`` within ``max_blocks`` twists."""
    if old.key == new.key:
        return new.pos >= old.pos
    key = old.key
    for _ in range(max_blocks):
        key = twist(key)
        if key == new.key:
            return True
    return False


def looks_seeded(state: MTState) -> bool:
    """Whether ``state`` is exactly what a seeding routine produces, before any draw.

    ``init_by_array`` (Python's ``random.seed``, NumPy's array seeds) always sets word 0 to
    0x80000000; ``init_genrand`` (NumPy's and torch's integer seeds) makes every word a fixed
    function of the one before.  A draw twists the block, which breaks both patterns.
    """
    if state.pos != N:
        return False
    return key_words(state.key[:4])[0] == _UPPER or looks_int_seeded(state)


def looks_int_seeded(state: MTState) -> bool:
    """Whether ``state`` is what ``init_genrand`` (an integer seed in NumPy/torch) produces."""
    if state.pos != N:
        return False
    words = key_words(state.key[:16])
    for i in range(1, 4):
        prev = words[i - 1]
        if words[i] != (1812433253 * (prev ^ (prev >> 30)) + i) & _MASK:
            return False
    return True


def init_genrand(seed: int) -> bytes:
    """The key block ``init_genrand(seed)`` produces (used to recognise torch reseeds)."""
    mt = [seed & _MASK]
    for i in range(1, N):
        prev = mt[-1]
        mt.append((1812433253 * (prev ^ (prev >> 30)) + i) & _MASK)
    return key_bytes(mt)
