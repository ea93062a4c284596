"""PyTorch's CUDA default generators, one per device.

The plugin never initialises CUDA.  Before CUDA starts, torch queues seeding calls
(``torch.manual_seed`` queues ``torch.cuda.manual_seed_all``) and applies them when CUDA
initialises; that queue is this source's state until then.  Once CUDA is initialised by
someone else, each device's Philox generator is read as its seed and offset.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from .base import ADVANCED, REPLACED, RESEEDED, Difference, ModuleSource, Seeder, TraceTarget

QUEUED = "queued until CUDA initialises"
#: What torch seeds a CUDA generator with when nobody queued a seed (``default_rng_seed_val``).
DEFAULT_SEED = 67280421310721


def _queued_seed(callback: Any) -> int | None:
    """The seed a queued ``manual_seed``/``manual_seed_all`` callback will apply (torch keeps
    it in the callback's closure), or None if it cannot be told."""
    for cell in getattr(callback, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class CudaState(NamedTuple):
    queued: tuple[Any, ...]  # identities of the seeding calls torch has queued
    devices: tuple[tuple[int, int], ...] | None  # (seed, offset) per device, once initialised


class TorchCudaSource(ModuleSource):
    name = "torch.cuda"
    module = "torch.cuda"

    def available(self) -> bool:
        torch = sys.modules.get("torch")
        # A CPU-only build queues seeds that can never apply: nothing to watch there.
        return torch is not None and "torch.cuda" in sys.modules and bool(torch._C._has_cuda)

    def capture(self) -> CudaState:
        import torch.cuda

        tracker = torch.cuda._lazy_seed_tracker
        queued = (
            tracker.manual_seed_cb,
            tracker.manual_seed_all_cb,
            len(torch.cuda._queued_calls),
        )
        if not torch.cuda._initialized:
            return CudaState(queued, None)
        return CudaState(
            queued,
            tuple((g.initial_seed(), g.get_offset()) for g in torch.cuda.default_generators),
        )

    def restore(self, state: CudaState) -> None:
        import torch.cuda

        tracker = torch.cuda._lazy_seed_tracker
        if not torch.cuda._initialized:
            tracker.manual_seed_cb, tracker.manual_seed_all_cb = state.queued[:2]
            tracker.call_order = (
                [tracker.manual_seed_cb, tracker.manual_seed_all_cb]
                if state.queued[1] is not None
                else [tracker.manual_seed_all_cb, tracker.manual_seed_cb]
            )
            del torch.cuda._queued_calls[state.queued[2] :]
            return
        if state.devices is None:
            return  # CUDA started since: there is no earlier live state to go back to
        for generator, (seed, offset) in zip(
            torch.cuda.default_generators, state.devices, strict=False
        ):
            generator.manual_seed(seed)
            generator.set_offset(offset)

    def seed(self, seed: int) -> None:
        import torch.cuda

        if torch.cuda._initialized:
            for generator in torch.cuda.default_generators:
                generator.manual_seed(seed)
        else:
            torch.cuda.manual_seed_all(seed)  # queued: applied if CUDA starts

    def classify(self, before: CudaState | None, after: CudaState) -> list[Difference]:
        if after.devices is None:  # still queued
            if before is None and after.queued[:2] == (None, None):
                return []
            if before is None or before.queued != after.queued:
                return [Difference(RESEEDED, QUEUED)]
            return []
        if before is None or before.devices is None:
            return self._started(before, after.devices)
        changes = []
        for index, (old, new) in enumerate(zip(before.devices, after.devices, strict=False)):
            if old == new:
                continue
            if old[0] != new[0]:
                kind = RESEEDED
            elif new[1] > old[1]:
                kind = ADVANCED
            else:
                kind = RESEEDED if new[1] == 0 else REPLACED
            changes.append(
                Difference(kind, f"cuda:{index}", f"seed {old[0]} offset {old[1]} -> "
                           f"seed {new[0]} offset {new[1]}")
            )
        return changes

    @staticmethod
    def _started(
        before: CudaState | None, devices: tuple[tuple[int, int], ...]
    ) -> list[Difference]:
        """CUDA started in this stretch: each device should hold the seed queued before (or
        torch's default); another seed means someone seeded it since."""
        expected = {DEFAULT_SEED}
        if before is not None:
            for callback in before.queued[:2]:
                seed = _queued_seed(callback)
                if seed is not None:
                    expected = {seed}
        return [
            Difference(RESEEDED, f"cuda:{index}", f"seed {seed} after CUDA started")
            for index, (seed, _) in enumerate(devices)
            if seed not in expected
        ]

    def seeders(self) -> Sequence[Seeder]:
        return tuple(
            Seeder(module, target, kind)
            for module in ("torch.cuda", "torch.cuda.random")
            for target, kind in (
                ("manual_seed", RESEEDED),
                ("manual_seed_all", RESEEDED),
                ("seed", RESEEDED),
                ("seed_all", RESEEDED),
                ("set_rng_state", REPLACED),
                ("set_rng_state_all", REPLACED),
            )
        )

    def trace_targets(self) -> Sequence[TraceTarget]:
        def owners() -> Sequence[object]:
            import torch.cuda

            return tuple(torch.cuda.default_generators)

        return (
            TraceTarget(owners, "manual_seed", RESEEDED),
            TraceTarget(owners, "seed", RESEEDED),
            TraceTarget(owners, "set_state", REPLACED),
            TraceTarget(owners, "set_offset", REPLACED),
        )
