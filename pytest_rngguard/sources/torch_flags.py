"""PyTorch's determinism switches: deterministic algorithms (and warn-only), cuDNN flags."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
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


#: torch.use_deterministic_algorithms also sets this module's ``deterministic``, importing it
#: first (over a second the first time): the flags are set without it unless it is loaded.
INDUCTOR_CONFIG = "torch._inductor.config"


def set_flags(flags: TorchFlags, now: TorchFlags) -> None:
    """Set the flags that differ from ``now``, what they are (each setter is a call into
    torch)."""
    import torch

    mode, warn_only = flags.deterministic_algorithms, flags.deterministic_algorithms_warn_only
    if (now.deterministic_algorithms, now.deterministic_algorithms_warn_only) != (mode, warn_only):
        setter = getattr(torch._C, "_set_deterministic_algorithms", None)
        if INDUCTOR_CONFIG in sys.modules or setter is None:
            torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        else:
            setter(mode, warn_only=warn_only)
    cudnn = torch.backends.cudnn
    if now.cudnn_deterministic != flags.cudnn_deterministic:
        cudnn.deterministic = flags.cudnn_deterministic
    if now.cudnn_benchmark != flags.cudnn_benchmark:
        cudnn.benchmark = flags.cudnn_benchmark


def _public_getters() -> tuple[Callable[[], bool], ...]:
    import torch

    cudnn = torch.backends.cudnn
    return (
        torch.are_deterministic_algorithms_enabled,
        torch.is_deterministic_algorithms_warn_only_enabled,
        lambda: bool(cudnn.deterministic),
        lambda: bool(cudnn.benchmark),
    )


@functools.cache
def _getters() -> tuple[Callable[[], bool], ...]:
    """The C getters behind the public API (a tenth of the cost), where they agree with it."""
    import torch

    public = _public_getters()
    names = (
        "_get_deterministic_algorithms",
        "_get_deterministic_algorithms_warn_only",
        "_get_cudnn_deterministic",
        "_get_cudnn_benchmark",
    )
    private = tuple(getattr(torch._C, name, None) for name in names)
    if any(get is None for get in private):
        return public
    try:
        if [get() for get in private] == [get() for get in public]:  # type: ignore[misc]
            return private  # type: ignore[return-value]
    except Exception:  # pragma: no cover - a torch that changed its internals
        pass
    return public


def current_flags() -> TorchFlags:
    """The flags now; torch must be loaded."""
    return TorchFlags(*[get() for get in _getters()])


class TorchFlagsSource(ModuleSource):
    name = "torch.flags"
    module = "torch.backends.cudnn"
    seedable = False

    def __init__(self) -> None:
        self._getters: tuple[Callable[[], bool], ...] = ()

    def available(self) -> bool:
        return "torch" in sys.modules and self.module in sys.modules

    def capture(self) -> tuple[bool, ...]:
        """The flags as a plain tuple (equal to the ``TorchFlags`` of the same values)."""
        if not self._getters:
            self._getters = _getters()
        a, b, c, d = self._getters
        return (a(), b(), c(), d())

    def restore(self, state: tuple[bool, ...]) -> None:
        now = self.capture()
        if now != tuple(state):
            set_flags(TorchFlags(*state), TorchFlags(*now))

    def seed(self, seed: int) -> None:
        pass

    def classify(self, before: Any, after: tuple[bool, ...]) -> list[Difference]:
        if before is None:
            return []
        return [
            Difference(CHANGED, detail, f"{old} -> {new}")
            for detail, old, new in zip(DETAILS, before, after, strict=True)
            if old != new
        ]

    def seeders(self) -> Sequence[Seeder]:
        # The call sets these two flags; cuDNN's are plain attribute assignments that only
        # the states show, so a call is never blamed for them.
        return (Seeder("torch", "use_deterministic_algorithms", CHANGED, _algorithm_flags),)


def _algorithm_flags(*args: Any, **kwargs: Any) -> tuple[str, ...]:
    return DETAILS[:2]
