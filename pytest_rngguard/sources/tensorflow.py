"""TensorFlow's global seed and global generator (filled in by the TensorFlow issue)."""

from __future__ import annotations

from typing import Any

from .base import Difference, ModuleSource


class TensorflowSource(ModuleSource):
    name = "tensorflow"
    module = "tensorflow"

    def available(self) -> bool:
        return False

    def capture(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        pass

    def seed(self, seed: int) -> None:
        pass

    def classify(self, before: Any, after: Any) -> list[Difference]:
        return []
