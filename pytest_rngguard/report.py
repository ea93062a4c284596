"""Leaks as users read them: one renderer for warnings, the terminal summary and JSON."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from .ledger import Putback
from .origins import Origin
from .snapshots import Change
from .sources import CHANGED, REPLACED, RESEEDED

REPORT_VERSION = 1
TRACE_HINT = "origin unknown: re-run with --rngguard-trace to find the call"
#: The hint where ``--rngguard-trace`` watched every line and still names none.
TRACED_HINT = (
    "origin unknown: even --rngguard-trace found no line after which it changed: code that "
    "no traced line called (another thread, a callback the test runner made) changed it"
)
#: The hints where ``--rngguard-trace`` could not trace lines, or not run at all (another
#: tool held what it needs; a warning said so).
UNTRACED_HINTS = {
    "calls": "origin unknown: --rngguard-trace saw no call, and could not trace lines here "
    "(another trace function was installed)",
    "none": "origin unknown: --rngguard-trace could not run (see its warning)",
}


def hint(change: Change) -> str:
    """What an unknown origin's line says: how to find it, or why even the tracer did not."""
    if change.traced == "lines":
        return TRACED_HINT
    return UNTRACED_HINTS.get(change.traced, TRACE_HINT)


#: Where a leak's change is kept until its scope ends (``Leak.scope``): the test's own,
#: which ends after its teardown, is TEST; a module's import is COLLECTION; a wider fixture's
#: change names the fixture and its scope (``fixture 'model' (module)``).
TEST = "test"
COLLECTION = "collection"


@dataclasses.dataclass(frozen=True)
class Leak:
    """A flagged change, with where it happened and whether it was put back."""

    nodeid: str
    phase: str  # collection, setup, call or teardown
    fixture: str | None
    change: Change
    #: Settled when the change's scope ends: whether the source read back as before.
    putback: Putback = dataclasses.field(default_factory=Putback, compare=False)
    #: The scope the change belongs to (see TEST and COLLECTION).
    scope: str = TEST

    @property
    def restored(self) -> bool:
        return self.putback.done is True

    def to_json(self) -> dict[str, Any]:
        origin = self.change.origin
        return {
            "nodeid": self.nodeid,
            "phase": self.phase,
            "fixture": self.fixture,
            "source": self.change.source,
            "kind": self.change.kind,
            "detail": self.change.detail,
            "origin": origin.to_json() if origin is not None else None,
            "restored": self.restored,
            # Not in the JSON report (SPEC fixes its fields); carried for xdist and text.
            "description": self.change.description,
            "calls": [c.to_json() for c in self.change.calls],
            "traced": self.change.traced,
            "scope": self.scope,
            "settled": self.putback.done is not None,
            "why": self.putback.why,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Leak:
        origin = data.get("origin")
        change = Change(
            data["source"],
            data["kind"],
            data.get("detail", ""),
            data.get("description", ""),
            Origin.from_json(origin) if origin else None,
            tuple(Origin.from_json(c) for c in data.get("calls", ())),
        )
        if data.get("traced"):
            change.traced_as(data["traced"])
        putback = Putback()
        if data.get("settled", True):
            putback.settle(bool(data["restored"]), data.get("why", ""))
        return cls(
            data["nodeid"],
            data["phase"],
            data.get("fixture"),
            change,
            putback,
            data.get("scope", TEST),
        )

    def key(self) -> tuple[str, str, str | None, str, str, str]:
        """What tells a leak apart from the others of a run (for settling it later)."""
        change = self.change
        return (self.nodeid, self.phase, self.fixture, change.source, change.detail, change.kind)

    def report_json(self) -> dict[str, Any]:
        """Exactly the fields of a leak in the JSON report."""
        data = self.to_json()
        for field in ("description", "calls", "traced", "scope", "settled", "why"):
            del data[field]
        return data


def where(leak: Leak) -> str:
    if leak.fixture:
        return f"{leak.phase} (fixture {leak.fixture!r})"
    if leak.scope.startswith("setup_module"):
        return f"{leak.phase} ({leak.scope})"
    return leak.phase


def render_change(leak: Leak, *, stack: bool = True) -> list[str]:
    """The lines describing one leak, origin first, as ``path:line`` an editor can open."""
    change = leak.change
    head = f"{change.label} {change.kind} during {where(leak)}"
    if change.description:
        head += f": {change.description}"
    origin = change.origin
    if origin is not None:
        head += f" at {origin.location}"
    lines = [head]
    if origin is not None and stack and len(origin.stack) > 1:
        lines.extend(f"    {frame}" for frame in origin.stack)
    earlier = [c for c in change.calls if c != origin]
    if earlier:
        lines.append("    earlier calls in the same phase:")
        lines.extend(f"      {c.location}" for c in earlier)
    if origin is None and change.kind in (RESEEDED, REPLACED, CHANGED):
        lines.append(f"    ({hint(change)})")
    return lines


def render_test(nodeid: str, leaks: Sequence[Leak]) -> str:
    """The text of one test's RNGLeakWarning (and of its failure in fail mode)."""
    lines = [f"{nodeid} changed global random state:"]
    for leak in leaks:
        lines.extend(f"  {line}" for line in render_change(leak))
    lines.extend(f"  {line}" for line in render_putbacks(leaks))
    return "\n".join(lines)


def render_putbacks(leaks: Sequence[Leak]) -> list[str]:
    """What became of the leaked states: put back, kept for a wider scope, or not put back."""
    back: list[str] = []
    later: list[str] = []
    kept: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    for leak in leaks:
        label, done = leak.change.label, leak.putback.done
        if done is False:
            failed.setdefault(label, leak.putback.why)
        elif leak.scope == COLLECTION:
            kept.setdefault("put back after the import, set again for this module's tests", [])
            kept["put back after the import, set again for this module's tests"].append(label)
        elif done is None and leak.scope != TEST:
            kept.setdefault(f"kept while {leak.scope} is in use, put back after it", []).append(
                label
            )
        elif done:
            back.append(label)
        elif leak.putback.held:
            later.append(label)  # told before the test is over (a failure in fail mode)
    lines = []
    if back:
        lines.append(f"put back after the test: {', '.join(sorted(set(back)))}")
    if later:
        lines.append(f"to be put back after the test: {', '.join(sorted(set(later)))}")
    for what, labels in kept.items():
        lines.append(f"{what}: {', '.join(sorted(set(labels)))}")
    for label, why in sorted(failed.items()):
        lines.append(f"not put back: {label} ({why})" if why else f"not put back: {label}")
    return lines


def group_key(leak: Leak) -> tuple[str, str, str, str]:
    origin = leak.change.origin
    return (
        leak.change.label,
        leak.change.kind,
        origin.location if origin is not None else "",
        leak.phase,
    )


def render_summary(leaks: Sequence[Leak], verbose: bool) -> list[str]:
    """Terminal summary lines: one per leak with -v, else grouped by shared origin."""
    if verbose:
        lines = []
        for leak in leaks:
            for i, line in enumerate(render_change(leak, stack=False)):
                lines.append(f"{leak.nodeid}: {line}" if i == 0 else f"  {line}")
        return lines
    groups: dict[tuple[str, str, str, str], list[Leak]] = defaultdict(list)
    for leak in leaks:
        groups[group_key(leak)].append(leak)
    lines = []
    for (label, kind, location, phase), members in groups.items():
        tests = sorted({m.nodeid for m in members})
        if location:
            by = f" by {location}"
        else:  # a draw has no seeding call to find: hint only where there is one
            by = f" ({hint(members[0].change)})" if kind in (RESEEDED, REPLACED, CHANGED) else ""
        if len(tests) == 1:
            lines.append(f"{tests[0]}: {label} {kind} during {where(members[0])}{by}")
        else:
            lines.append(f"{len(tests)} tests: {label} {kind} during {phase}{by}")
            shown = tests[:3]
            more = f" and {len(tests) - len(shown)} more (-v lists all)" if len(tests) > 3 else ""
            lines.append(f"  {', '.join(shown)}{more}")
    return lines


def github_annotations(
    leaks: Iterable[Leak], mode: str, not_reproducible: Iterable[dict[str, Any]] = ()
) -> list[str]:
    """GitHub Actions workflow commands pointing at each leak's origin and at each
    non-reproducible test's file."""
    level = "error" if mode == "fail" else "warning"
    lines = []
    for leak in leaks:
        text = " ".join(render_change(leak, stack=False)[0].split())
        origin = leak.change.origin
        where_ = f" file={_escape_property(origin.file)},line={origin.line}," if origin else " "
        title = _escape_property(f"rngguard: {leak.change.label} {leak.change.kind}")
        lines.append(f"::{level}{where_}title={title}::{_escape_data(f'{leak.nodeid}: {text}')}")
    for problem in not_reproducible:
        path = problem["nodeid"].partition("::")[0]
        text = f"{problem['nodeid']} is not reproducible: {problem['detail']}"
        lines.append(
            f"::error file={_escape_property(path)},title=rngguard%3A not reproducible"
            f"::{_escape_data(text)}"
        )
    return lines


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
