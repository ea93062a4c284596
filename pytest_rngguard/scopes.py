"""The scopes that hold changes beyond one test, and putting changes back when a scope ends.

Which scope a change belongs to is the ledger's business (:mod:`.ledger`); this module owns
the collectors' side of it: the state a test module's import left, set again for its own
tests and undone when pytest tears the module down; the packages whose ``setup_module``
changes state for their tests; and the put-back itself, which settles each leak's
``Putback`` on what the sources read back as.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .compat import setup_stack

if TYPE_CHECKING:
    from .ledger import Ledger, Targets
    from .monitor import Monitor
    from .report import Leak


class Scopes:
    """The collectors whose scope holds changes, and the put-back of any scope's changes."""

    __slots__ = ("collecting", "entered", "imports", "ledger", "monitor", "package_setups")

    def __init__(self, monitor: Monitor, ledger: Ledger) -> None:
        self.monitor = monitor
        self.ledger = ledger
        #: Collectors whose import changed state, with the states it left: set again for
        #: their own tests (``enter``), undone when pytest tears them down.
        self.imports: dict[pytest.Collector, dict[str, Any]] = {}
        #: The collectors whose scope holds changes now (those in ``imports``, packages whose
        #: ``setup_module`` changed state), in the order entered.
        self.entered: list[pytest.Collector] = []
        #: The packages whose ``__init__.py`` has a ``setup_module`` (or ``setUpModule``).
        self.package_setups: frozenset[pytest.Collector] = frozenset()
        #: The collectors being collected, innermost last, with the leaks found so far.
        self.collecting: list[tuple[pytest.Collector, list[Leak]]] = []

    # -- putting back ----------------------------------------------------------------------

    def put_back(self, targets: Targets) -> None:
        """Restore what a scope's end puts back, and settle each leak's put-back on what the
        sources then read back as."""
        if not targets:
            return
        monitor = self.monitor
        states = {name: state for name, (state, _) in targets.items()}
        with monitor.paused():
            restored = monitor.restore(states)
        for name, (_, putbacks) in targets.items():
            why = restored.failed.get(name)
            for putback in putbacks:
                putback.settle(why is None, why or "")

    def release(self, owner: object) -> None:
        """End ``owner``'s scope: put back what it changed (free where it changed nothing)."""
        if id(owner) in self.ledger.owners:
            self.put_back(self.ledger.release(owner))

    def release_all(self) -> None:
        """The session is over: whatever is still recorded (a run cut short) goes back."""
        if self.ledger:
            self.put_back(self.ledger.release_all())
        self.entered.clear()
        self.imports.clear()

    # -- collectors ------------------------------------------------------------------------

    def import_ended(self, collector: pytest.Collector) -> None:
        """A collector's import is checked: its changes are its own tests' alone, put back
        for whatever is collected or run next, and kept to be set again when they run."""
        if not self.ledger.owns(collector):
            return
        left = dict(self.monitor.baseline)
        targets = self.ledger.release(collector)
        self.imports[collector] = {name: left[name] for name in targets if name in left}
        self.put_back(targets)

    def entering(self, item: pytest.Item) -> list[pytest.Collector]:
        """The collectors of ``item`` whose import state is to be set as its scope begins."""
        chain = [node for node in item.listchain() if node in self.imports]
        return [node for node in chain if node not in self.entered]

    def enter(self, entering: list[pytest.Collector]) -> None:
        """Set the state each collector's import left, for its tests."""
        monitor, ledger = self.monitor, self.ledger
        for node in entering:
            states = self.imports[node]
            for name in states:
                ledger.record(node, name, monitor.baseline.get(name))
            with monitor.paused():
                failed = monitor.restore(states).failed
            for name, why in sorted(failed.items()):
                monitor.errors.append(
                    f"rngguard: {name} could not be set for the tests of {node.nodeid} as "
                    f"their import left it: {why}"
                )
            self.entered.append(node)

    def leave(self, nextitem: pytest.Item | pytest.Collector | None) -> None:
        """Undo the states of the collectors pytest has just torn down."""
        staying = set(nextitem.listchain()) if nextitem is not None else set()
        for node in reversed(list(self.entered)):
            if node not in staying:
                self.entered.remove(node)
                self.release(node)

    # -- packages --------------------------------------------------------------------------

    def find_package_setups(self, items: list[pytest.Item]) -> None:
        """Note the packages of these tests whose ``__init__.py`` defines a module-level
        setup: pytest calls it when it sets the package up, before the first of its tests'
        fixtures."""
        found: set[pytest.Collector] = set()
        seen: set[int] = set()
        for item in items:
            node = item.parent
            while node is not None and id(node) not in seen:
                seen.add(id(node))
                if isinstance(node, pytest.Package):
                    try:
                        text = (node.path / "__init__.py").read_text(encoding="utf-8")
                    except (OSError, UnicodeDecodeError):
                        text = ""
                    if "setup_module" in text or "setUpModule" in text:
                        found.add(node)
                node = node.parent
        self.package_setups = frozenset(found)

    def package_setting_up(self, item: pytest.Item) -> pytest.Collector | None:
        """The innermost package with a setup that pytest has still to set up for ``item``."""
        stack = setup_stack(item.session)
        for node in reversed(item.listchain()):
            if not isinstance(node, pytest.Collector) or node not in self.package_setups:
                continue
            if node not in self.entered and (stack is None or node not in stack):
                return node
        return None
