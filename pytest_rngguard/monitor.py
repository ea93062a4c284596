"""The monitor: watches every source across consecutive stretches of a run.

A run (a test's setup, one fixture, the test body, ...) is cut into stretches by
:meth:`Monitor.checkpoint`; each checkpoint compares the sources with the state at the
previous one, classifies what changed, attaches the seeding calls seen meanwhile, and makes
the current state the new baseline.  Calls from ignored modules (pytest-randomly,
Hypothesis, ``rngguard_ignore``) move the baseline instead of counting as changes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from .origins import (
    ImportWatcher,
    Interceptor,
    Origin,
    Tracer,
    build_origin,
    called_by_plugin,
    caller_frame,
    origin_from_traceback,
)
from .snapshots import Change
from .sources import ADVANCED, CHANGED, Difference, Seeder, Source
from .sources.base import Detail, library_of
from .sources.torch_cuda import QUEUED

#: Reseeders whose calls a ``deterministic`` test undoes, so its own seeds win.
HOLD_AGAINST = ("pytest_randomly", "pytest_randomly.*")


class Event(NamedTuple):
    """A seeding call seen while the monitor was active."""

    source: str
    kind: str
    detail: Detail  # None: every detail of the source
    origin: Origin | None
    after: Any  # the source's state right after the call; None if unknown


def _details(detail: Detail) -> tuple[str, ...]:
    if detail is None:
        return ("",)
    return (detail,) if isinstance(detail, str) else detail


class Monitor:
    def __init__(
        self,
        sources: Sequence[Source],
        *,
        ignore: Callable[[str], bool],
        shorten: Callable[[str], str],
        trace: bool = False,
        keep_advanced: bool = True,
    ) -> None:
        self._sources: tuple[Source, ...] = tuple(sources)
        #: Whether checkpoints return changes that drawing numbers explains (strict mode);
        #: without it they are dropped before a ``Change`` is built for them.
        self.keep_advanced = keep_advanced
        self._ignore = ignore
        self._shorten = shorten
        self.baseline: dict[str, Any] = {}
        self._events: list[Event] = []
        self._pending: list[Change] = []
        #: Events are recorded only while active (inside a watched stretch).
        self.active = False
        #: Sources a ``deterministic`` test holds against pytest-randomly's reseeds.
        self.held: frozenset[str] = frozenset()
        #: Messages about sources that raised and were disabled, not yet shown.
        self.errors: list[str] = []
        self.interceptor = Interceptor(self._intercepted)
        self._tracer = (
            Tracer(lambda: self._sources, self.interceptor, self._traced) if trace else None
        )
        self._modules_seen = -1
        #: (name, capture) of the sources available at the last refresh: the hot path.
        self._live: list[tuple[str, Callable[[], Any]]] = []
        watched = {s.module for s in sources}
        watched.update(seeder.module for s in sources for seeder in s.seeders())
        self._watcher = ImportWatcher(watched, self._module_imported)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.refresh()
        self._watcher.install()
        if self._tracer is not None:
            self._tracer.start()

    def stop(self) -> None:
        self.active = False
        self._watcher.uninstall()
        if self._tracer is not None:
            self._tracer.stop()
        self.interceptor.uninstall()

    def _module_imported(self, name: str) -> None:
        self._modules_seen = -1
        self.refresh()
        # The module that just ran is still marked as initialising: look again next time.
        self._modules_seen = -1

    def refresh(self) -> None:
        """Wrap the seeders of libraries loaded since the last look (cheap when none were)."""
        if len(sys.modules) == self._modules_seen:
            return
        self._modules_seen = len(sys.modules)
        available = self.available()
        self._live = [(s.name, s.capture) for s in available]
        self.interceptor.install(available)
        if self._tracer is not None:
            self._tracer.refresh()

    @property
    def sources(self) -> tuple[Source, ...]:
        return self._sources

    def available(self) -> list[Source]:
        return [s for s in self._sources if s.available()]

    def source(self, name: str) -> Source | None:
        for source in self._sources:
            if source.name == name:
                return source
        return None

    # -- capturing -------------------------------------------------------------------------

    def capture(self, sources: Iterable[Source] | None = None) -> dict[str, Any]:
        if sources is None:
            try:
                return {name: capture() for name, capture in self._live}
            except Exception:
                pass  # the careful loop below finds and disables the source that raised
        states = {}
        for source in self._sources if sources is None else sources:
            if source.available():
                try:
                    states[source.name] = source.capture()
                except Exception as exc:
                    self.disable(source, "capturing its state", exc)
        return states

    def restore(self, states: dict[str, Any], names: Iterable[str] | None = None) -> list[str]:
        """Put the named sources (all in ``states`` by default) back; returns those restored."""
        restored = []
        for source in self._sources:
            name = source.name
            if name not in states or (names is not None and name not in names):
                continue
            if not source.available():
                continue
            try:
                source.restore(states[name])
            except Exception as exc:
                self.disable(source, "restoring its state", exc)
                continue
            restored.append(name)
            if name in self.baseline:
                self.baseline[name] = states[name]
        return restored

    def disable(self, source: Source, doing: str, exc: BaseException) -> None:
        self._sources = tuple(s for s in self._sources if s is not source)
        self._live = [(name, capture) for name, capture in self._live if name != source.name]
        self.baseline.pop(source.name, None)
        self.errors.append(
            f"rngguard: the source {source.name!r} raised {exc!r} while {doing}; it is not "
            f"checked for the rest of this session"
        )

    # -- stretches -------------------------------------------------------------------------

    def reset(self) -> dict[str, Any]:
        """Start a new stretch from the current state, forgetting anything unattributed."""
        self.refresh()
        self.baseline = self.capture()
        self._events.clear()
        self._pending.clear()
        return dict(self.baseline)

    def settle(self) -> None:
        """Forget the calls seen so far; the baseline, already current, stays."""
        self._events.clear()
        self._pending.clear()

    def idle(self) -> bool:
        """Whether the monitor has seen nothing since the last checkpoint: no seeding call, no
        change set aside, no module imported.  Where only code known to leave the sources
        alone ran since, a checkpoint would then find nothing, and can be skipped."""
        return not self._events and not self._pending and len(sys.modules) == self._modules_seen

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Let seeding calls through unseen: for the plugin's own, which need no origin and
        would otherwise each walk the stack to find they came from the plugin."""
        active, self.active = self.active, False
        try:
            yield
        finally:
            self.active = active

    def checkpoint(self) -> list[Change]:
        """Everything that changed since the last checkpoint; the current state becomes the
        new baseline."""
        self.refresh()
        current = self.capture()
        baseline = self.baseline
        if current == baseline and not self._pending:
            self._events.clear()
            return []
        changes = self._pending
        for name, after in current.items():
            before = baseline.get(name)
            if before is None or before != after:
                source = self.source(name)
                if source is not None:
                    changes.extend(self._classify(source, before, after))
        self.baseline = current
        self._pending = []
        self._events.clear()
        return changes

    def _classify(self, source: Source, before: Any, after: Any) -> list[Change]:
        try:
            differences = source.classify(before, after)
        except Exception as exc:
            self.disable(source, "classifying a change", exc)
            return []
        name = source.name
        events = [e for e in self._events if e.source == name] if self._events else []
        if before is None and not differences and events:
            # Loaded during the stretch and set by a call we saw: its state alone cannot
            # tell (a seed followed by draws), the call can.
            last = events[-1]
            if last.kind != CHANGED:
                differences = [Difference(last.kind, _details(last.detail)[0])]
        changes = []
        for difference in differences:
            calls = (
                [e for e in events if e.detail is None or difference.detail in _details(e.detail)]
                if events
                else events
            )
            kind, origin = difference.kind, None
            if calls:
                last = calls[-1]
                origin = last.origin
                if last.kind != CHANGED and self._explains(source, last, after):
                    kind = last.kind
            if kind == ADVANCED and not self.keep_advanced:
                continue
            if not calls and (
                difference.detail == QUEUED or (name == "torch.cuda" and before is None)
            ):
                origin = self._queued_origin()
            changes.append(
                Change(
                    name,
                    kind,
                    difference.detail,
                    difference.description,
                    origin,
                    tuple(e.origin for e in calls if e.origin is not None),
                )
            )
        return changes

    def _explains(self, source: Source, event: Event, after: Any) -> bool:
        """Whether the state right after ``event`` leads to ``after`` by draws alone."""
        if event.after is None or event.after == after:
            return True
        try:
            return all(d.kind == ADVANCED for d in source.classify(event.after, after))
        except Exception:
            return False

    def _queued_origin(self) -> Origin | None:
        """torch keeps the stack of the last queued CUDA seeding call: use it."""
        cuda = sys.modules.get("torch.cuda")
        tracker = getattr(cuda, "_lazy_seed_tracker", None)
        for entry in reversed(getattr(tracker, "call_order", None) or []):
            if entry:
                return origin_from_traceback(entry[1], self._shorten)
        return None

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
        library = library_of(source.module)
        if called_by_plugin(frame, library):
            return original(*args, **kwargs)  # our own seeding and restoring
        caller = caller_frame(frame, library)
        module = str(caller.f_globals.get("__name__", "")) if caller is not None else ""
        if caller is not None and self._ignore(module):
            return self._ignored_call(original, args, kwargs, source, module)
        result = original(*args, **kwargs)
        self._events.append(
            Event(
                source.name,
                seeder.kind,
                detail,
                build_origin(caller, self._shorten) if caller is not None else None,
                self._capture_one(source),
            )
        )
        return result

    def _traced(self, source: Source, kind: str, frame: Any) -> None:
        if not self.active:
            return
        caller = caller_frame(frame, library_of(source.module))
        if caller is None or self._ignore(str(caller.f_globals.get("__name__", ""))):
            return
        origin = build_origin(caller, self._shorten)
        self._events.append(Event(source.name, kind, None, origin, None))

    def _capture_one(self, source: Source) -> Any:
        if not source.available():
            return None
        try:
            return source.capture()
        except Exception:
            return None

    def _ignored_call(
        self,
        original: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        source: Source,
        module: str,
    ) -> Any:
        """Settle what the stretch did to this source so far, let the call happen, and make
        its result the new baseline: an ignored module's change is nobody's leak."""
        name = source.name
        if name in self.baseline:
            now = self._capture_one(source)
            if now is not None and now != self.baseline[name]:
                self._pending.extend(self._classify(source, self.baseline[name], now))
            self._events = [e for e in self._events if e.source != name]
        hold = name in self.held and any(
            module == p or (p.endswith(".*") and module.startswith(p[:-1])) for p in HOLD_AGAINST
        )
        saved = self._capture_one(source) if hold else None
        result = original(*args, **kwargs)
        if saved is not None:
            source.restore(saved)
        now = self._capture_one(source)
        if now is not None:
            self.baseline[name] = now
        return result
