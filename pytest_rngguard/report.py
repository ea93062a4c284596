"""Everything users read: leaks as warnings, failures, summary lines, JSON report and
GitHub annotations, the header, and the command that re-runs a deterministic test.

Each text is made here, by one function, whatever the channel that shows it; nothing here
decides what is a leak or when to tell it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .ledger import Putback
from .origins import Origin
from .snapshots import Change
from .sources import CHANGED, REPLACED, RESEEDED

if TYPE_CHECKING:
    import pytest

    from .baseline import Entry, Verdict
    from .reproducibility import RepeatOutcome
    from .session import Results
    from .settings import Settings

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
#: How a package's ``setup_module`` scope starts (``setup_module of package 'sklearn'``).
SETUP_MODULE = "setup_module"


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
    #: The wider scope whose code made the change, as the baseline names it
    #: (``baseline.Owner``): a fixture's or a package's; empty where the test or an import did.
    made_by: tuple[str, ...] = ()

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
            # An addition to SPEC's fields: whose change it is (a package's setup_module is
            # reported on the package's first test, which did not make it).
            "scope": self.scope,
            # Not in the JSON report; carried for xdist and text.
            "description": self.change.description,
            "calls": [c.to_json() for c in self.change.calls],
            "traced": self.change.traced,
            "settled": self.putback.done is not None,
            "why": self.putback.why,
            "made_by": list(self.made_by),
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
            tuple(data.get("made_by", ())),
        )

    def key(self) -> tuple[str, str, str | None, str, str, str]:
        """What tells a leak apart from the others of a run (for settling it later)."""
        change = self.change
        return (self.nodeid, self.phase, self.fixture, change.source, change.detail, change.kind)

    def report_json(self) -> dict[str, Any]:
        """Exactly the fields of a leak in the JSON report."""
        data = self.to_json()
        for field in ("description", "calls", "traced", "settled", "why", "made_by"):
            del data[field]
        return data


def where(leak: Leak) -> str:
    if leak.fixture:
        return f"{leak.phase} (fixture {leak.fixture!r})"
    if leak.scope.startswith(SETUP_MODULE):
        return f"{leak.phase} ({leak.scope})"
    return leak.phase


#: The page that says what to do about a leak, which every warning ends with.
WHAT_TO_DO_URL = (
    "https://pytest-rngguard.readthedocs.io/en/latest/reading-a-report.html#what-to-do-about-a-leak"
)
#: The most changes one warning shows; the JSON report has every one.
MAX_ENTRIES = 10
#: The most earlier calls, or values, one change lists.
MAX_LISTED = 5
#: A generator of one's own, for each source that has one.
LOCAL_GENERATORS = {
    "random": "random.Random(seed)",
    "numpy": "numpy.random.default_rng(seed)",
    "torch": "torch.Generator().manual_seed(seed)",
    "torch.cuda": 'torch.Generator("cuda").manual_seed(seed)',
    "tensorflow": "tf.random.Generator.from_seed(seed)",
    "cupy": "cupy.random.default_rng(seed)",
}


def entries(leaks: Sequence[Leak]) -> list[list[Leak]]:
    """One test's leaks, grouped into what reads as one change: the same change made again
    and again (a loop that seeds, each time put back past an ignored module's reseed), and
    the details of one source that one call changed (``torch.set_float32_matmul_precision``
    sets two ``fp32_precision`` settings).  In the order first found."""
    groups: dict[tuple[object, ...], list[Leak]] = {}
    for leak in leaks:
        change = leak.change
        key = (leak.phase, leak.fixture, leak.scope, change.source, change.kind, change.origin)
        groups.setdefault(key, []).append(leak)
    return list(groups.values())


def render_change(leak: Leak, *, stack: bool = True) -> list[str]:
    """The lines describing one leak, origin first, as ``path:line`` an editor can open."""
    return render_entry([leak], stack=stack)


def render_entry(group: Sequence[Leak], *, stack: bool = True) -> list[str]:
    """The lines describing leaks that read as one change (see :func:`entries`)."""
    change = group[0].change
    head, values = _head(group)
    origin = change.origin
    lines = [head]
    if values:
        lines.extend(_listed([f"{d}: {text}" if d else text for d, text in values], "    "))
    if origin is not None and stack and len(origin.stack) > 1:
        lines.extend(f"    {frame}" for frame in origin.stack)
    earlier = _earlier_calls(group) if len(group) > 1 or change.calls else None
    if earlier:
        lines.append("    earlier calls in the same phase:")
        lines.extend(_listed(earlier, "      "))
    if origin is None and change.kind in (RESEEDED, REPLACED, CHANGED):
        lines.append(f"    ({hint(change)})")
    return lines


def _head(group: Sequence[Leak]) -> tuple[str, list[tuple[str, str]]]:
    """An entry's first line, and the values it leaves to the lines below it."""
    first = group[0]
    if len(group) == 1:
        # The common entry (every draw a strict test reports is one): the same line as
        # below, without the grouping.
        change = first.change
        detail, text, origin = change.detail, change.description, change.origin
        head = f"{change.source}[{detail}]" if detail else change.source
        head = f"{head} {change.kind} during {where(first)}"
        if text:
            head = f"{head}: {text}"
        if origin is not None:
            head = f"{head} at {origin.location}"
        return head, []
    head = f"{_label(group)} {_times(group)} during {where(first)}"
    values = list(dict.fromkeys((leak.change.detail, leak.change.description) for leak in group))
    values = [(detail, text) for detail, text in values if text]
    if len({text for _, text in values}) == 1:
        head += f": {values[0][1]}"
        values = []
    origin = first.change.origin
    if origin is not None:
        head += f" at {origin.location}"
    return head, values


def _label(group: Sequence[Leak]) -> str:
    """The source, with the details the group changed (``torch.flags[a, b]``)."""
    details = [d for d in dict.fromkeys(leak.change.detail for leak in group) if d]
    source = group[0].change.source
    return f"{source}[{', '.join(details)}]" if details else source


def _times(group: Sequence[Leak]) -> str:
    """The kind of change, and how many times it was made where more than once."""
    kind = group[0].change.kind
    counts: dict[str, int] = {}
    for leak in group:
        counts[leak.change.detail] = counts.get(leak.change.detail, 0) + 1
    times = max(counts.values())
    return f"{kind} {times} times" if times > 1 else kind


def _listed(items: Sequence[str], indent: str) -> list[str]:
    shown = [f"{indent}{item}" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"{indent}... and {len(items) - MAX_LISTED} more")
    return shown


def _earlier_calls(group: Sequence[Leak]) -> list[str]:
    """The calls seen before the origin of each leak, one line each, a call made several
    times in a row counted once; a call at the origin's own line (one helper called from
    two places) is told apart by the first frame of its stack that differs."""
    runs: list[list[Any]] = []  # [line, how many times in a row]
    for leak in group:
        origin = leak.change.origin
        calls = list(leak.change.calls)
        if origin in calls:  # the last call equal to the origin is the origin itself
            del calls[len(calls) - 1 - calls[::-1].index(origin)]
        for call in calls:
            line = _call_line(call, origin)
            if runs and runs[-1][0] == line:
                runs[-1][1] += 1
            else:
                runs.append([line, 1])
    return [line if n == 1 else f"{line} ({n} times)" for line, n in runs]


def _call_line(call: Origin, origin: Origin | None) -> str:
    if origin is None or call.location != origin.location:
        return call.location
    for mine, theirs in zip(reversed(call.stack), reversed(origin.stack), strict=False):
        if mine != theirs:
            return f"{call.location}, from {mine}"
    return call.location


def render_test(nodeid: str, leaks: Sequence[Leak], *, report: str | None = None) -> str:
    """The text of one test's leaks (``guard()``'s error): each change, then what became of
    the states.  A test with more than ``MAX_ENTRIES`` changes shows the first ones and
    points at the JSON report (``report``: its path, where one is written)."""
    groups = entries(leaks)
    lines = [f"{culprits(nodeid, leaks)} changed global random state:"]
    for group in groups[:MAX_ENTRIES]:
        lines.extend(f"  {line}" for line in render_entry(group))
    hidden = groups[MAX_ENTRIES:]
    if hidden:
        count = sum(len(group) for group in hidden)
        where_all = f"in {report}" if report else "written by --rngguard-report=PATH"
        lines.append(
            f"  ... and {len(hidden)} more change{'s' if len(hidden) != 1 else ''} "
            f"({count} leak{'s' if count != 1 else ''}): every one is in the JSON report, "
            f"{where_all}"
        )
    lines.extend(f"  {line}" for line in render_putbacks(leaks))
    return "\n".join(lines)


def warning_text(nodeid: str, leaks: Sequence[Leak], settings: Settings) -> str:
    """The text of a test's (or an import's) ``RNGLeakWarning``, and of its failure in fail
    mode: its leaks, then what to do about them."""
    text = render_test(nodeid, leaks, report=settings.report)
    return "\n".join([text, *(f"  {line}" for line in what_to_do(nodeid, leaks))])


def what_to_do(nodeid: str, leaks: Sequence[Leak]) -> list[str]:
    """The ways out of these leaks, each spelled as the user would write it: three lines,
    since every leaking test's warning ends with them."""
    sources = list(dict.fromkeys(leak.change.source for leak in leaks))
    fixes = []
    local = [LOCAL_GENERATORS[name] for name in sources if name in LOCAL_GENERATORS]
    if local:
        fixes.append(f"draw from a generator of your own ({', '.join(local)})")
    if "env" in sources:
        fixes.append("set variables with monkeypatch.setenv")
    fixes.append("wrap the call in pytest_rngguard.isolated()")
    marker = f"pytest.mark.allow_rng_leak({', '.join(_quoted(name) for name in sources)})"
    if all(leak.phase == "collection" for leak in leaks):
        excuses = [f"pytestmark = {marker} in the module"]
    else:
        excuses = [f"@{marker} on the test"]
    patterns = [pattern for _, pattern in ignore_patterns(nodeid, leaks)]
    if len(patterns) == 1:
        excuses.append(f"rngguard_ignore = {patterns[0]} in the ini file")
    elif patterns:
        excuses.append(f"{' and '.join(patterns)} under rngguard_ignore, one a line")
    return [
        f"what to do: {_either(fixes)};",
        f"  or excuse it: {', or '.join(excuses)}",
        f"  see {WHAT_TO_DO_URL}",
    ]


def _either(ways: Sequence[str]) -> str:
    return ways[0] if len(ways) == 1 else f"{', '.join(ways[:-1])} or {ways[-1]}"


def _quoted(name: str) -> str:
    return f'"{name}"'  # source names have no quotes or backslashes


def ignore_patterns(nodeid: str, leaks: Sequence[Leak]) -> list[tuple[str, str]]:
    """The ``rngguard_ignore`` patterns that excuse the calls these leaks came from, each
    with the package or module it names: a package's modules (``transformers.*``, which
    ``transformers`` alone does not match), or one module where the package also holds the
    test (``tests.helpers``, not ``tests.*``, which would excuse the tests' own calls).  None
    for the test's own file or a conftest, nor for a call seen without its module (read
    back from JSON)."""
    own = nodeid.partition("::")[0]
    own_top = own.replace("\\", "/").split("/")[0].removesuffix(".py")
    patterns: list[tuple[str, str]] = []
    for leak in leaks:
        origin = leak.change.origin
        if origin is None or not origin.module or origin.file == own:
            continue
        module = origin.module
        if module == "conftest" or module.endswith(".conftest"):
            continue
        top, dot, _ = module.partition(".")
        patterns.append((top, f"{top}.*") if dot and top != own_top else (module, module))
    return list(dict.fromkeys(patterns))


def culprits(nodeid: str, leaks: Sequence[Leak]) -> str:
    """Who made the changes: the test, or a package's ``setup_module`` that pytest ran in
    the test's setup (the package's first test, which did nothing but come first)."""
    setups = sorted({leak.scope for leak in leaks if leak.scope.startswith(SETUP_MODULE)})
    if not setups:
        return nodeid
    named = " and ".join(setups)
    if all(leak.scope.startswith(SETUP_MODULE) for leak in leaks):
        return f"{named}, run before {nodeid},"
    return f"{nodeid} and {named} (run before it)"


def render_putbacks(leaks: Sequence[Leak]) -> list[str]:
    """What became of the leaked states: put back, kept for a wider scope, or not put back."""
    back: list[Change] = []
    later: list[Change] = []
    kept: dict[str, list[Change]] = {}
    failed: dict[str, str] = {}
    for leak in leaks:
        change, done = leak.change, leak.putback.done
        if done is False:
            failed.setdefault(change.label, leak.putback.why)
        elif leak.scope == COLLECTION or (done is None and leak.scope != TEST):
            kept.setdefault(_kept_while(leak.scope), []).append(change)
        elif done:
            back.append(change)
        elif leak.putback.held:
            later.append(change)  # told before the test is over (a failure in fail mode)
    lines = []
    if back:
        lines.append(f"put back after the test: {_labels(back)}")
    if later:
        lines.append(f"to be put back after the test: {_labels(later)}")
    for what, changes in kept.items():
        lines.append(f"{what}: {_labels(changes)}")
    for label, why in sorted(failed.items()):
        lines.append(f"not put back: {label} ({why})" if why else f"not put back: {label}")
    return lines


def _labels(changes: Iterable[Change]) -> str:
    """The sources changed, in order, each with its details (``torch.flags[a, b]``)."""
    details: dict[str, set[str]] = {}
    for change in changes:
        details.setdefault(change.source, set()).add(change.detail)
    labels = []
    for source in sorted(details):
        named = sorted(d for d in details[source] if d)
        if "" in details[source] or not named:
            labels.append(source)
        if named:
            labels.append(f"{source}[{', '.join(named)}]")
    return ", ".join(labels)


def _kept_while(scope: str) -> str:
    if scope == COLLECTION:
        return "put back after the import, set again for this module's tests"
    return f"kept while {scope} is in use, put back after it"


def _summary_key(group: Sequence[Leak]) -> tuple[str, str, str, str]:
    """What tells a summary line from another: the change, whoever's test it was."""
    change = group[0].change
    location = change.origin.location if change.origin is not None else ""
    return (_label(group), change.kind, location, group[0].phase)


def render_summary(leaks: Sequence[Leak], verbose: bool, *, advice: bool = True) -> list[str]:
    """Terminal summary lines: one per change of each test with -v (see :func:`entries`),
    else one per change, its tests listed when several share its origin; then (``advice``)
    where to read what to do about them."""
    by_test: dict[str, list[Leak]] = {}
    for leak in leaks:
        by_test.setdefault(leak.nodeid, []).append(leak)
    rows = [(nodeid, group) for nodeid, found in by_test.items() for group in entries(found)]
    lines = []
    if verbose:
        for nodeid, group in rows:
            for i, line in enumerate(render_entry(group, stack=False)):
                lines.append(f"{nodeid}: {line}" if i == 0 else f"  {line}")
    else:
        lines = _shared_lines(rows)
    if lines and advice:
        lines.append(f"what to do about a leak: {WHAT_TO_DO_URL}")
    return lines


def _shared_lines(rows: Sequence[tuple[str, list[Leak]]]) -> list[str]:
    """One line per change, its tests listed when several share its origin."""
    lines = []
    shared: dict[tuple[str, str, str, str], list[tuple[str, list[Leak]]]] = {}
    for nodeid, group in rows:
        shared.setdefault(_summary_key(group), []).append((nodeid, group))
    for (label, kind, location, phase), members in shared.items():
        tests = sorted({nodeid for nodeid, _ in members})
        if location:
            by = f" by {location}"
        else:  # a draw has no seeding call to find: hint only where there is one
            first = members[0][1][0].change
            by = f" ({hint(first)})" if first.kind in (RESEEDED, REPLACED, CHANGED) else ""
        if len(tests) == 1:
            group = members[0][1]
            lines.append(f"{tests[0]}: {label} {_times(group)} during {where(group[0])}{by}")
        else:
            lines.append(f"{len(tests)} tests: {label} {kind} during {phase}{by}")
            shown = tests[:3]
            more = f" and {len(tests) - len(shown)} more (-v lists all)" if len(tests) > 3 else ""
            lines.append(f"  {', '.join(shown)}{more}")
    return lines


def github_annotations(
    leaks: Iterable[Leak],
    mode: str,
    not_reproducible: Iterable[RepeatOutcome] = (),
    *,
    rootdir: str = "",
    workspace: str | None = None,
) -> list[str]:
    """GitHub Actions workflow commands pointing at each leak's origin and at each
    non-reproducible test's file, with paths relative to the repository (``workspace``,
    GitHub's ``GITHUB_WORKSPACE``) rather than to pytest's rootdir."""
    level = "error" if mode == "fail" else "warning"
    lines = []
    for leak in leaks:
        text = one_line(leak, phase=False)
        origin = leak.change.origin
        where_ = " "
        if origin is not None:
            path = repository_path(origin.file, rootdir, workspace)
            where_ = f" file={_escape_property(path)},line={origin.line},"
        title = _escape_property(f"rngguard: {leak.change.label} {leak.change.kind}")
        lines.append(f"::{level}{where_}title={title}::{_escape_data(f'{leak.nodeid}: {text}')}")
    for problem in not_reproducible:
        path = repository_path(problem.nodeid.partition("::")[0], rootdir, workspace)
        text = not_reproducible_text(problem)
        lines.append(
            f"::error file={_escape_property(path)},title=rngguard%3A not reproducible"
            f"::{_escape_data(text)}"
        )
    return lines


def repository_path(path: str, rootdir: str, workspace: str | None) -> str:
    """A path as the report shows it (relative to the rootdir where inside it), relative to
    ``workspace`` instead, with forward slashes.  A path that is no file under the rootdir
    (an installed library's, shown from its package) or lies outside the workspace is left
    as shown: GitHub puts its annotation in the run's summary."""
    if not workspace or not rootdir:
        return path
    full = os.path.realpath(os.path.join(rootdir, path))
    if not os.path.isfile(full):
        return path
    relative = os.path.relpath(full, os.path.realpath(workspace))
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return path
    return relative.replace(os.sep, "/")


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def one_line(leak: Leak, *, phase: bool = True) -> str:
    """A leak in one line, its runs of white space as one space (a JUnit XML property's
    value; without the phase, a GitHub annotation's)."""
    text = " ".join(_head([leak])[0].split())  # render_change's first line alone
    return f"{leak.phase}: {text}" if phase else text


def not_reproducible_text(outcome: RepeatOutcome) -> str:
    """Why a test is not reproducible (its failure, its annotation)."""
    return f"{outcome.nodeid} is not reproducible: {outcome.detail}"


def trace_off_text(refused: str) -> str:
    """The warning of a session whose ``--rngguard-trace`` cannot run, or not all of it:
    ``refused`` is the tracer's sentence saying which part is off, why and what is lost
    (``Monitor.start``; the tracer words it, as only it knows which part gave way)."""
    return f"rngguard: {refused}"


def write_error_text(what: str, why: str) -> str:
    """The terminal's line about a file the session could not write."""
    return f"rngguard: error: {what} {why}"


def fail_report(report: pytest.TestReport, text: str, title: str) -> None:
    """Fail a passed report with ``text``; a failed or skipped one keeps its own outcome and
    shows ``text`` in a section of its own."""
    if report.passed:
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append((title, text))


def header(settings: Settings, watched: Sequence[str], later: Sequence[str] = ()) -> str:
    """The settings line: the mode, strictness, base seed and what is checked, the sources
    of libraries not imported yet named as checked from their import."""
    line = (
        f"rngguard: mode={settings.mode} strict={'yes' if settings.strict else 'no'} "
        f"seed={settings.seed} sources={','.join(watched) or 'none'}"
    )
    if later:
        line += f" (and {','.join(later)} once imported)"
    return line


def rerun_text(
    nodeid: str,
    seed: int,
    *,
    base_seed: int,
    runs: int,
    fingerprints: str | None,
    load_explicitly: bool,
    rootdir: str,
) -> str:
    """A failing deterministic test's seed, and the command that re-runs it with it."""
    args = [sys.executable, "-m", "pytest", nodeid, f"--rngguard-seed={base_seed}"]
    if runs > 1:  # a repeat-gate failure shows up again only when repeated
        args.append(f"--rngguard-repeat={runs}")
    if fingerprints:
        args.append(f"--rngguard-fingerprints={fingerprints}")
    if load_explicitly:
        args[3:3] = ["-p", "rngguard"]
    return (
        f"deterministic seed: {seed}\n"
        f"re-run just this test with it (from {rootdir}):\n"
        f"  {shlex.join(args)}"
    )


def summary_lines(
    results: Results,
    settings: Settings,
    stored: dict[str, Any] | None,
    *,
    verbose: bool,
) -> list[str]:
    """The lines of the terminal summary's rngguard section (none: no section)."""
    lines = []
    verdict = results.baseline
    leaks = results.all_leaks if verdict is None else verdict.new
    if leaks:
        tests = len({leak.nodeid for leak in leaks})
        lines.append(
            f"{len(leaks)} leak{'s' if len(leaks) != 1 else ''} of global random state in "
            f"{tests} test{'s' if tests != 1 else ''} or module{'s' if tests != 1 else ''}:"
        )
        lines.extend(render_summary(leaks, verbose))
    if verdict is not None:
        lines.extend(baseline_lines(verdict, settings, results.write_errors, verbose=verbose))
    for problem in results.not_reproducible:
        lines.append(f"not reproducible: {problem.nodeid}: {problem.detail}")
    failing = failing_collection_leaks(results)
    if settings.mode == "fail" and failing:
        # No test failed for them: say why the run fails under its green count.
        modules = sorted({leak.nodeid for leak in failing})
        lines.append(
            f"error: --rngguard=fail: the import of {', '.join(modules)} changed global "
            f"random state, so the session fails"
        )
    lines.extend(_fingerprint_lines(results, settings, stored))
    if results.compared and hash_randomised():
        lines.append(
            "note: this interpreter's str hashes are randomised, which deterministic tests "
            "cannot change at run time: set and dict-of-str iteration order can differ "
            "between runs. Run pytest with PYTHONHASHSEED=0 in the environment to fix it."
        )
    return lines


# -- the baseline (``--rngguard-baseline``) ---------------------------------------------------

#: How many entries that no longer happen the summary lists without -v.
STALE_SHOWN = 10


def failing_collection_leaks(results: Results) -> list[Leak]:
    """The leaks of imports that fail the session in fail mode: with a baseline, the new
    ones (none in a run that updates it, which accepts every leak)."""
    verdict = results.baseline
    if verdict is None:
        return results.collection_leaks
    if verdict.written is not None:
        return []
    return [leak for leak in verdict.new if leak.phase == "collection"]


def baseline_lines(
    verdict: Verdict, settings: Settings, write_errors: dict[str, str], *, verbose: bool
) -> list[str]:
    """The summary's lines about the baseline: the known leaks grouped by origin, the
    entries that no longer happen, and what an update wrote."""
    lines = []
    known = verdict.known
    if known:
        tests = len({leak.nodeid for leak in known})
        lines.append(
            f"baseline: {_count(len(known), 'known leak')} in "
            f"{_count(tests, 'test or module', 'tests or modules')}, not warned about or failed:"
        )
        # Accepted, as their warnings were: no advice under them.
        lines.extend(f"  {line}" for line in render_summary(known, verbose, advice=False))
    stale = verdict.stale
    updating = verdict.written is not None
    if stale:
        if updating:
            lines.append(
                f"baseline: {_count(len(stale), 'entry', 'entries')} no longer "
                f"{'happens' if len(stale) == 1 else 'happen'}, removed:"
            )
        else:
            lines.append(
                f"baseline: {_count(len(stale), 'entry', 'entries')} no longer "
                f"{'happens' if len(stale) == 1 else 'happen'}; shrink {settings.baseline} "
                f"with --rngguard-baseline-update:"
            )
        shown = stale if verbose else stale[:STALE_SHOWN]
        lines.extend(f"  {baseline_entry_text(entry)}" for entry in shown)
        if len(shown) < len(stale):
            lines.append(f"  and {len(stale) - len(shown)} more (-v lists all)")
    if updating and "the baseline" not in write_errors:
        written = verdict.written or []
        lines.append(
            f"baseline: wrote {_count(len(written), 'entry', 'entries')} to "
            f"{settings.baseline} ({len(written) - verdict.entries + len(stale)} added, "
            f"{len(stale)} removed)"
        )
    return lines


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else (many or one + 's')}"


def baseline_entry_text(entry: Entry) -> str:
    """A baseline entry in one line: ``test_a.py::test_x: numpy reseeded by helpers.py in
    set_seed`` (no line: an entry has none)."""
    label = f"{entry.source}[{entry.detail}]" if entry.detail else entry.source
    by = f" by {entry.origin[0]} in {entry.origin[1]}" if entry.origin else ""
    return f"{baseline_owner_text(entry.owner)}: {label} {entry.kind}{by}"


def baseline_owner_text(owner: tuple[str, ...]) -> str:
    what, name = owner[0], owner[1]
    if what == "test":
        return name
    if what == "import":
        return f"the import of {name}"
    if what == "package":
        return f"setup_module of package {name}"
    where = f" of {owner[3]}" if owner[3] else ""
    return f"fixture {name!r} ({owner[2]}){where}"


def with_baseline(
    data: dict[str, Any], leaks: Sequence[Leak], verdict: Verdict | None, given: str | None
) -> dict[str, Any]:
    """The JSON report with the baseline's fields (additions to version 1): ``known`` on
    each leak (in the same order as ``leaks``) and ``baseline``, null without one."""
    known = {id(leak) for leak in verdict.known} if verdict is not None else set()
    rows = [
        {**row, "known": id(leak) in known} for leak, row in zip(leaks, data["leaks"], strict=True)
    ]
    summary = None
    if verdict is not None:
        summary = {
            "file": given,
            "entries": verdict.entries,
            "known": len(verdict.known),
            "new": len(verdict.new),
            "stale": [entry.to_json() for entry in verdict.stale],
            "updated": verdict.written is not None,
        }
    return {**data, "leaks": rows, "baseline": summary}


def _fingerprint_lines(
    results: Results, settings: Settings, stored: dict[str, Any] | None
) -> list[str]:
    lines = []
    if stored is not None:
        from .reproducibility import version_note

        note = version_note(stored)
        if note:
            lines.append(f"fingerprints: {note}")
        missing = sorted(set(results.fingerprints) - set(stored["tests"]))
        if missing:
            lines.append(
                f"fingerprints: {len(missing)} deterministic test(s) are not in "
                f"{settings.fingerprints}; add them with --rngguard-fingerprints-update"
            )
    elif (
        settings.fingerprints
        and results.fingerprints
        and "the fingerprints" not in results.write_errors
    ):
        lines.append(f"fingerprints: wrote {len(results.fingerprints)} to {settings.fingerprints}")
    return lines


def hash_randomised() -> bool:
    """Whether this interpreter's str hashes differ from run to run.  ``sys.flags`` says 1
    for any PYTHONHASHSEED other than 0, a fixed seed included: the variable tells."""
    if not sys.flags.hash_randomization:
        return False
    value = os.environ.get("PYTHONHASHSEED", "random")
    return value == "random" or not value.isdigit()


def json_report(results: Results, settings: Settings, sources: Sequence[str]) -> dict[str, Any]:
    """The JSON report (``--rngguard-report``), version ``REPORT_VERSION``."""
    return {
        "version": REPORT_VERSION,
        "plugin_version": __version__,
        "mode": settings.mode,
        "strict": settings.strict,
        "seed": settings.seed,
        "sources": list(sources),
        "tests": results.tests,
        "leaks": [leak.report_json() for leak in results.all_leaks],
        "not_reproducible": [outcome.to_json() for outcome in results.not_reproducible],
    }
