"""Snapshots of every source, what changed between two of them, and how it is described."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from .origins import Origin
from .sources import ADVANCED, Source
from .sourceset import SourceSet


@dataclasses.dataclass(frozen=True)
class Change:
    """One source (or one device, variable or flag of it) that is not as it was."""

    source: str
    kind: str
    detail: str = ""
    description: str = ""
    #: The call that explains the final state, where one was seen.
    origin: Origin | None = None
    #: Every state-setting call seen for this source in the same phase, in order.
    calls: tuple[Origin, ...] = ()
    #: What ``--rngguard-trace`` watched when the change was found: "" (not asked for),
    #: "none" (it could not run), "calls" (its line tracer could not) or "lines"; tells
    #: which hint an unknown origin gets.  Not a field: a frozen dataclass sets each field
    #: through ``object.__setattr__``, and every change would pay for this one.
    traced: ClassVar[str] = ""

    def traced_as(self, traced: str) -> Change:
        """This change (just made), marked with what ``--rngguard-trace`` watched."""
        object.__setattr__(self, "traced", traced)
        return self

    def flagged(self, strict: bool) -> bool:
        return strict or self.kind != ADVANCED

    @property
    def label(self) -> str:
        return f"{self.source}[{self.detail}]" if self.detail else self.source


class Snapshot(Mapping[str, Any]):
    """The captured state of every available source at one moment."""

    def __init__(self, sources: SourceSet | Sequence[Source], states: dict[str, Any]) -> None:
        self._set = sources if isinstance(sources, SourceSet) else SourceSet(sources)
        self._states = states

    @classmethod
    def capture(cls, sources: SourceSet | Sequence[Source]) -> Snapshot:
        source_set = sources if isinstance(sources, SourceSet) else SourceSet(sources)
        return cls(source_set, source_set.capture())

    @property
    def source_set(self) -> SourceSet:
        return self._set

    def __getitem__(self, name: str) -> Any:
        return self._states[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        return f"<Snapshot of {', '.join(self._states) or 'no sources'}>"

    def diff(self, other: Snapshot) -> list[Change]:
        """What changed from this snapshot to ``other`` (a later one), classified."""
        changes: list[Change] = []
        for name, after in other._states.items():
            before = self._states.get(name)
            source = other._set.get(name) or self._set.get(name)
            if source is None or (before is not None and other._set.equal(source, before, after)):
                continue
            changes.extend(
                Change(name, d.kind, d.detail, d.description)
                for d in other._set.classify(source, before, after)
            )
        return changes

    def restore(self) -> list[str]:
        """Put every source captured here back as it was; returns the names of those that
        could not be (each with its reason in ``source_set.errors`` where it raised)."""
        return sorted(self._set.restore(self._states).failed)
