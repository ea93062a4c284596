"""Every use of another project's private API, in one place.

pytest, Hypothesis and ``importlib.metadata`` do not promise these names; each shim finds
out whether this version has what it needs (a feature test, never a version number) and
otherwise falls back on public behaviour, so a release that moves a name costs precision or
speed, never a crash.  ``tests/test_compat.py`` runs each shim both ways.

Nothing else in the package imports ``_pytest``, reads a private attribute of pytest's,
Hypothesis's or ``importlib``'s objects, or names one of their private modules.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Container
from typing import Any

import pytest

#: What pytest's ``runtestprotocol`` is: (item, log, nextitem) -> the reports of its phases.
Protocol = Callable[..., "list[pytest.TestReport]"]

#: The package that holds pytest's own code (``_pytest`` today), from a public class.
PYTEST_PACKAGE = pytest.Item.__module__.partition(".")[0]


def defined_by_pytest(function: object) -> bool:
    """Whether ``function`` is pytest's own code (its module is in pytest's package)."""
    module = str(getattr(function, "__module__", None) or "")
    return module.startswith(PYTEST_PACKAGE + ".")


def rerun_protocol() -> Protocol | None:
    """pytest's ``runtestprotocol``: runs one test's setup, call and teardown and returns
    their reports, logged or not (pytest-rerunfailures re-runs tests through it too).
    None where this pytest has none: a repeated test then runs once."""
    runner = sys.modules.get(f"{PYTEST_PACKAGE}.runner")
    protocol = getattr(runner, "runtestprotocol", None)
    return protocol if callable(protocol) else None


def stand_in_fixture_function() -> Any:
    """The function of pytest's stand-in fixtures for ``parametrize`` arguments: they only
    return ``request.param`` and run no user code, so nothing needs checking around them.
    None where this pytest keeps it elsewhere: they are then checked like any fixture."""
    for module in (f"{PYTEST_PACKAGE}.python", f"{PYTEST_PACKAGE}.fixtures"):
        function = getattr(sys.modules.get(module), "get_direct_param_fixture_func", None)
        if function is not None:
            return function
    return None


def setup_stack(session: pytest.Session) -> Container[Any] | None:
    """The nodes pytest has set up and not torn down yet; None where this pytest does not
    show them (a package's setup is then taken to be still ahead of its first test)."""
    stack = getattr(getattr(session, "_setupstate", None), "stack", None)
    return stack if isinstance(stack, Container) else None


#: Where Hypothesis's ``@seed(n)`` keeps ``n`` on a test, and ``@given`` reads it from.
_HYPOTHESIS_SEED = "_hypothesis_internal_use_seed"


@functools.cache
def _hypothesis_keeps_seed() -> bool:
    """Whether this Hypothesis's own ``@seed(n)`` keeps ``n`` where ``seed_hypothesis``
    puts it (asked of a function made for it, once per process)."""
    decorate = getattr(sys.modules.get("hypothesis"), "seed", None)
    if decorate is None:
        return False

    def probe() -> None:
        pass

    try:
        decorate(0)(probe)
    except Exception:
        return False
    return getattr(probe, _HYPOTHESIS_SEED, None) == 0


def seed_hypothesis(function: object, seed: int) -> tuple[object, Any] | None:
    """What ``@hypothesis.seed(seed)`` does to a ``@given`` test, without its settings
    change: its examples are derived from ``seed``.  Returns what ``unseed_hypothesis``
    needs to undo it; None where ``function`` is no Hypothesis test, or Hypothesis keeps
    its seed elsewhere (the examples are then Hypothesis's own choice)."""
    if not hasattr(function, "hypothesis") or not _hypothesis_keeps_seed():
        return None
    previous = getattr(function, _HYPOTHESIS_SEED, None)
    setattr(function, _HYPOTHESIS_SEED, seed)
    return function, previous


def unseed_hypothesis(seeded: tuple[object, Any]) -> None:
    """Undo ``seed_hypothesis``."""
    function, previous = seeded
    if previous is None:
        delattr(function, _HYPOTHESIS_SEED)
    else:
        setattr(function, _HYPOTHESIS_SEED, previous)


def distribution_name(dist: Any) -> str | None:
    """A distribution's normalised name, as ``importlib.metadata`` compares them when it
    decides which of two of the same name comes first.  Where the distribution has it,
    from its path (cheap); otherwise from its metadata (reads a file)."""
    name = getattr(dist, "_normalized_name", None)
    if isinstance(name, str):
        return name
    try:
        given = dist.metadata["Name"]
    except Exception:
        return None
    if not isinstance(given, str) or not given:
        return None
    return re.sub(r"[-_.]+", "-", given).lower().replace("-", "_")
