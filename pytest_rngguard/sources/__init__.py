"""The registry of sources: built-in ones, ``register_source()`` and entry points."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

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


def _entry_points() -> Iterable[EntryPoint]:
    """``importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)``, a third of the cost:
    that parses every installed distribution's entry points (pytest has just done so for its
    own group), this reads each one's text and parses only those that name the group.  Like
    it, only the first distribution of a name on ``sys.path`` counts."""
    from importlib.metadata import distributions

    from ..compat import distribution_name

    header = f"[{ENTRY_POINT_GROUP}]"
    seen: set[str] = set()
    for dist in distributions():
        name = distribution_name(dist)
        if name is not None:
            if name in seen:
                continue
            seen.add(name)
        text = dist.read_text("entry_points.txt")
        if text and header in text:
            yield from dist.entry_points.select(group=ENTRY_POINT_GROUP)


def _from_entry_points() -> Iterable[Source]:
    for entry in _entry_points():
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
