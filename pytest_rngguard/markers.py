"""The ``allow_rng_leak`` and ``deterministic`` markers, read once per test.

The shape of pytest's ``evaluate_xfail_marks`` (``skipping.py``): one walk up a test's
nodes turns its markers into a frozen :class:`Marks`, kept in ``item.stash[marks_key]`` for
all of the test's runs.  A bad argument is not raised here: it is kept as the message that
fails the test's setup, at the point where that marker takes effect, naming the test and the
argument.  Nothing here changes any state but the one-marker cache of :class:`MarkReader`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from .compat import defined_by_pytest

if TYPE_CHECKING:
    from .determinism import Recipe
    from .settings import Settings

MARKERS = (
    "allow_rng_leak(*sources, reason=None): leaks of these sources (all if none named) in "
    "this test are not reported",
    "deterministic(seed=None, *, env=None, torch_flags=True, warn_only=False, repeat=None): "
    "run the test with every RNG seeded and the determinism environment set, then put it all "
    "back; repeat=N runs it N times and compares what it recorded",
)
_DETERMINISTIC_KEYWORDS = frozenset({"seed", "env", "torch_flags", "warn_only", "repeat"})

#: A ``deterministic`` marker's checked arguments: its seed (None: derived from each test's
#: node id), then the rest of its recipe (environment pairs, torch_flags, warn_only).
MarkerArguments = tuple[int | None, tuple[tuple[tuple[str, str], ...], bool, bool]]


class Marks(NamedTuple):
    """What a test's markers (and its nodes' classes) ask of the guard."""

    #: The sources whose leaks are not reported: none, some, or every one (None).
    allowed: frozenset[str] | None
    #: Why the test's ``allow_rng_leak`` markers are wrong; fails its setup first thing.
    allow_problem: str | None
    #: The recipe of the closest ``deterministic`` marker, its seed derived for this test.
    recipe: Recipe | None
    #: Why that marker's arguments are wrong; fails the setup where the recipe would apply.
    deterministic_problem: str | None
    #: How many times the test runs: more than once only for a deterministic test under
    #: repeat (a bad ``repeat=`` counts as one: the setup reports it).
    runs: int
    #: Whether setting the test and its collectors up runs only pytest's own ``setup``
    #: methods (a custom item or collector may run code of its own there).
    plain_setups: bool


#: Every unmarked test's marks (one of two), shared: most tests have no marker.
UNMARKED = Marks(frozenset(), None, None, None, 1, True)
UNMARKED_OWN_SETUP = Marks(frozenset(), None, None, None, 1, False)

marks_key = pytest.StashKey[Marks]()


class _Bad(Exception):
    """A marker argument that is wrong: the message names the test and the argument."""


class MarkReader:
    """Reads the markers of one session's tests.

    A ``deterministic`` marker's arguments are checked once per marker object: the tests
    that share one (a module's ``pytestmark``, a parametrised function's) follow each
    other, so the last one is kept.
    """

    __slots__ = ("_env", "_last", "_plain", "_repeat", "_seed", "known")

    def __init__(self, settings: Settings, known: frozenset[str]) -> None:
        #: Every source's name, checked or not: what ``allow_rng_leak`` accepts.
        self.known = known
        self._seed = settings.seed
        self._env = settings.env_set
        self._repeat = settings.repeat
        self._last: tuple[pytest.Mark, MarkerArguments] | None = None
        #: Whether a node class's ``setup`` is pytest's own, by class.
        self._plain: dict[type, bool] = {}

    def read(self, item: pytest.Item) -> Marks:
        """The test's marks, kept in its stash.  One walk up its nodes: its
        ``allow_rng_leak`` markers and closest ``deterministic`` one (what
        ``item.iter_markers()`` yields, closest first, without its generators), and whether
        their ``setup`` methods are all pytest's own."""
        allow: list[pytest.Mark] = []
        deterministic = None
        plain: bool | None = True
        known_plain = self._plain
        node: pytest.Item | pytest.Collector | None = item
        while node is not None:
            for mark in node.own_markers:
                name = mark.name
                if name == "allow_rng_leak":
                    allow.append(mark)
                elif name == "deterministic" and deterministic is None:
                    deterministic = mark
            if plain:
                kind = type(node)
                plain = known_plain.get(kind)
                if plain is None:
                    plain = known_plain[kind] = defined_by_pytest(getattr(kind, "setup", None))
            node = node.parent
        if not allow and deterministic is None:
            marks = UNMARKED if plain else UNMARKED_OWN_SETUP
        else:
            marks = self._marks(item, allow, deterministic, bool(plain))
        item.stash[marks_key] = marks
        return marks

    def _marks(
        self,
        item: pytest.Item,
        allow: list[pytest.Mark],
        deterministic: pytest.Mark | None,
        plain: bool,
    ) -> Marks:
        allowed: frozenset[str] | None = frozenset()
        allow_problem = recipe = deterministic_problem = None
        if allow:
            try:
                allowed = allowed_sources(item, allow, self.known)
            except _Bad as exc:
                allow_problem = str(exc)
        runs = 1
        if deterministic is not None:
            repeat = deterministic.kwargs.get("repeat")
            if repeat is None:
                runs = self._repeat
            elif not _bad_repeat(repeat):  # a bad one counts as one: the setup reports it
                runs = int(repeat)
            try:
                recipe = self._recipe(item, deterministic)
            except _Bad as exc:
                deterministic_problem = str(exc)
        return Marks(allowed, allow_problem, recipe, deterministic_problem, runs, plain)

    def _recipe(self, item: pytest.Item, marker: pytest.Mark) -> Recipe:
        from .determinism import Recipe, derive_seed

        cached = self._last
        if cached is None or cached[0] is not marker:
            cached = self._last = (marker, self._arguments(item, marker))
        seed, rest = cached[1]
        if seed is None:
            seed = derive_seed(self._seed, item.nodeid)
        return Recipe(seed, *rest)

    def _arguments(self, item: pytest.Item, marker: pytest.Mark) -> MarkerArguments:
        """A ``deterministic`` marker's seed (None: derived from each test's node id) and
        the rest of its recipe."""
        unknown = set(marker.kwargs) - _DETERMINISTIC_KEYWORDS
        if unknown or len(marker.args) > 1 or (marker.args and "seed" in marker.kwargs):
            raise _Bad(
                f"{item.nodeid}: deterministic takes (seed=None, *, env=None, torch_flags=True, "
                f"warn_only=False, repeat=None); got args={marker.args!r} "
                f"kwargs={sorted(marker.kwargs)!r}"
            )
        from .determinism import check_arguments

        seed = marker.args[0] if marker.args else marker.kwargs.get("seed")
        torch_flags = marker.kwargs.get("torch_flags", True)
        warn_only = marker.kwargs.get("warn_only", False)
        try:
            checked_seed, env = check_arguments(
                seed, marker.kwargs.get("env"), torch_flags, warn_only
            )
            repeat = marker.kwargs.get("repeat")
            if repeat is not None and _bad_repeat(repeat):
                raise ValueError(f"repeat must be an integer >= 1, got {repeat!r}")
        except ValueError as exc:
            raise _Bad(f"{item.nodeid}: deterministic: {exc}") from None
        return checked_seed, ((*self._env, *env), torch_flags, warn_only)


def _bad_repeat(value: Any) -> bool:
    """Whether ``repeat=`` is not an integer >= 1 (the one rule for it)."""
    return isinstance(value, bool) or not isinstance(value, int) or value < 1


def allowed_sources(
    node: pytest.Item | pytest.Collector, markers: list[pytest.Mark], known: frozenset[str]
) -> frozenset[str] | None:
    """The sources ``allow_rng_leak`` markers allow (None: every one); ``_Bad`` for the
    first bad argument."""
    names: set[str] = set()
    for marker in markers:
        extra = set(marker.kwargs) - {"reason"}
        if extra:
            raise _Bad(
                f"{node.nodeid}: allow_rng_leak got unknown keyword(s) {sorted(extra)}; "
                f"it takes source names and reason="
            )
        if not marker.args:
            return None
        for name in marker.args:
            if not isinstance(name, str) or name not in known:
                raise _Bad(
                    f"{node.nodeid}: allow_rng_leak got {name!r}, which is not a source; "
                    f"known sources are {', '.join(sorted(known))}"
                )
            names.add(name)
    return frozenset(names)


def allowed_at_import(node: pytest.Collector, known: frozenset[str]) -> frozenset[str] | None:
    """What a module's ``allow_rng_leak`` markers (``pytestmark``) allow, for its import;
    a bad marker allows nothing here (its tests report the bad argument)."""
    markers = list(node.iter_markers("allow_rng_leak"))
    if not markers:
        return frozenset()
    try:
        return allowed_sources(node, markers, known)
    except _Bad:
        return frozenset()
