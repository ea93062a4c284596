"""The library form of the leak guard: ``snapshot()``, ``guard()`` and ``isolated()``."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import RNGLeakError, RNGLeakWarning
from .ledger import Putback
from .monitor import Monitor
from .origins import IgnoreRules, ImportWatcher, PathShortener
from .report import Leak, render_test
from .settings import DEFAULT_IGNORE
from .snapshots import Snapshot
from .sources import Source
from .sources.base import import_module_of
from .sourceset import SourceSet, build


def snapshot(sources: Sequence[Source] | None = None) -> Snapshot:
    """Capture every available source now (libraries not yet imported are skipped)."""
    return Snapshot.capture(build(sources))


@contextlib.contextmanager
def _import_states(source_set: SourceSet, missing: Sequence[Source]) -> Iterator[None]:
    """Capture the state of each library in ``missing`` the moment it is first imported."""
    if not missing:
        yield
        return

    def imported(module: str) -> None:
        source_set.imported(module)

    watcher = ImportWatcher({import_module_of(s) for s in missing}, imported)
    watcher.install()
    try:
        yield
    finally:
        watcher.uninstall()


def _put_back(source_set: SourceSet, states: dict[str, Any], what: str) -> list[str]:
    """Restore ``states`` and the import state of each source loaded since; the names of
    those that could not be put back, after one warning naming them."""
    targets = dict(states)
    for name, state in source_set.import_states.items():
        if targets.get(name) is None:
            targets[name] = state
    failed = source_set.restore(targets).failed
    if failed:
        reasons = "; ".join(f"{name}: {why}" for name, why in sorted(failed.items()))
        warnings.warn(RNGLeakWarning(f"{what} could not put back {reasons}"), stacklevel=4)
    return sorted(failed)


@contextlib.contextmanager
def isolated(sources: Sequence[Source] | None = None) -> Iterator[Snapshot]:
    """Put every source back on exit, also on exception, without initialising CUDA.

    A library first imported inside the block goes back to its state right after that
    import.  Yields the snapshot taken on entry.
    """
    source_set = build(sources)
    before = Snapshot.capture(source_set)
    missing = [s for s in source_set.sources if before.get(s.name) is None]
    try:
        with _import_states(source_set, missing):
            yield before
    finally:
        _put_back(source_set, dict(before), "isolated()")


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
        build(None),
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
        befores = {**before, **monitor.last_from}
        monitor.stop()
        failed: dict[str, str] = {}
        if restore and changes:
            failed = monitor.sources.restore(befores, sorted({c.source for c in changes})).failed
    if changes:
        leaks = []
        for change in changes:
            putback = Putback()
            if restore:
                putback.settle(change.source not in failed, failed.get(change.source, ""))
            leaks.append(Leak(label, "call", None, change, putback))
        raise RNGLeakError(render_test(label, leaks))
