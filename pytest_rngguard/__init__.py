"""pytest-rngguard: keep test suites honest about global random state.

The public Python API; the pytest plugin itself lives in :mod:`pytest_rngguard.plugin`.
Names are loaded on first use, so importing the plugin does not load the whole API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import NotReproducibleError, RNGLeakError, RNGLeakWarning

if TYPE_CHECKING:
    from .determinism import deterministic
    from .guards import guard, isolated, snapshot
    from .reproducibility import assert_reproducible
    from .snapshots import Change, Snapshot
    from .sources import Difference, ModuleSource, Seeder, Source, register_source

#: Where each lazily loaded name lives (PEP 562).
_LAZY = {
    "deterministic": "determinism",
    "guard": "guards",
    "isolated": "guards",
    "snapshot": "guards",
    "assert_reproducible": "reproducibility",
    "Change": "snapshots",
    "Snapshot": "snapshots",
    "Difference": "sources",
    "ModuleSource": "sources",
    "Seeder": "sources",
    "Source": "sources",
    "register_source": "sources",
}

__all__ = [
    "Change",
    "Difference",
    "ModuleSource",
    "NotReproducibleError",
    "RNGLeakError",
    "RNGLeakWarning",
    "Seeder",
    "Snapshot",
    "Source",
    "__version__",
    "assert_reproducible",
    "deterministic",
    "guard",
    "isolated",
    "register_source",
    "snapshot",
]


#: Public submodules, reachable as attributes like any eagerly imported one.
_SUBMODULES = ("sources",)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
