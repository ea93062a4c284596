"""Python's ``random`` module: the global ``random.Random`` instance behind ``random.seed``."""

from __future__ import annotations

import random
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


class PythonRandomSource(ModuleSource):
    name = "random"
    module = "random"

    def __init__(self) -> None:
        self._memory = mt.random_memory()
        self._inst: Any = None
        self._type: type | None = None
        self._view: Any = None

    @staticmethod
    def _global() -> Any:
        """The instance the module functions draw from (they are its bound methods)."""
        inst = getattr(random.getstate, "__self__", None)
        return inst if inst is not None else random._inst

    def _viewed(self, inst: Any) -> Any:
        """A raw view of ``inst``'s state: only of an exact ``random.Random`` (a subclass may
        lay out or keep its state otherwise), rebound whenever ``random._inst`` changes; the
        instance is held, so the memory stays its."""
        if inst is not self._inst or type(inst) is not self._type:
            memory = self._memory if type(inst) is random.Random else None
            self._inst, self._view = inst, memory.view(inst) if memory is not None else None
            self._type = type(inst)  # ``__class__`` can be assigned: checked at every use
        return self._view

    def capture(self) -> Any:
        # ``_global`` and ``_viewed`` inlined: this runs at every check of every test.
        try:
            inst = random.getstate.__self__  # type: ignore[attr-defined]
        except AttributeError:  # random.getstate replaced by a plain function
            inst = self._global()
        view = self._view if inst is self._inst and type(inst) is self._type else self._viewed(inst)
        if view is not None:
            return view.raw, inst.gauss_next
        _, words, gauss = inst.getstate()
        return mt.RandomMemory.join(mt.MTState(mt.key_bytes(words[: mt.N]), words[mt.N])), gauss

    def restore(self, state: Any) -> None:
        inst = self._global()
        if self._viewed(inst) is not None:
            self._memory.write(inst, state[0])  # type: ignore[union-attr]
            inst.gauss_next = state[1]
            return
        split = mt.RandomMemory.split(state[0])
        inst.setstate((3, (*mt.key_words(split.key), split.pos), state[1]))

    def seed(self, seed: int) -> None:
        self._global().seed(seed)  # what random.seed is bound to

    @staticmethod
    def _mt(state: Any) -> mt.MTState:
        return mt.RandomMemory.split(state[0])

    def classify(self, before: Any, after: Any) -> list[Difference]:
        if before is not None:
            old_raw, new_raw = before[0], after[0]
            # The same key block and a position not moved back: draws alone.  The common
            # case, so it is told from the raw bytes without converting them.
            if new_raw.endswith(old_raw[4:]) and mt.native_int(new_raw) >= mt.native_int(old_raw):
                return [DREW]
        new = self._mt(after)
        if before is None:
            return [Difference(RESEEDED)] if mt.looks_seeded(new) else []
        old = self._mt(before)
        if old == new:  # only the cached gaussian was used
            return [Difference(ADVANCED)]
        return [Difference(mt_kind(mt.reachable(old, new), mt.looks_seeded(new)))]

    def seeders(self) -> Sequence[Seeder]:
        return (Seeder("random", "seed", RESEEDED), Seeder("random", "setstate", REPLACED))

    def trace_targets(self) -> Sequence[TraceTarget]:
        def owners() -> Sequence[object]:
            return (self._global(),)

        return (TraceTarget(owners, "seed", RESEEDED), TraceTarget(owners, "setstate", REPLACED))
