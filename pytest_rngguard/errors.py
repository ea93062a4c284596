"""The warning and error types users see and filter on."""

from __future__ import annotations

from typing import final

import pytest


@final
class RNGLeakWarning(pytest.PytestWarning):
    """A test, fixture or test-module import changed global random state.

    Built with one plain-string argument, so pytest-xdist can rebuild it on the controller.
    ``-W error::pytest_rngguard.RNGLeakWarning`` turns leaks into failures.
    """

    __module__ = "pytest_rngguard"


class RNGLeakError(AssertionError):
    """Raised by :func:`pytest_rngguard.guard` and ``rngguard.assert_no_leak`` on a leak."""

    __module__ = "pytest_rngguard"


class NotReproducibleError(AssertionError):
    """Raised when runs that should be identical produced different results."""

    __module__ = "pytest_rngguard"
