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
        self._view: Any = None

    def capture(self) -> Any:
        inst = random._inst  # type: ignore[attr-defined]
        if self._memory is not None:
            if inst is not self._inst:
                self._inst, self._view = inst, self._memory.view(inst)
            return self._view.raw, inst.gauss_next  # type: ignore[attr-defined]
        return inst.getstate()

    def restore(self, state: Any) -> None:
        inst = random._inst  # type: ignore[attr-defined]
        if self._memory is not None:
            self._memory.write(inst, state[0])
            inst.gauss_next = state[1]  # type: ignore[attr-defined]
        else:
            inst.setstate(state)

    def seed(self, seed: int) -> None:
        random._inst.seed(seed)  # type: ignore[attr-defined]  # what random.seed is bound to

    def _mt(self, state: Any) -> mt.MTState:
        if self._memory is not None:
            return self._memory.split(state[0])
        words = state[1]
        return mt.MTState(mt.key_bytes(words[: mt.N]), words[mt.N])

    def classify(self, before: Any, after: Any) -> list[Difference]:
        if before is not None and self._memory is not None:
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
            return (random._inst,)  # type: ignore[attr-defined]

        return (TraceTarget(owners, "seed", RESEEDED), TraceTarget(owners, "setstate", REPLACED))
