"""The reference model of scoped restore: what a suite's tests must see and which leaks the
plugin must report, written from the rules in docs/scopes.md, not from the plugin's code.

A suite (``Suite``) is a conftest with session fixtures and test modules, each with
operations at import, in module and function fixtures (setup and teardown) and in test
bodies.  The model runs it as pytest does, on abstract states:

* a generator's state is ``(origin, draws)``: ``origin`` is the seed it was last set from
  (an int), or a name for a state nobody chose (``"entropy:numpy"``, the state a library
  starts with at its import, or pytest-randomly's reseed); ``draws`` counts the numbers
  drawn since.  A foreign ``setstate`` gives ``(m, 1)``: a generator seeded with ``m`` that
  drew once.  ``UNLOADED`` is a library not imported yet;
* an environment variable's state is its value (None: unset); a flag's is its value.

The rules (docs/scopes.md): a change belongs to the scope that made it -- a module's import
to that module's tests, a fixture of a wider scope to the tests inside it until it is
finalised, everything else in a test to the test; it holds inside its scope and is undone
when the scope ends (``--rngguard-restore=leaked``: changes that are leaks; ``all``: every
change, draws too; ``none``: nothing).  Each change is reported once, for the stretch of
code it happened in (a module's import, a fixture's setup, a test's body, its teardown),
with its kind: ``reseeded``/``replaced`` by the last call that set the state (unless that
call only put back a state the stretch had already had), ``advanced`` for draws alone,
``changed`` for a variable or flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

UNLOADED = "unloaded"
RNGS = ("random", "numpy", "torch")
ENV = "PL_GLOBAL_SEED"


@dataclasses.dataclass
class Fixture:
    name: str
    scope: str  # session, module or function
    setup: list[tuple[Any, ...]]
    teardown: list[tuple[Any, ...]]


@dataclasses.dataclass
class Case:
    name: str
    fixtures: list[str]  # in the order pytest sets them up: wider scopes first
    body: list[tuple[Any, ...]]
    allow: bool = False  # ``@pytest.mark.allow_rng_leak``: nothing reported for it


@dataclasses.dataclass
class Module:
    name: str
    imports: list[tuple[Any, ...]]
    fixtures: list[Fixture]
    tests: list[Case]


@dataclasses.dataclass
class Suite:
    session_fixtures: list[Fixture]
    modules: list[Module]
    numpy_lazy: bool = False  # numpy imported, numpy.random not yet (NumPy 2's default)
    torch: str | None = None  # None, "loaded" (by the conftest) or "lazy" (by an operation)

    def fixture(self, module: Module, name: str) -> Fixture:
        for fixture in (*self.session_fixtures, *module.fixtures):
            if fixture.name == name:
                return fixture
        raise KeyError(name)

    def tests(self) -> Iterator[tuple[Module, Case]]:
        for module in self.modules:
            for test in module.tests:
                yield module, test


#: The state every suite starts from (its conftest sets it at import).
INITIAL_SEEDS = {"random": 1000, "numpy": 2000, "torch": 3000}


def initial_state(suite: Suite) -> dict[str, Any]:
    state: dict[str, Any] = {
        "random": (INITIAL_SEEDS["random"], 0),
        "numpy": UNLOADED if suite.numpy_lazy else (INITIAL_SEEDS["numpy"], 0),
        "env": None,
    }
    if suite.torch == "loaded":
        state["torch"] = (INITIAL_SEEDS["torch"], 0)
        state["flags"] = False
    elif suite.torch == "lazy":
        state["torch"] = UNLOADED
        state["flags"] = UNLOADED
    return state


@dataclasses.dataclass(frozen=True)
class Leak:
    nodeid: str
    phase: str
    fixture: str | None
    source: str
    detail: str
    kind: str


class Run:
    """One process's run of a suite (a serial run, or one xdist worker's)."""

    def __init__(self, suite: Suite, *, restore: str, strict: bool, randomly: bool = False) -> None:
        self.suite = suite
        self.restore = restore
        self.strict = strict
        self.randomly = randomly
        self.state = initial_state(suite)
        self.leaks: list[Leak] = []
        #: What each test's body started from, by node id.
        self.seen: dict[str, dict[str, Any]] = {}
        self._undo: dict[str, list[list[Any]]] = {}  # source -> [[owner, before], ...]
        self._import_left: dict[str, dict[str, Any]] = {}
        self._entered: list[str] = []
        self._active: dict[str, Fixture] = {}  # wide fixtures set up and not finalised
        self._order: list[str] = []  # their setup order
        self._stretch: dict[str, Any] = {}
        self._calls: dict[str, list[tuple[str, Any, Any]]] = {}  # kind, before, after

    # -- states ------------------------------------------------------------------------------

    def _load(self, source: str) -> None:
        """A library's first use imports it: it starts from a state nobody chose."""
        if self.state.get(source) == UNLOADED:
            self.state[source] = (f"entropy:{source}", 0)
            self._stretch[source] = self.state[source]  # its import state is no change
            if source == "torch" and self.state.get("flags") == UNLOADED:
                self.state["flags"] = self._stretch["flags"] = False

    def _do(self, op: tuple[Any, ...]) -> None:
        what = op[0]
        if what in ("seed", "draw", "foreign", "local", "fork"):
            source = op[1]
            self._load(source)
            if what == "fork":
                # Save the state, seed and draw, then set the saved state again.
                saved = self.state[source]
                self._set(source, (op[2], 0), "reseeded")
                self.state[source] = (op[2], 1)  # the draw: what setting the saved state undoes
                self._set(source, saved, "replaced")
            elif what == "seed":
                self._set(source, (op[2], 0), "reseeded")
            elif what == "foreign":
                self._set(source, (op[2], 1), "replaced")
            elif what == "draw":
                origin, draws = self.state[source]
                self.state[source] = (origin, draws + 1)
        elif what == "setenv":
            self.state["env"] = op[1]
        elif what == "unsetenv":
            self.state["env"] = None
        elif what == "flag":
            self._load("torch")
            self.state["flags"] = op[1]

    def _set(self, source: str, value: Any, kind: str) -> None:
        self._calls.setdefault(source, []).append((kind, self.state[source], value))
        self.state[source] = value

    # -- stretches ---------------------------------------------------------------------------

    def _open(self) -> None:
        self._stretch = dict(self.state)
        self._calls = {}

    def _kind(self, source: str, start: Any, end: Any) -> str:
        if source == "env" or source == "flags":
            return "changed"
        calls = self._calls.get(source, [])
        last = len(calls) - 1
        while last >= 0:
            kind, _, after = calls[last]
            if after == start:
                break  # put the stretch's start back: the state tells the rest
            # A call that puts back a state the stretch had already had only undoes: what
            # made that state explains what follows.
            made = next((c for c in calls[:last] if c[2] == after), None)
            undone = next((i for i, c in enumerate(calls[:last]) if c[1] == after), None)
            if made is not None and (undone is None or calls.index(made) <= undone):
                kind, after = made[0], made[2]
            elif undone is not None:
                last = undone - 1
                continue
            if end[0] == after[0] and end[1] >= after[1]:
                return kind
            break
        if start[0] == end[0] and end[1] >= start[1]:
            return "advanced"
        return "reseeded" if end[1] == 0 else "replaced"

    def _close(self, owner: str, nodeid: str, phase: str, fixture: str | None, allow: bool) -> None:
        """The end of a stretch: report what changed in it and note it under its scope."""
        for source, start in self._stretch.items():
            end = self.state.get(source)
            if end == start or start == UNLOADED:
                continue
            kind = self._kind(source, start, end)
            flagged = kind != "advanced" or self.strict
            if flagged and not allow:
                label, detail = self._label(source)
                self.leaks.append(Leak(nodeid, phase, fixture, label, detail, kind))
            if self.restore == "all" or (self.restore == "leaked" and flagged):
                self._record(owner, source, start)
        self._open()

    @staticmethod
    def _label(source: str) -> tuple[str, str]:
        if source == "env":
            return "env", ENV
        if source == "flags":
            return "torch.flags", "cudnn.benchmark"
        return source, ""

    # -- scopes ------------------------------------------------------------------------------

    def _record(self, owner: str, source: str, before: Any) -> None:
        stack = self._undo.setdefault(source, [])
        if stack and stack[-1][0] == owner:
            return
        stack.append([owner, before])

    def _release(self, owner: str) -> None:
        for source, stack in self._undo.items():
            for index in range(len(stack) - 1, -1, -1):
                if stack[index][0] != owner:
                    continue
                if index == len(stack) - 1:
                    self.state[source] = stack[index][1]
                    stack.pop()
                else:
                    stack[index + 1][1] = stack[index][1]
                    del stack[index]
        self._open()

    def _owns(self, owner: str) -> bool:
        return any(entry[0] == owner for stack in self._undo.values() for entry in stack)

    # -- pytest ------------------------------------------------------------------------------

    def collect(self) -> None:
        """Every module is imported at collection, in file-name order."""
        for module in sorted(self.suite.modules, key=lambda m: m.name):
            self._open()
            for op in module.imports:
                self._do(op)
            before_undo = dict(self.state)
            self._close(module.name, f"{module.name}.py", "collection", None, False)
            if self._owns(module.name):
                left = {s: before_undo[s] for s, stack in self._undo.items() if stack}
                self._release(module.name)
                self._import_left[module.name] = left
        self._open()

    def run(self, order: list[tuple[Module, Case]]) -> None:
        for index, (module, test) in enumerate(order):
            following = order[index + 1] if index + 1 < len(order) else None
            self._test(module, test, following)

    def _randomly(self, phase: str, nodeid: str) -> None:
        if self.randomly:
            for source in ("random", "numpy"):
                if self.state.get(source) not in (None, UNLOADED):
                    self.state[source] = (f"randomly:{nodeid}:{phase}", 0)
            self._open()

    def _test(  # noqa: C901 - one test, step by step as pytest runs it
        self, module: Module, test: Case, following: tuple[Module, Case] | None
    ) -> None:
        nodeid = f"{module.name}.py::{test.name}"
        # The module's scope begins: the state its import left, for its own tests.
        if module.name in self._import_left and module.name not in self._entered:
            for source, value in self._import_left[module.name].items():
                self._record(module.name, source, self.state.get(source))
                self.state[source] = value
            self._entered.append(module.name)
        self._open()
        self._randomly("setup", nodeid)
        function_fixtures = []
        for name in test.fixtures:
            fixture = self.suite.fixture(module, name)
            key = self._key(module, fixture)
            if fixture.scope != "function" and key in self._active:
                continue
            self._close(nodeid, nodeid, "setup", None, test.allow)
            for op in fixture.setup:
                self._do(op)
            owner = key if fixture.scope != "function" else nodeid
            self._close(owner, nodeid, "setup", name, test.allow)
            if fixture.scope == "function":
                function_fixtures.append(fixture)
            else:
                self._active[key] = fixture
                self._order.append(key)
        self._close(nodeid, nodeid, "setup", None, test.allow)
        self._randomly("call", nodeid)
        self.seen[nodeid] = dict(self.state)
        for op in test.body:
            self._do(op)
        self._close(nodeid, nodeid, "call", None, test.allow)
        self._randomly("teardown", nodeid)
        for fixture in reversed(function_fixtures):
            for op in fixture.teardown:
                self._do(op)
        module_ends = following is None or following[0].name != module.name
        ending = []
        if module_ends:
            ending += [k for k in reversed(self._order) if k.startswith(f"{module.name}::")]
        if following is None:
            ending += [k for k in reversed(self._order) if k.startswith("session::")]
        for key in ending:
            for op in self._active.pop(key).teardown:
                self._do(op)
            self._order.remove(key)
            if self._owns(key):
                self._close(nodeid, nodeid, "teardown", None, test.allow)
                self._release(key)
        self._close(nodeid, nodeid, "teardown", None, test.allow)
        self._release(nodeid)
        if module_ends and module.name in self._entered:
            self._entered.remove(module.name)
            self._release(module.name)

    @staticmethod
    def _key(module: Module, fixture: Fixture) -> str:
        if fixture.scope == "session":
            return f"session::{fixture.name}"
        return f"{module.name}::{fixture.name}"
