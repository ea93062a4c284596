"""The one layer that captures, compares, seeds and restores sources, with one error policy.

Everything that touches global random state goes through a :class:`SourceSet`: the monitor's
checks, ``snapshot()``/``guard()``/``isolated()`` and the ``deterministic`` recipe.  The policy:
a source whose method raises (or whose states cannot be compared) is disabled for the rest of
the set's life and one message says so; nothing a source does ever propagates into the
user's session.  Every restore is confirmed by capturing the source again, and what callers
tell users is that confirmation, never what was asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .sources.base import Difference, Source, import_module_of


class Restored(NamedTuple):
    """What a restore achieved."""

    #: The state of every source it touched, captured after restoring: what the next
    #: comparison starts from, whether or not the restore worked.
    states: dict[str, Any]
    #: The sources that are not back as asked, with the reason.
    failed: dict[str, str]


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` as a plain bool; raises what the comparison raises."""
    if a is b:
        return True
    result = a == b
    return result if result is True or result is False else bool(result)


class SourceSet:
    """A session's (or a block's) sources, and every operation on them."""

    __slots__ = ("by_name", "errors", "import_states", "sources")

    def __init__(self, sources: Iterable[Source]) -> None:
        #: The sources still in use (a plain attribute: read at every check).
        self.sources: tuple[Source, ...] = tuple(sources)
        #: The same, by name (rebuilt with ``sources``: read at every check).
        self.by_name: dict[str, Source] = {source.name: source for source in self.sources}
        #: Messages about sources that misbehaved and were disabled, not yet shown.
        self.errors: list[str] = []
        #: Each source's state the moment its library's import finished (see ``imported``).
        self.import_states: dict[str, Any] = {}

    def get(self, name: str) -> Source | None:
        return self.by_name.get(name)

    def disable(self, source: Source, doing: str, exc: BaseException) -> None:
        if source not in self.sources:
            return
        self.sources = tuple(s for s in self.sources if s is not source)
        self.by_name = {s.name: s for s in self.sources}
        self.errors.append(
            f"rngguard: the source {source.name!r} raised {exc!r} while {doing}; it is not "
            f"checked or restored for the rest of this session"
        )

    # -- reading ---------------------------------------------------------------------------

    def available(self) -> list[Source]:
        found = []
        for source in self.sources:
            try:
                if source.available():
                    found.append(source)
            except Exception as exc:
                self.disable(source, "telling whether it is available", exc)
        return found

    def capture_one(self, source: Source) -> Any:
        """The source's state now; None if it is not available or raised (then disabled)."""
        try:
            if not source.available():
                return None
            return source.capture()
        except Exception as exc:
            self.disable(source, "capturing its state", exc)
            return None

    def capture_now(self, source: Source) -> Any:
        """The source's state, read even while its library still marks itself as being
        imported (it has run: an import watcher is calling); None if it cannot be read yet."""
        if source not in self.sources:
            return None
        try:
            return source.capture()
        except Exception:
            return None

    def capture(self, sources: Iterable[Source] | None = None) -> dict[str, Any]:
        """The state of each available source (all of them by default), by name."""
        states = {}
        for source in self.sources if sources is None else sources:
            try:
                if source.available():
                    states[source.name] = source.capture()
            except Exception as exc:
                self.disable(source, "capturing its state", exc)
        return states

    def equal(self, source: Source, a: Any, b: Any) -> bool:
        """Whether two states of ``source`` are the same; a comparison that raises disables
        the source (and counts as equal: nothing is reported for it)."""
        try:
            return _equal(a, b)
        except Exception as exc:
            self.disable(source, "comparing two of its states", exc)
            return True

    def classify(self, source: Source, before: Any, after: Any) -> list[Difference]:
        try:
            return list(source.classify(before, after))
        except Exception as exc:
            self.disable(source, "classifying a change", exc)
            return []

    def imported(self, module: str) -> list[str]:
        """Capture, as their import state, the sources whose library's import (``module``)
        has just finished, before any other code can touch them; returns their names.  A
        source not ready yet is tried again at the next import."""
        names = []
        for source in self.sources:
            if source.name in self.import_states or import_module_of(source) != module:
                continue
            try:
                state = source.capture()
            except Exception:
                continue
            if state is not None:
                self.import_states[source.name] = state
                names.append(source.name)
        return names

    # -- writing ---------------------------------------------------------------------------

    def seed(self, source: Source, seed: int, before: Any) -> bool:
        """Seed one source whose state is ``before``; False (and the source disabled, its
        state put back) if it raised."""
        try:
            source.seed(seed)
        except Exception as exc:
            # Whatever it did before it raised goes back: directly, since ``restore`` skips
            # a source that reads as unavailable, as one whose import is still running does
            # (the recipe seeds a library from an import watcher).
            if before is not None:
                with contextlib.suppress(Exception):  # disabled below all the same
                    source.restore(before)
            self.disable(source, "seeding it", exc)
            return False
        return True

    def restore(self, states: Mapping[str, Any], names: Iterable[str] | None = None) -> Restored:
        """Put the named sources (every one in ``states`` by default) back, then capture each
        again to confirm it."""
        wanted = states.keys() if names is None else [n for n in names if n in states]
        now: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for name in wanted:
            source = self.get(name)
            if source is None:
                failed[name] = "its source was disabled earlier in the session"
                continue
            target = states[name]
            if target is None:
                failed[name] = "its state from before is not known (its library was loaded since)"
                continue
            try:
                if source.available():
                    source.restore(target)
            except Exception as exc:
                self.disable(source, "restoring its state", exc)
                failed[name] = f"restoring it raised {exc!r}"
                continue
            state = self.capture_one(source)
            now[name] = state
            if not self._confirmed(source, target, state):
                failed[name] = "it did not read back as the state it was put back to"
        return Restored(now, failed)

    def _confirmed(self, source: Source, target: Any, now: Any) -> bool:
        if target is None or now is None:
            return target is None and now is None
        if self.equal(source, target, now):
            return True
        # Not the same bytes, but nothing a user could see (CUDA started since, say).
        return self.get(source.name) is not None and not self.classify(source, target, now)


def build(sources: Sequence[Source] | None, env_variables: Sequence[str] = ()) -> SourceSet:
    """A set of the given sources, or of every known one."""
    if sources is None:
        from .sources import build_sources
        from .sources.env import DEFAULT_VARIABLES

        return SourceSet(build_sources(env_variables or DEFAULT_VARIABLES))
    return SourceSet(sources)
