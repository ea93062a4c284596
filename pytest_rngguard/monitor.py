"""The monitor: watches every source across consecutive stretches of a run.

A run (a test's setup, one fixture, the test body, ...) is cut into stretches by
:meth:`Monitor.checkpoint`; each checkpoint compares the sources with the state at the
previous one, classifies what changed, attaches the seeding calls seen meanwhile, and makes
the current state the new baseline.  Calls from ignored modules (pytest-randomly,
Hypothesis, ``rngguard_ignore``) move the baseline instead of counting as changes, and what
such a module puts back (Hypothesis restores each example's state) never escaped.

The monitor knows no library: what is particular to one lives in its source.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, NamedTuple

from .origins import (
    ImportWatcher,
    Interceptor,
    Origin,
    Tracer,
    UserCode,
    build_origin,
    caller_frame,
    origin_from_traceback,
)
from .snapshots import Change
from .sources import ADVANCED, CHANGED, REPLACED, RESEEDED, Difference, Seeder, Source
from .sources.base import Detail, import_module_of, library_of
from .sourceset import Restored, SourceSet

#: Reseeders whose calls a ``deterministic`` test undoes, so its own seeds win.
HOLD_AGAINST = ("pytest_randomly", "pytest_randomly.*")


class Event(NamedTuple):
    """A seeding call seen while the monitor was active; or, with ``--rngguard-trace``, a
    line of user code after which a source had changed."""

    source: str
    kind: str
    detail: Detail  # None: every detail of the source
    origin: Origin | None
    after: Any  # the source's state right after the call; None if unknown
    before: Any = None  # and right before it


#: The differences of a ``whole_state`` source whose states differ (the kind aside).
_WHOLE = (Difference(CHANGED),)


def _importing(source: Source) -> bool:
    """Whether the library of ``source`` is still being imported."""
    for name in (library_of(source.module), source.module, import_module_of(source)):
        spec = getattr(sys.modules.get(name), "__spec__", None)
        if getattr(spec, "_initializing", False):
            return True
    return False


def _details(detail: Detail) -> tuple[str, ...]:
    if detail is None:
        return ("",)
    return (detail,) if isinstance(detail, str) else detail


class Monitor:
    def __init__(
        self,
        sources: SourceSet,
        *,
        ignore: Callable[[str], bool],
        shorten: Callable[[str], str],
        trace: bool = False,
        keep_advanced: bool = True,
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self.sources = sources
        #: Messages about sources that misbehaved and were disabled, not yet shown.
        self.errors = sources.errors
        #: Whether checkpoints return changes that drawing numbers explains (strict mode,
        #: ``--rngguard-restore=all``); without it they are dropped before a ``Change`` is
        #: built for them.
        self.keep_advanced = keep_advanced
        self._ignore = ignore
        self._shorten = shorten
        #: Files whose frames are never skipped when looking for a caller (test modules).
        self._keep = keep
        self.baseline: dict[str, Any] = {}
        #: For each source changed since the last checkpoint, its state before the first
        #: change (what undoing the stretch's changes puts back)...
        self.changed_from: dict[str, Any] = {}
        #: ... and the same for the changes the last checkpoint returned.
        self.last_from: dict[str, Any] = {}
        #: For each source an ignored module changed since the last checkpoint, its state
        #: before: nobody's leak, but still undone with the scope it happened in (what a
        #: test's end puts back is its start, whoever moved the state in between).
        self.ignored_from: dict[str, Any] = {}
        self.last_ignored: dict[str, Any] = {}
        self._events: list[Event] = []
        self._pending: list[Change] = []
        #: Per source, the states ignored modules' calls started from, with how many changes
        #: were pending then: a later call of theirs that puts one of these states back
        #: undoes whatever came after it (Hypothesis around each example).
        self._marks: dict[str, list[tuple[Any, int]]] = {}
        #: Events are recorded only while active (inside a watched stretch).
        self.active = False
        #: Sources a ``deterministic`` test holds against pytest-randomly's reseeds.
        self.held: frozenset[str] = frozenset()
        #: Told the name of each watched module whose import has just finished.
        self.import_listeners: list[Callable[[str], None]] = []
        self.interceptor = Interceptor(self._intercepted)
        # Few attributes: past 30, CPython stops sharing the keys of an instance's dict,
        # and every ``self.x`` on the hot path gets slower.  The line tracer's are its own.
        self._trace_asked = trace
        self._tracer: Tracer | None = None
        #: With the line tracer: what lines did since the last checkpoint.
        self._lines: LineChanges | None = None
        if trace:
            from .linetrace import LineTracer

            self._lines = LineChanges(self)
            # The sources' own code too: a third-party source's capture is called from the
            # plugin's checks, and never names an origin.
            skipped = {library_of(s.module) for s in sources.sources}
            skipped.update(type(s).__module__ for s in sources.sources)
            tracer = LineTracer(UserCode(skipped, ignore, keep), self._lines.check)
            self._tracer = Tracer(
                lambda: tuple(self.sources.sources), self.interceptor, self._traced, tracer
            )
        self._modules_seen = -1
        #: (name, capture) of the sources available at the last refresh: the hot path.
        self._live: list[tuple[str, Callable[[], Any]]] = []
        self._live_of: tuple[Source, ...] = ()
        watched = set()
        for source in sources.sources:
            watched.add(source.module)
            watched.add(import_module_of(source))
            watched.update(seeder.module for seeder in source.seeders())
        self._watcher = ImportWatcher(watched, self._module_imported)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str | None:
        """Start watching; with tracing asked for but not all possible here, a sentence
        saying what is off and why."""
        self.refresh()
        self._watcher.install()
        if self._tracer is None:
            return None
        refused = self._tracer.start()
        if not self._tracer.running:
            self._tracer = None
        return refused

    def resume_tracing(self) -> str | None:
        """After a test: what happened to the tracer in it, if anything (see Tracer.resume)."""
        return self._tracer.resume() if self._tracer is not None else None

    def stop(self) -> None:
        self.active = False
        self._watcher.uninstall()
        if self._tracer is not None:
            self._tracer.stop()
        self.interceptor.uninstall()

    def watch(self, modules: set[str]) -> None:
        """Also tell the import listeners when these modules have been imported."""
        self._watcher.names.update(modules)

    @property
    def watching_imports(self) -> bool:
        return self._watcher in sys.meta_path

    def _module_imported(self, name: str) -> None:
        self._modules_seen = -1
        self.refresh()
        for source_name in self.sources.imported(name):
            # Became available with this import: what it started from is its import state,
            # not "unknown" (a test that imports torch and seeds it leaked a reseed).
            if self.baseline.get(source_name) is None:
                self.baseline[source_name] = self.sources.import_states[source_name]
        # The module that just ran is still marked as initialising: look again next time.
        self._modules_seen = -1
        with self.paused():  # the listeners are the plugin's own (a recipe seeding it)
            for listener in list(self.import_listeners):
                listener(name)

    def refresh(self) -> None:
        """Wrap the seeders of libraries loaded since the last look (cheap when none were)."""
        if len(sys.modules) == self._modules_seen and self._live_of is self.sources.sources:
            return
        self._modules_seen = len(sys.modules)
        available = self.sources.available()
        self._live = [(s.name, s.capture) for s in available]
        self._live_of = self.sources.sources
        self.interceptor.install(available)
        if self._tracer is not None:
            self._tracer.refresh()

    def available(self) -> list[Source]:
        return self.sources.available()

    def source(self, name: str) -> Source | None:
        return self.sources.get(name)

    # -- capturing -------------------------------------------------------------------------

    def capture(self, sources: list[Source] | None = None) -> dict[str, Any]:
        if sources is None:
            if self._live_of is self.sources.sources:
                try:
                    return {name: capture() for name, capture in self._live}
                except Exception:
                    pass  # the careful capture below finds and disables the source that raised
            states = self.sources.capture()
            self._modules_seen = -1  # rebuild the hot path without it
            return states
        return self.sources.capture(sources)

    def restore(self, states: dict[str, Any], names: list[str] | None = None) -> Restored:
        """Put the named sources (all in ``states`` by default) back, confirming each; the
        baseline becomes what they read back as."""
        if self._lines is not None:
            self._lines.ref = None
        restored = self.sources.restore(states, names)
        for name, state in restored.states.items():
            if name in self.baseline or state is not None:
                self.baseline[name] = state
        return restored

    def disable(self, source: Source, doing: str, exc: BaseException) -> None:
        self.sources.disable(source, doing, exc)
        self.baseline.pop(source.name, None)

    # -- stretches -------------------------------------------------------------------------

    def _forget(self) -> None:
        self._events.clear()
        self._pending = []
        if self._marks:
            self._marks.clear()
        self.changed_from = {}
        self.ignored_from = {}
        if self._lines is not None:
            self._forget_lines()

    def _forget_lines(self) -> None:
        """The plugin has checked or set the sources: the next line checked starts afresh."""
        self._lines.forget()  # type: ignore[union-attr]
        self._tracer.forget()  # type: ignore[union-attr]

    def reset(self) -> dict[str, Any]:
        """Start a new stretch from the current state, forgetting anything unattributed."""
        self.refresh()
        self.baseline = self.capture()
        self._forget()
        return dict(self.baseline)

    #: Forget the calls seen so far; the baseline, already current, stays.
    settle = _forget

    def idle(self) -> bool:
        """Whether the monitor has seen nothing since the last checkpoint: no seeding call, no
        change set aside, no module imported.  Where only code known to leave the sources
        alone ran since, a checkpoint would then find nothing, and can be skipped."""
        return not self._events and not self._pending and len(sys.modules) == self._modules_seen

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Let seeding calls through unseen: the only way this monitor's own seeding and
        restoring is told apart.  Another monitor's (an inner pytest session's, ``guard()``,
        ``isolated()``) are calls like any other, made by the code that ran it."""
        active, self.active = self.active, False
        try:
            yield
        finally:
            self.active = active
            if self._lines is not None:
                self._lines.ref = None  # what it seeded is no line's doing

    def checkpoint(self) -> list[Change]:  # noqa: C901 - the hot path, inlined on purpose
        """Everything that changed since the last checkpoint; the current state becomes the
        new baseline.  ``last_from`` then holds each changed source's earlier state."""
        self.refresh()
        current = self.capture()
        baseline = self.baseline
        self.last_ignored, self.ignored_from = self.ignored_from, {}
        try:
            unchanged = not self._pending and bool(current == baseline)
        except Exception:
            unchanged = False  # a state whose comparison raises: the careful loop tells
        if unchanged:
            self._events.clear()
            if self._marks:
                self._marks.clear()
            self.last_from = {}
            if self._lines is not None:
                self._forget_lines()
            return []
        if self._marks:
            self._drop_undone(current)
        changes = self._pending
        changed_from = self.last_from = self.changed_from
        self.changed_from = {}
        sources = self.sources
        live = sources.sources
        by_name = sources.by_name
        for name, after in current.items():
            # Subscripts, not ``get``: this loop runs for every source at every check.
            before = baseline[name] if name in baseline else None  # noqa: SIM401
            if name not in by_name:
                continue
            source = by_name[name]
            if before is not None:
                # ``SourceSet.equal`` inlined for the common case; a comparison that raises
                # or is not a plain bool goes through it (and its error policy).
                try:
                    same = before is after or before == after
                except Exception:
                    same = sources.equal(source, before, after)
                if same is not True and same is not False:
                    same = sources.equal(source, before, after)
                if same:
                    continue
            found = self._classify(source, before, after)
            if found:
                changed_from.setdefault(name, before)
                changes.extend(found)
        if sources.sources is not live:  # one was disabled meanwhile: not in the baseline
            current = {n: s for n, s in current.items() if sources.get(n) is not None}
        self.baseline = current
        self._pending = []
        self._events.clear()
        if self._marks:
            self._marks.clear()
        if self._lines is not None:
            self._forget_lines()
        return changes

    def _drop_undone(self, current: dict[str, Any]) -> None:
        """Forget what was undone since the last look (see :meth:`_undone`)."""
        for name in list(self._marks):
            now, last = current.get(name), self.baseline.get(name)
            source = self.sources.by_name.get(name)
            if now is None or last is None or source is None:
                continue
            if not self.sources.equal(source, last, now):  # something happened since
                self._undone(source, now)

    def _undone(self, source: Source, now: Any) -> bool:
        """Whether ``now`` is a state an ignored module's call started from, set again by
        whoever, unseen (an inner pytest session's guard, putting back its test's start past
        pytest-randomly's reseeds): that call and whatever came after it never escaped, and
        are forgotten.  A seeding call seen since explains the state itself."""
        name = source.name
        marks = self._marks.get(name)
        if not marks or any(e.source == name and e.kind == RESEEDED for e in self._events):
            return False
        for index, (state, pending) in enumerate(marks):
            if self.sources.equal(source, state, now):
                self._undo_pending(name, pending)
                del marks[index:]
                self._events = [e for e in self._events if e.source != name]
                self.baseline[name] = now
                return True
        return False

    def _classify(self, source: Source, before: Any, after: Any) -> list[Change]:
        name = source.name
        events = [e for e in self._events if e.source == name] if self._events else []
        reseed, differences = self._differences(source, events, before, after)
        if before is None and not differences and events:
            # Loaded during the stretch, without its import state seen, and set by a call we
            # saw: its state alone cannot tell (a seed followed by draws), the call can.
            last = events[-1]
            if last.kind != CHANGED:
                differences = [Difference(last.kind, _details(last.detail)[0])]
        changes = []
        lines = self._lines
        traced = self._traced_status() if self._trace_asked else ""
        for difference in differences:
            calls = (
                [e for e in events if e.detail is None or difference.detail in _details(e.detail)]
                if events
                else events
            )
            kind, origin, explained = difference.kind, None, False
            if calls:
                kind, origin, explained = self._by_calls(
                    source, calls, (before, after), kind, traced, reseed
                )
            if kind == ADVANCED and not self.keep_advanced:
                continue
            if origin is None and not calls:
                origin = self._hinted_origin(source)
            if lines is not None and not explained and (origin is None or calls):
                # No seen call explains it: the line after which it changed does.
                kind, origin = lines.naming(source, kind, difference.detail, after, origin)
            change = Change(
                name,
                kind,
                difference.detail,
                difference.description,
                origin,
                tuple(e.origin for e in calls if e.origin is not None),
            )
            changes.append(change.traced_as(traced) if traced else change)
        return changes

    def _differences(
        self, source: Source, events: list[Event], before: Any, after: Any
    ) -> tuple[Event | None, Sequence[Difference]]:
        """How ``after`` differs from ``before``, and the reseed that explains it where that
        is known without classifying them (see ``_reseed_explains``)."""
        if events and self._reseed_explains(source, events[-1], before, after):
            # What ``classify`` would say, but for the kind, which is the call's.
            return events[-1], _WHOLE
        try:  # ``SourceSet.classify`` inlined; it is the error policy when this raises
            return None, source.classify(before, after)
        except Exception:
            return None, self.sources.classify(source, before, after)

    def _reseed_explains(self, source: Source, last: Event, before: Any, after: Any) -> bool:
        """Whether the stretch's last seeding call is what ``_explaining`` picks, a reseed
        that explains ``after``, for a source whose states differ in one way only
        (``whole_state``): the change is then that reseed whatever ``before`` was, and
        classifying ``before`` against ``after`` (a search through thousands of twists when
        a test seeds and then draws) cannot change it."""
        return (
            last.kind == RESEEDED
            and last.detail is None
            and last.after is not None
            and before is not None
            and after is not None
            and getattr(source, "whole_state", False) is True
            and not self.sources.equal(source, last.after, before)
            and self._explains(source, last, after)
        )

    def _by_calls(
        self,
        source: Source,
        calls: list[Event],
        states: tuple[Any, Any],
        kind: str,
        traced: str,
        reseed: Event | None = None,
    ) -> tuple[str, Origin | None, bool]:
        """The kind and origin the seen ``calls`` give a change between ``states`` (before,
        after), and whether they explain it (``traced``: what ``--rngguard-trace`` watches);
        ``reseed``: the call that explains it, where already known (``_reseed_explains``)."""
        explaining = reseed if reseed is not None else self._explaining(source, calls, *states)
        if explaining is None:
            return kind, calls[-1].origin, False
        # A call only the call tracer saw has no states to tell whether it explains the end:
        # where lines are traced, they tell (and the kind is the states', as for a call
        # nobody saw), else it is the best there is.
        explained = explaining.after is not None or traced != "lines"
        if explained and explaining.kind != CHANGED:
            kind = explaining.kind
        return kind, explaining.origin, explained

    def _traced_status(self) -> str:
        """What ``--rngguard-trace`` watches now (see ``Change.traced``)."""
        if self._tracer is None:
            return "none"
        return "lines" if self._tracer.tracing_lines else "calls"

    def _explaining(
        self, source: Source, calls: list[Event], before: Any, after: Any
    ) -> Event | None:
        """The call that explains the final state ``after``: the last one, unless it only put
        back a state the stretch had earlier (``torch.random.fork_rng``'s exit,
        ``isolated()``, a saved state set again), in which case whatever made that state
        explains it.  A seeding call explains its state itself, also where an earlier one
        made the same (vLLM's worker seeds twice with one seed).  None when that is the
        state the stretch started from, or no call explains ``after``."""
        equal = self.sources.equal
        index = len(calls) - 1
        while index >= 0:
            call = calls[index]
            if call.after is None:
                return call  # seen by the tracer only: the best there is
            if before is not None and equal(source, call.after, before):
                return None
            if call.kind == RESEEDED:
                return call if self._explains(source, call, after) else None
            for earlier in range(index):
                other = calls[earlier]
                if other.after is not None and equal(source, other.after, call.after):
                    return other if self._explains(source, other, after) else None
                if other.before is not None and equal(source, other.before, call.after):
                    break  # the state from just before that call: what came before explains
            else:
                return call if self._explains(source, call, after) else None
            index = earlier - 1
        return None

    def _explains(self, source: Source, event: Event, after: Any) -> bool:
        """Whether the state right after ``event`` leads to ``after`` by draws alone.  A
        seeding call followed by more draws than can be followed forward still explains it:
        nothing else was seen setting the state."""
        if self.sources.equal(source, event.after, after):
            return True
        kinds = {d.kind for d in self.sources.classify(source, event.after, after)}
        return kinds <= {ADVANCED} or (event.kind in (RESEEDED, REPLACED) and kinds == {REPLACED})

    def _hinted_origin(self, source: Source) -> Origin | None:
        """The origin a source's library remembers for its last change, where it keeps one."""
        hint = getattr(source, "origin_hint", None)
        if hint is None:
            return None
        try:
            lines = hint()
        except Exception:
            return None
        return origin_from_traceback(lines, self._shorten) if lines else None

    # -- seeing calls ----------------------------------------------------------------------

    def _intercepted(
        self,
        original: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        source: Source,
        seeder: Seeder,
        detail: Detail,
    ) -> Any:
        if not self.active:
            return original(*args, **kwargs)
        frame = sys._getframe(2)  # the wrapper's caller
        caller = caller_frame(frame, library_of(source.module), self._keep)
        module = str(caller.f_globals.get("__name__", "")) if caller is not None else ""
        if caller is not None and self._ignore(module):
            return self._ignored_call(original, args, kwargs, source, seeder, module)
        start = self.sources.capture_one(source)
        result = original(*args, **kwargs)
        self._events.append(
            Event(
                source.name,
                seeder.kind,
                detail,
                build_origin(caller, self._shorten) if caller is not None else None,
                self.sources.capture_one(source),
                start,
            )
        )
        return result

    def _traced(self, source: Source, kind: str, frame: Any) -> None:
        if not self.active:
            return
        caller = caller_frame(frame, library_of(source.module), self._keep)
        if caller is None or self._ignore(str(caller.f_globals.get("__name__", ""))):
            return
        origin = build_origin(caller, self._shorten)
        tracer = self._tracer
        if tracer is None or not tracer.tracing_lines:
            self._events.append(Event(source.name, kind, None, origin, None))
            return
        # Seen before it runs: its state after is the one the next line checked finds.
        before = self.sources.capture_one(source)
        self._events.append(Event(source.name, kind, None, origin, None, before))
        self._lines.awaiting = True  # type: ignore[union-attr]

    def _ignored_call(
        self,
        original: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        source: Source,
        seeder: Seeder,
        module: str,
    ) -> Any:
        """Settle what the stretch did to this source so far, let the call happen, and make
        its result the new baseline: an ignored module's change is nobody's leak.  A call
        that puts back the state one of its earlier calls started from (Hypothesis, after
        an example) also undoes what happened in between: that never escaped."""
        name = source.name
        sources = self.sources
        start = sources.capture_one(source)
        if name in self.baseline and start is not None:
            before = self.baseline[name]
            self.ignored_from.setdefault(name, self.changed_from.get(name, before))
            if before is None or not sources.equal(source, start, before):
                found = [] if self._undone(source, start) else self._classify(source, before, start)
                if found:
                    self.changed_from.setdefault(name, before)
                    self._pending.extend(found)
        if self._events:
            self._events = [e for e in self._events if e.source != name]
        if self._lines is not None:
            self._lines.ignored(name)
        hold = name in self.held and any(
            module == p or (p.endswith(".*") and module.startswith(p[:-1])) for p in HOLD_AGAINST
        )
        result = original(*args, **kwargs)
        if hold and start is not None:
            with self.paused():
                sources.restore({name: start})
        now = sources.capture_one(source)
        marks = self._marks.setdefault(name, [])
        for index, (state, pending) in enumerate(marks if seeder.kind == REPLACED else ()):
            if now is not None and sources.equal(source, state, now):
                self._undo_pending(name, pending)
                del marks[index:]
                break
        else:
            marks.append((start, len(self._pending)))
        if now is not None:
            self.baseline[name] = now
        return result

    def _undo_pending(self, name: str, keep: int) -> None:
        """Drop the changes of ``name`` set aside after the first ``keep`` pending ones."""
        kept = [c for c in self._pending[keep:] if c.source != name]
        self._pending = self._pending[:keep] + kept
        if not any(c.source == name for c in self._pending):
            self.changed_from.pop(name, None)


class LineChanges:
    """What lines of user code did to the sources since the last checkpoint, for
    ``--rngguard-trace`` (see :mod:`~pytest_rngguard.linetrace`): the line tracer calls
    :meth:`check` at every line, and the monitor asks :meth:`explaining` for the changes no
    seen call explains."""

    __slots__ = ("awaiting", "first_draws", "live", "monitor", "of", "pending", "ref", "setting")

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        #: The lines after which a source was set (not only drawn from), with its states
        #: before and after, and the first line after which each (source, detail) drew.
        self.setting: list[Event] = []
        self.first_draws: dict[tuple[str, str], Event] = {}
        #: The sources' states at the last line checked (None: capture them afresh at the
        #: next line), for the sources of ``of``: those of ``live`` (the monitor's live list
        #: they were taken from) whose library is not still being imported, and those that
        #: are, to be looked at again at the next line.
        self.ref: list[Any] | None = None
        self.of: list[tuple[str, Callable[[], Any]]] = []
        self.live: list[tuple[str, Callable[[], Any]]] = []
        self.pending: list[Source] = []
        #: Whether calls the call tracer saw wait for the next line's states.
        self.awaiting = False

    def forget(self) -> None:
        self.setting.clear()
        self.first_draws.clear()
        self.ref = None

    def ignored(self, name: str) -> None:
        """What lines did to ``name`` so far is settled (as the calls are); what an ignored
        module's call does to it is no line's."""
        self.setting = [e for e in self.setting if e.source != name]
        for key in [k for k in self.first_draws if k[0] == name]:
            del self.first_draws[key]
        self.ref = None

    def check(self, ran: tuple[FrameType, int] | None) -> None:
        """At a line of user code (see :mod:`~pytest_rngguard.linetrace`): compare the
        sources with the last line checked, and note ``ran``, the line that ran since, for
        each one that changed.  Never raises: it runs inside the user's code."""
        monitor = self.monitor
        try:
            pending = self.pending
            if self.live is not monitor._live or (pending and not all(map(_importing, pending))):
                self._sources()
            checked = self.of
            states = [capture() for _, capture in checked]
            if self.awaiting:
                self._after_traced_calls(checked, states)
            ref = self.ref
            self.ref = states
            if ref is None or states == ref or ran is None or not monitor.active:
                return
            for (name, _), before, after in zip(checked, ref, states, strict=True):
                if before is not after and before != after:
                    self._changed(name, before, after, ran)
        except Exception:
            pass  # the checkpoint's careful capture finds the cause

    def _after_traced_calls(self, checked: list[tuple[str, Any]], states: list[Any]) -> None:
        """Give the calls the call tracer saw since the last line their state after: what
        this check finds."""
        monitor = self.monitor
        self.awaiting = False
        now = {name: state for (name, _), state in zip(checked, states, strict=True)}
        events = monitor._events
        for index in range(len(events) - 1, -1, -1):
            event = events[index]
            if event.after is not None or event.before is None:
                continue  # intercepted, or seen before lines were traced
            source = monitor.sources.by_name.get(event.source)
            if event.source in now:
                events[index] = event._replace(after=now[event.source])
            elif source is not None:
                events[index] = event._replace(after=monitor.sources.capture_one(source))

    def _sources(self) -> None:
        """Which sources the line checks capture: the live ones whose library is imported
        (one read while its import runs, from a line of code that import runs, can crash);
        one that became available, or readable (NumPy's lazy ``numpy.random``), since the
        last check starts from its import state."""
        monitor = self.monitor
        by_name = monitor.sources.by_name
        live = self.live = monitor._live
        ready = [(n, c) for n, c in live if n in by_name and not _importing(by_name[n])]
        ready_names = {n for n, _ in ready}
        self.pending = [by_name[n] for n, _ in live if n in by_name and n not in ready_names]
        if self.ref is not None:
            known = dict(zip((n for n, _ in self.of), self.ref, strict=True))
            imported = monitor.sources.import_states
            self.ref = [imported.get(n) if known.get(n) is None else known[n] for n, _ in ready]
        self.of = ready

    def _changed(self, name: str, before: Any, after: Any, ran: tuple[FrameType, int]) -> None:
        monitor = self.monitor
        source = monitor.sources.by_name.get(name)
        if source is None:
            return
        differences = source.classify(before, after)
        firsts = self.first_draws
        if all(d.kind == ADVANCED and (name, d.detail) in firsts for d in differences):
            return  # only draws, each named already: the common case in a loop
        frame, line = ran
        caller = caller_frame(frame, library_of(source.module), monitor._keep)
        if caller is None or monitor._ignore(str(caller.f_globals.get("__name__", ""))):
            return
        origin = build_origin(caller, monitor._shorten, line if caller is frame else None)
        for difference in differences:
            detail = difference.detail
            if difference.kind == ADVANCED:
                firsts.setdefault((name, detail), Event(name, ADVANCED, detail, origin, after))
            else:
                self.setting.append(Event(name, difference.kind, detail, origin, after, before))

    def naming(
        self, source: Source, kind: str, detail: str, after: Any, origin: Origin | None
    ) -> tuple[str, Origin | None]:
        """The kind and origin of a change to ``after`` that no seen call explains: the line
        that does, where one does (a seed followed by draws is a reseed)."""
        line = self.explaining(source, kind, detail, after)
        if line is None:
            return kind, origin
        return (line.kind if line.kind != CHANGED else kind), line.origin

    def explaining(self, source: Source, kind: str, detail: str, after: Any) -> Event | None:
        """The line that explains the final state ``after`` of ``source``'s ``detail``: for
        draws, the first line that drew; else the last line that set it and after which
        only draws followed, or the earlier line whose state that one put back."""
        monitor = self.monitor
        name = source.name
        if kind == ADVANCED:
            return self.first_draws.get((name, detail))
        lines = [e for e in self.setting if e.source == name and e.detail == detail]
        sources = monitor.sources
        for index in range(len(lines) - 1, -1, -1):
            line = lines[index]
            differences = sources.classify(source, line.after, after)
            since = {d.kind for d in differences if d.detail == detail}
            if since and not (
                since <= {ADVANCED} or (line.kind in (RESEEDED, REPLACED) and since == {REPLACED})
            ):
                continue  # set again since, by something no line explains
            for earlier in lines[:index]:
                if sources.equal(source, earlier.after, line.after):
                    return earlier  # put back (``fork_rng``'s exit): the maker made it
            return line
        return None
