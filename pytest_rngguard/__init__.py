"""pytest-rngguard: keep test suites honest about global random state.

The public Python API; the pytest plugin itself lives in :mod:`pytest_rngguard.plugin`.
"""

from __future__ import annotations

from ._version import __version__
from .determinism import deterministic
from .errors import NotReproducibleError, RNGLeakError, RNGLeakWarning
from .guard import guard, isolated, snapshot
from .reproducibility import assert_reproducible
from .snapshot import Change, Snapshot
from .sources import Difference, ModuleSource, Seeder, Source, register_source

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
