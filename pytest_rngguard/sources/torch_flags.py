"""PyTorch's determinism switches: deterministic algorithms (and warn-only), cuDNN flags."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from .base import CHANGED, Difference, ModuleSource, Seeder


class TorchFlags(NamedTuple):
    deterministic_algorithms: bool
    deterministic_algorithms_warn_only: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool


DETAILS = (
    "deterministic_algorithms",
    "deterministic_algorithms_warn_only",
    "cudnn.deterministic",
    "cudnn.benchmark",
)


def set_flags(flags: TorchFlags) -> None:
    import torch

    torch.use_deterministic_algorithms(
        flags.deterministic_algorithms, warn_only=flags.deterministic_algorithms_warn_only
    )
    torch.backends.cudnn.deterministic = flags.cudnn_deterministic
    torch.backends.cudnn.benchmark = flags.cudnn_benchmark


class TorchFlagsSource(ModuleSource):
    name = "torch.flags"
    module = "torch.backends.cudnn"
    seedable = False

    def available(self) -> bool:
        return "torch" in sys.modules and self.module in sys.modules

    def capture(self) -> TorchFlags:
        import torch

        cudnn = torch.backends.cudnn
        return TorchFlags(
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            bool(cudnn.deterministic),
            bool(cudnn.benchmark),
        )

    def restore(self, state: TorchFlags) -> None:
        if self.capture() != state:
            set_flags(state)

    def seed(self, seed: int) -> None:
        pass

    def classify(self, before: Any, after: TorchFlags) -> list[Difference]:
        if before is None:
            return []
        return [
            Difference(CHANGED, detail, f"{old} -> {new}")
            for detail, old, new in zip(DETAILS, before, after, strict=True)
            if old != new
        ]

    def seeders(self) -> Sequence[Seeder]:
        return (Seeder("torch", "use_deterministic_algorithms", CHANGED),)
