"""Snapshots of every source, what changed between two of them, and how it is described."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .origins import Origin
from .sources import ADVANCED, KINDS, Source


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

    def flagged(self, strict: bool) -> bool:
        return strict or self.kind != ADVANCED

    @property
    def label(self) -> str:
        return f"{self.source}[{self.detail}]" if self.detail else self.source


def severity(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


class Snapshot(Mapping[str, Any]):
    """The captured state of every available source at one moment."""

    def __init__(self, sources: Sequence[Source], states: dict[str, Any]) -> None:
        self._sources = {s.name: s for s in sources}
        self._states = states

    @classmethod
    def capture(cls, sources: Sequence[Source]) -> Snapshot:
        return cls(sources, {s.name: s.capture() for s in sources if s.available()})

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
            if before is not None and before == after:
                continue
            source = other._sources.get(name) or self._sources[name]
            changes.extend(
                Change(name, d.kind, d.detail, d.description)
                for d in source.classify(before, after)
            )
        return changes

    def restore(self) -> None:
        """Put every source captured here back as it was."""
        for name, state in self._states.items():
            source = self._sources[name]
            if source.available():
                source.restore(state)
