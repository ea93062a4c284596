"""The registry of sources: built-in ones, ``register_source()`` and entry points."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

from .base import (
    ADVANCED,
    CHANGED,
    KINDS,
    REPLACED,
    RESEEDED,
    Difference,
    ModuleSource,
    Seeder,
    Source,
    TraceTarget,
)

__all__ = [
    "ADVANCED",
    "BUILTIN_NAMES",
    "CHANGED",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "REPLACED",
    "RESEEDED",
    "Difference",
    "ModuleSource",
    "Seeder",
    "Source",
    "TraceTarget",
    "build_sources",
    "register_source",
]

ENTRY_POINT_GROUP = "pytest_rngguard.sources"
BUILTIN_NAMES = (
    "random",
    "numpy",
    "torch",
    "torch.cuda",
    "tensorflow",
    "cupy",
    "env",
    "torch.flags",
)

# Sources registered through the Python API, like Hypothesis's ``register_random``:
# process-wide by nature, read at each session start.
_registered: list[Source] = []


def register_source(source: Source) -> Source:
    """Add a third-party source; sessions that start afterwards check it.

    Returns the source, so it can be used as a class decorator on an instance factory.
    """
    if not isinstance(source, Source):
        raise TypeError(
            f"register_source() needs an object implementing pytest_rngguard.sources.Source, "
            f"got {source!r}"
        )
    if not source.name or source.name in BUILTIN_NAMES:
        raise ValueError(f"register_source(): the name {source.name!r} is empty or built in")
    _registered[:] = [s for s in _registered if s.name != source.name]
    _registered.append(source)
    return source


def _builtin(env_variables: Sequence[str]) -> list[Source]:
    from .cupy import CupySource
    from .env import EnvSource
    from .numpy import NumpySource
    from .python_random import PythonRandomSource
    from .tensorflow import TensorflowSource
    from .torch import TorchSource
    from .torch_cuda import TorchCudaSource
    from .torch_flags import TorchFlagsSource

    return [
        PythonRandomSource(),
        NumpySource(),
        TorchSource(),
        TorchCudaSource(),
        TensorflowSource(),
        CupySource(),
        EnvSource(env_variables),
        TorchFlagsSource(),
    ]


def _from_entry_points() -> Iterable[Source]:
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
            is_factory = isinstance(loaded, type) or not isinstance(loaded, Source)
            source = loaded() if is_factory else loaded
            if not isinstance(source, Source):
                raise TypeError(f"{source!r} does not implement the Source protocol")
        except Exception as exc:
            warnings.warn(
                f"rngguard: the source entry point {entry.name!r} ({entry.value}) could not be "
                f"loaded and is skipped: {exc!r}",
                stacklevel=2,
            )
            continue
        yield source


def build_sources(env_variables: Sequence[str], only: Sequence[str] | None = None) -> list[Source]:
    """Every source for one session: built in, registered, then entry points."""
    sources = _builtin(env_variables) + list(_registered)
    names = {s.name for s in sources}
    for source in _from_entry_points():
        if source.name not in names:
            names.add(source.name)
            sources.append(source)
    if only is not None:
        sources = [s for s in sources if s.name in only]
    return sources


def known_names() -> list[str]:
    return [*BUILTIN_NAMES, *(s.name for s in _registered)]
