"""PyTorch's CUDA default generators, one per device.

The plugin never initialises CUDA.  Before CUDA starts, torch queues seeding calls
(``torch.manual_seed`` queues ``torch.cuda.manual_seed_all``) and applies them when CUDA
initialises; that queue is this source's state until then.  Once CUDA is initialised by
someone else, each device's Philox generator is read as its seed and offset.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, TypeAlias

from .base import ADVANCED, REPLACED, RESEEDED, Difference, ModuleSource, Seeder, TraceTarget

QUEUED = "queued until CUDA initialises"
#: Above this, a device's seed is taken for one CUDA drew from entropy when it started (it
#: seeds a device nobody queued a seed for with 64 random bits); user seeds are small.
_ENTROPY = 2**32


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


@dataclasses.dataclass(frozen=True)
class CudaState:
    """What the CUDA generators will start from, or hold once CUDA is initialised.

    Compared by value: the queued seeds (in the order torch applies them, as ``("all",
    seed)`` for ``manual_seed_all`` and ``("current", seed)`` for ``manual_seed``), how many
    other lazy calls are queued, and (seed, offset) per device once initialised.  The
    tracker's own entries are kept only to put them back, never compared or shown.
    """

    queued: tuple[tuple[str, int | None], ...]
    calls: int
    devices: tuple[tuple[int, int], ...] | None
    entries: tuple[Any, Any, tuple[Any, ...]] = dataclasses.field(
        default=(None, None, ()), compare=False, repr=False
    )


#: What decides the seed a device starts with: the queued call (``("all", seed)`` or
#: ``("current", seed)``; seed None where it cannot be read), or None for none (entropy).
Decided: TypeAlias = "tuple[str, int | None] | None"


def _deciding(queued: Sequence[tuple[str, int | None]], count: int, current: int) -> list[Decided]:
    """For each device, the queued call whose seed it starts with when CUDA initialises."""
    decided: list[Decided] = [None] * count
    for entry in queued:
        scope, _ = entry
        if scope == "all":
            decided = [entry] * count
        elif 0 <= current < count:
            decided[current] = entry
    return decided


class TorchCudaSource(ModuleSource):
    name = "torch.cuda"
    module = "torch.cuda"

    def __init__(self) -> None:
        # The last queue read, by the identity of torch's entries: reading closures is the
        # slow part, and the queue rarely changes.
        self._last: tuple[tuple[Any, ...], tuple[tuple[str, int | None], ...]] = ((), ())

    def available(self) -> bool:
        torch = sys.modules.get("torch")
        # A CPU-only build queues seeds that can never apply: nothing to watch there.
        return torch is not None and "torch.cuda" in sys.modules and bool(torch._C._has_cuda)

    def _queued(self, order: tuple[Any, ...], one: Any) -> tuple[tuple[str, int | None], ...]:
        last_order, queued = self._last
        if len(order) == len(last_order) and all(
            a is b for a, b in zip(order, last_order, strict=True)
        ):
            return queued
        queued = tuple(
            ("current" if entry is one else "all", _queued_seed(entry[0]))
            for entry in order
            if entry is not None
        )
        self._last = (order, queued)
        return queued

    def capture(self) -> CudaState:
        import torch.cuda

        tracker = torch.cuda._lazy_seed_tracker
        order = tuple(tracker.call_order)
        entries = (tracker.manual_seed_cb, tracker.manual_seed_all_cb, order)
        queued = self._queued(order, tracker.manual_seed_cb)
        calls = len(torch.cuda._queued_calls)
        if not torch.cuda._initialized:
            return CudaState(queued, calls, None, entries)
        return CudaState(
            queued,
            calls,
            tuple((g.initial_seed(), g.get_offset()) for g in torch.cuda.default_generators),
            entries,
        )

    def restore(self, state: CudaState) -> None:
        import torch.cuda

        if not torch.cuda._initialized:
            tracker = torch.cuda._lazy_seed_tracker
            tracker.manual_seed_cb, tracker.manual_seed_all_cb, order = state.entries
            tracker.call_order = list(order)
            del torch.cuda._queued_calls[state.calls :]
            return
        generators = torch.cuda.default_generators
        if state.devices is None:
            # CUDA started since: each device goes back to what it would have started from
            # then, the seed queued for it or, where none was, a fresh one from entropy, as
            # CUDA gives.  The queue too, so that it reads as it did.
            tracker = torch.cuda._lazy_seed_tracker
            tracker.manual_seed_cb, tracker.manual_seed_all_cb, order = state.entries
            tracker.call_order = list(order)
            self._last = ((), ())
            decided = _deciding(state.queued, len(generators), torch.cuda.current_device())
            for generator, entry in zip(generators, decided, strict=True):
                if entry is None or entry[1] is None:
                    generator.seed()
                else:
                    generator.manual_seed(entry[1])
            return
        for generator, (seed, offset) in zip(generators, state.devices, strict=False):
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
            if before is None and not after.queued:
                return []
            if before is None or before.queued != after.queued:
                return [Difference(RESEEDED, QUEUED)]
            return []
        if before is None or before.devices is None:
            return self._started(before, after)
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
                Difference(
                    kind,
                    f"cuda:{index}",
                    f"seed {old[0]} offset {old[1]} -> seed {new[0]} offset {new[1]}",
                )
            )
        return changes

    @staticmethod
    def _started(before: CudaState | None, after: CudaState) -> list[Difference]:
        """CUDA started in this stretch.  Starting it is never a change: each device starts
        from the seed queued for it then (from entropy where none was).  What the stretch
        queued before starting it is, and so is a device seeded since it started."""
        devices = after.devices or ()
        current = _current_device()
        now = _deciding(after.queued, len(devices), current)
        then = _deciding(before.queued if before is not None else (), len(devices), current)
        changes = []
        for index, ((seed, offset), decided, earlier) in enumerate(
            zip(devices, now, then, strict=True)
        ):
            label = f"cuda:{index}"
            queued_seed = decided[1] if decided is not None else None
            if decided != earlier:
                described = f"seed {seed}, queued before CUDA started"
                changes.append(Difference(RESEEDED, label, described))
            elif seed != queued_seed and (queued_seed is not None or seed < _ENTROPY):
                # Not what CUDA started it with: seeded since.
                changes.append(Difference(RESEEDED, label, f"seed {seed} after CUDA started"))
            elif offset > 0:
                changes.append(Difference(ADVANCED, label, f"offset {offset} after CUDA started"))
        return changes

    def origin_hint(self) -> Sequence[str] | None:
        """torch keeps the stack of each seeding call it queues until CUDA starts."""
        cuda = sys.modules.get("torch.cuda")
        tracker = getattr(cuda, "_lazy_seed_tracker", None)
        for entry in reversed(getattr(tracker, "call_order", None) or []):
            if entry:
                return list(entry[1])
        return None

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


def _current_device() -> int:
    """The current CUDA device, read only once CUDA is initialised (never initialises it)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_initialized():
        return 0
    return int(cuda.current_device())
