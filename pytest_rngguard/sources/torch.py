"""PyTorch's default CPU generator (``torch.manual_seed``, ``torch.rand``, ...)."""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence
from typing import Any

from . import _mt19937 as mt
from .base import (
    ADVANCED,
    REPLACED,
    RESEEDED,
    Difference,
    ModuleSource,
    Seeder,
    TraceTarget,
    mt_kind,
)

# torch's legacy CPU generator state: u64 initial seed, i32 left, i32 seeded, u64 next,
# u64 state[624] (32-bit words), then the cached normals.
_LEFT = 8
_WORDS = 24


def _mt(raw: bytes) -> mt.MTState:
    words = array.array("Q")
    words.frombytes(raw[_WORDS : _WORDS + mt.N * 8])
    if sys.byteorder != "little":  # pragma: no cover
        words.byteswap()
    left = int.from_bytes(raw[_LEFT : _LEFT + 4], "little", signed=True)
    # ``left`` counts down to the next twist: left == 1 is MT's "position 624".
    return mt.MTState(mt.key_bytes([w & 0xFFFFFFFF for w in words]), mt.N + 1 - left)


class TorchSource(ModuleSource):
    name = "torch"
    module = "torch"

    def __init__(self) -> None:
        import ctypes

        self._string_at = ctypes.string_at

    def capture(self) -> Any:
        import torch

        state = torch.default_generator.get_state()
        return self._string_at(state.data_ptr(), state.numel())

    def restore(self, state: Any) -> None:
        import torch

        torch.default_generator.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))

    def seed(self, seed: int) -> None:
        import torch

        torch.default_generator.manual_seed(seed)

    def classify(self, before: Any, after: Any) -> list[Difference]:
        if before is None:
            # A fresh import seeds from 64 bits of entropy; user seeds are small integers.
            seed = int.from_bytes(after[:8], "little")
            return [Difference(RESEEDED)] if seed < 2**32 else []
        if before[:8] != after[:8]:
            return [Difference(RESEEDED)]
        old, new = _mt(before), _mt(after)
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
