"""The leak baseline (``--rngguard-baseline``): the leaks a suite is known to have, so that
only new ones warn or fail.

An entry names a leak by what stays put while the code around it is edited: whose code made
the change (its *owner*), the source and its detail, the kind, and the file and function of
the call that made it -- never a line number.  The owner is the test, for its own leaks; the
module (or package, or conftest) whose import made the change; or, for the leaks of a wider
scope, that scope: a fixture by its name, scope and the node id it is defined for, a
package's ``setup_module`` by the package's node id.  A wider scope's change is reported on
whichever test set the scope up (or tore it down) first, which depends on ``-k``, on the
order of the tests and on how xdist shares them out; its owner does not.

Everything here is a function of its arguments, but for reading the file; the hooks gather
what ran (:class:`Ran`) and the plugin keeps a session's :class:`Baseline`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .files import read_json
from .sources.base import ADVANCED, KINDS

if TYPE_CHECKING:
    from .origins import Origin
    from .report import Leak

BASELINE_VERSION = 1

#: Who made a change: ``("test", nodeid)``, ``("import", nodeid)``, ``("package", nodeid)``
#: or ``("fixture", name, scope, nodeid it is defined for)``.
Owner = tuple[str, ...]
#: The owner fields of an entry, each with the fields that come with it.
OWNERS = {"test": (), "import": (), "package": (), "fixture": ("scope", "defined_for")}
WIDER_SCOPES = ("class", "module", "package", "session")
_FIELDS = ("source", "kind", "detail", "origin")
#: How ``origins.build_origin`` writes a frame of a stack.
_FRAME = re.compile(r"^(?P<file>.*):\d+ in (?P<function>.*)$")
#: The functions of a module or package that pytest's xunit support runs at its teardown.
_MODULE_TEARDOWNS = ("teardown_module", "tearDownModule")


class Entry(NamedTuple):
    """One known leak, as the file keeps it: its key, nothing else."""

    owner: Owner
    source: str
    kind: str
    detail: str = ""
    #: The origin's file and function; None where the origin was unknown.
    origin: tuple[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {self.owner[0]: self.owner[1]}
        data.update(zip(OWNERS[self.owner[0]], self.owner[2:], strict=True))
        data.update(source=self.source, kind=self.kind, detail=self.detail)
        origin = self.origin
        data["origin"] = {"file": origin[0], "function": origin[1]} if origin else None
        return data

    def sort_key(self) -> tuple[Any, ...]:
        return (self.owner, self.source, self.detail, self.kind, self.origin or ("", ""))


# -- a leak's entry ----------------------------------------------------------------------------


def owner_of(leak: Leak) -> Owner:
    if leak.made_by:
        return leak.made_by
    return ("import" if leak.phase == "collection" else "test", leak.nodeid)


def entry_of(leak: Leak) -> Entry:
    change = leak.change
    origin = change.origin
    return Entry(
        owner_of(leak),
        change.source,
        change.kind,
        change.detail,
        (origin.file, origin.function) if origin is not None else None,
    )


def fixture_owner(argname: str, scope: str, baseid: str) -> Owner:
    return ("fixture", argname, scope, baseid)


def package_owner(nodeid: str) -> Owner:
    return ("package", nodeid)


def teardown_frames(owner: Owner, code_file: str, code_name: str) -> list[tuple[str, str]]:
    """The frames, as (file, function), whose code is a wider fixture's own: a change made
    below one of them during a test's teardown is that fixture's.  pytest runs a module's
    ``teardown_module`` (or a class's ``teardown_class``) through a fixture of its own,
    whose code is pytest's: there the user's function is the frame to look for."""
    name, baseid = owner[1], owner[3]
    if name.startswith("_xunit_setup_module_fixture_"):
        return [(baseid, teardown) for teardown in _MODULE_TEARDOWNS]
    if name.startswith("_xunit_setup_class_fixture_"):
        return [(baseid.partition("::")[0], "teardown_class")]
    return [(code_file, code_name)]


def teardown_owner(origin: Origin | None, frames: dict[tuple[str, str], Owner | None]) -> Owner:
    """The wider scope whose teardown made a change found in a test's teardown, from the
    frames of its origin's stack (outermost first); empty where none is found, or where two
    scopes share the frame."""
    if origin is None:
        return ()
    for frame in origin.stack or (f"{origin.file}:{origin.line} in {origin.function}",):
        found = _FRAME.match(frame)
        if found is None:
            continue
        where = (found["file"], found["function"])
        if where in frames:
            return frames[where] or ()
        if where[0].endswith("/__init__.py") and where[1] in _MODULE_TEARDOWNS:
            return package_owner(where[0].rpartition("/")[0])
    return ()


def attribute_teardown(
    leaks: Sequence[Leak], frames: dict[tuple[str, str], Owner | None]
) -> list[Leak]:
    """``leaks`` of a test's teardown, each made by a wider scope's teardown marked so."""
    marked = []
    for leak in leaks:
        owner = () if leak.made_by else teardown_owner(leak.change.origin, frames)
        marked.append(dataclasses.replace(leak, made_by=owner) if owner else leak)
    return marked


# -- what ran ----------------------------------------------------------------------------------


class Ran:
    """What this session ran to its end: only an entry whose owner ran can be found to no
    longer happen.  A test counts when its setup, call and teardown all passed (a test that
    failed or was skipped may have stopped before its leak); an import when its collector was
    collected; a wider fixture when its setup finished; a package when one of its tests
    counts.  In a session stopped early (``-x``, ``--maxfail``, an interruption) the wider
    scopes still set up are torn down after the last test, where nothing is checked: then no
    wider scope counts."""

    __slots__ = ("_bad", "_called", "collectors", "scopes", "stopped", "tests")

    def __init__(self) -> None:
        self.tests: set[str] = set()
        self.collectors: set[str] = set()
        self.scopes: set[Owner] = set()
        self.stopped = False
        self._called: set[str] = set()
        self._bad: set[str] = set()

    def test_report(self, nodeid: str, when: str, passed: bool) -> None:
        if not passed:
            self._bad.add(nodeid)
        elif when == "call":
            self._called.add(nodeid)
        if when == "teardown":
            if nodeid in self._called and nodeid not in self._bad:
                self.tests.add(nodeid)
            self._called.discard(nodeid)
            self._bad.discard(nodeid)

    def to_json(self) -> dict[str, Any]:
        """What a worker hands the controller (the controller sees the tests' reports)."""
        return {"collectors": sorted(self.collectors), "scopes": sorted(self.scopes)}

    def merge(self, data: dict[str, Any]) -> None:
        self.collectors.update(data.get("collectors", ()))
        self.scopes.update(tuple(owner) for owner in data.get("scopes", ()))

    def has_run(self, owner: Owner) -> bool:
        what, name = owner[0], owner[1]
        if what == "test":
            return name in self.tests
        if what == "import":
            return name in self.collectors
        if self.stopped:
            return False
        if what == "fixture":
            return owner in self.scopes
        prefix = f"{name}/" if name else ""
        return any(test.startswith(prefix) for test in self.tests)


# -- the verdict -------------------------------------------------------------------------------


class Verdict(NamedTuple):
    """This session's leaks against the baseline file."""

    #: How many entries the file held when the session started.
    entries: int
    new: list[Leak]
    known: list[Leak]
    #: Entries whose owner ran and could have been reported, but that did not happen.
    stale: list[Entry]
    #: The file's new entries, when the session updates it.
    written: list[Entry] | None


def judge(
    entries: frozenset[Entry],
    leaks: Sequence[Leak],
    ran: Ran,
    reportable: Iterable[str],
    *,
    strict: bool,
    update: bool,
) -> Verdict:
    """Which leaks are new and which known, which entries no longer happen, and (``update``)
    the entries to write: the old ones but those that no longer happen, and every leak's.

    ``reportable``: the sources this session checks; an entry of another source, or of the
    kind ``advanced`` without ``strict``, could not have been reported, so it is kept."""
    found = {id(leak): entry_of(leak) for leak in leaks}
    new = [leak for leak in leaks if found[id(leak)] not in entries]
    known = [leak for leak in leaks if found[id(leak)] in entries]
    happened = set(found.values())
    checked = set(reportable)
    stale = sorted(
        (
            entry
            for entry in entries
            if entry not in happened
            and entry.source in checked
            and (strict or entry.kind != ADVANCED)
            and ran.has_run(entry.owner)
        ),
        key=Entry.sort_key,
    )
    written = None
    if update:
        written = sorted((entries - set(stale)) | happened, key=Entry.sort_key)
    return Verdict(len(entries), new, known, stale, written)


# -- the file ----------------------------------------------------------------------------------


def file_json(entries: Iterable[Entry]) -> dict[str, Any]:
    return {
        "version": BASELINE_VERSION,
        "leaks": [entry.to_json() for entry in sorted(set(entries), key=Entry.sort_key)],
    }


def load(path: str) -> frozenset[Entry]:
    """The entries of the baseline file at ``path``; ``ValueError`` naming the file and what
    is wrong with it where it is no baseline file (``FileNotFoundError`` where it is
    missing)."""
    data = read_json(path, "a pytest-rngguard baseline file", file_problem)
    return frozenset(_entry(item) for item in data["leaks"])


def file_problem(data: Any) -> str | None:
    """What keeps ``data`` (a parsed JSON file) from being a baseline file, or None."""
    if not isinstance(data, dict):
        return f"it holds {_json_type(data)}, not an object"
    if "version" not in data:
        return "it has no version"
    version = data["version"]
    if version != BASELINE_VERSION or isinstance(version, bool):
        return f"version {version!r} is not supported (this plugin reads {BASELINE_VERSION})"
    unknown = sorted(set(data) - {"version", "leaks"})
    if unknown:
        return f"it has an unknown field {unknown[0]!r}"
    if "leaks" not in data:
        return "it has no leaks"
    if not isinstance(data["leaks"], list):
        return f"leaks is {_json_type(data['leaks'])}, not an array"
    for index, item in enumerate(data["leaks"]):
        problem = next(_entry_problems(f"leaks[{index}]", item), None)
        if problem is not None:
            return problem
    return None


def _entry_problems(where: str, item: Any) -> Iterator[str]:
    if not isinstance(item, dict):
        yield f"{where} is {_json_type(item)}, not an object"
        return
    owners = [name for name in OWNERS if name in item]
    if len(owners) != 1:
        given = f"names two owners ({', '.join(owners)})" if owners else "names no owner"
        yield f"{where} {given}: give one of {', '.join(OWNERS)}"
        return
    owner = owners[0]
    allowed = {owner, *OWNERS[owner], *_FIELDS}
    for field in item:
        if field not in allowed:
            yield f"{where} has an unknown field {field!r}"
    for field in (owner, *OWNERS[owner], "source", "kind"):
        if field not in item:
            yield f"{where} has no {field}"
    yield from _value_problems(where, item, (owner, *OWNERS[owner], *_FIELDS[:3]))
    origin = item.get("origin")
    if origin is not None:
        yield from _origin_problems(f"{where}['origin']", origin)


def _value_problems(where: str, item: dict[str, Any], strings: Sequence[str]) -> Iterator[str]:
    for field in strings:
        if field in item and not isinstance(item[field], str):
            yield f"{where}[{field!r}] is {_json_type(item[field])}, not a string"
    for field, allowed in (("kind", KINDS), ("scope", WIDER_SCOPES)):
        value = item.get(field)
        if isinstance(value, str) and value not in allowed:
            yield f"{where}[{field!r}] is {value!r}: use one of {', '.join(allowed)}"


def _origin_problems(where: str, origin: Any) -> Iterator[str]:
    if not isinstance(origin, dict):
        yield f"{where} is {_json_type(origin)}, not an object or null"
        return
    for field in ("file", "function"):
        if not isinstance(origin.get(field), str):
            found = "missing" if field not in origin else _json_type(origin[field])
            yield f"{where}[{field!r}] is {found}, not a string"
    unknown = sorted(set(origin) - {"file", "function"})
    if unknown:
        yield f"{where} has an unknown field {unknown[0]!r}"


def _entry(item: dict[str, Any]) -> Entry:
    owner_field = next(name for name in OWNERS if name in item)
    owner = (owner_field, item[owner_field], *(item[f] for f in OWNERS[owner_field]))
    origin = item.get("origin")
    return Entry(
        owner,
        item["source"],
        item["kind"],
        item.get("detail", ""),
        (origin["file"], origin["function"]) if origin else None,
    )


_JSON_TYPES = (
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


# -- a session's baseline ----------------------------------------------------------------------


class Baseline:
    """The baseline of a session: the file's entries, and what the session ran.

    ``update``: the session records its leaks in the file; every leak is then accepted (no
    warning, no failure), as a snapshot tool's update run passes."""

    __slots__ = ("entries", "frames", "ran", "update")

    def __init__(self, entries: frozenset[Entry], *, update: bool) -> None:
        self.entries = entries
        self.update = update
        self.ran = Ran()
        #: The frames of the wider fixtures set up in this process (``teardown_frames``);
        #: None where two share one.
        self.frames: dict[tuple[str, str], Owner | None] = {}

    def knows(self, leak: Leak) -> bool:
        return entry_of(leak) in self.entries

    def to_tell(self, leaks: Sequence[Leak]) -> list[Leak]:
        """The leaks a warning or a failure tells: the new ones (none when updating)."""
        if self.update:
            return []
        return [leak for leak in leaks if entry_of(leak) not in self.entries]

    def fixture_set_up(self, owner: Owner, code_file: str, code_name: str) -> None:
        self.ran.scopes.add(owner)
        for frame in teardown_frames(owner, code_file, code_name):
            if self.frames.get(frame, owner) != owner:
                self.frames[frame] = None
            else:
                self.frames[frame] = owner
