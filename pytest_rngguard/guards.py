"""The library form of the leak guard: ``snapshot()``, ``guard()`` and ``isolated()``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from .errors import RNGLeakError
from .monitor import Monitor
from .origins import IgnoreRules, PathShortener
from .report import Leak, render_test
from .settings import DEFAULT_IGNORE
from .snapshots import Snapshot
from .sources import Source, build_sources
from .sources.env import DEFAULT_VARIABLES


def _sources(sources: Sequence[Source] | None) -> Sequence[Source]:
    return build_sources(DEFAULT_VARIABLES) if sources is None else sources


def snapshot(sources: Sequence[Source] | None = None) -> Snapshot:
    """Capture every available source now (libraries not yet imported are skipped)."""
    return Snapshot.capture(_sources(sources))


@contextlib.contextmanager
def isolated(sources: Sequence[Source] | None = None) -> Iterator[Snapshot]:
    """Put every source back on exit, also on exception, without initialising CUDA.

    Yields the snapshot taken on entry.
    """
    before = snapshot(sources)
    try:
        yield before
    finally:
        before.restore()


@contextlib.contextmanager
def guard(
    *, strict: bool = False, restore: bool = True, label: str = "guarded block"
) -> Iterator[None]:
    """Raise :class:`RNGLeakError` if the block leaves global random state changed.

    Seeding calls inside the block are intercepted, so the error names the line that did
    it.  With ``restore`` (default) leaked sources are put back before raising.  ``strict``
    also flags sources that only advanced.
    """
    monitor = Monitor(
        _sources(None),
        ignore=IgnoreRules(DEFAULT_IGNORE),
        shorten=PathShortener(os.getcwd()),
        keep_advanced=strict,
    )
    monitor.start()
    monitor.active = True
    before = monitor.reset()
    try:
        yield
    finally:
        changes = [c for c in monitor.checkpoint() if c.flagged(strict)]
        monitor.stop()
        if restore and changes:
            monitor.restore(before, {c.source for c in changes})
    if changes:
        leaks = [Leak(label, "call", None, change, restore) for change in changes]
        raise RNGLeakError(render_test(label, leaks))
