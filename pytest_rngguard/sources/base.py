"""The one protocol every source of global random state implements."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, TypeAlias, runtime_checkable

RESEEDED = "reseeded"
REPLACED = "replaced"
CHANGED = "changed"
ADVANCED = "advanced"
#: Every kind of change, most severe first.
KINDS = (RESEEDED, REPLACED, CHANGED, ADVANCED)


class Difference(NamedTuple):
    """One way two captured states of a source differ."""

    kind: str
    detail: str = ""  # the device, variable or flag, where the source has several
    description: str = ""  # human words for the values, e.g. "unset -> '42'"


#: The difference of a generator that only drew numbers: the common one, made once.
DREW = Difference(ADVANCED)

#: What a seeding call is about: one detail, several, or None for every detail of the source.
Detail: TypeAlias = "str | tuple[str, ...] | None"


class Seeder(NamedTuple):
    """A Python-level function that sets a source's state, intercepted to learn who called it.

    ``target`` is a dotted path below ``module``: ``"seed"`` for ``numpy.random.seed``,
    ``"environ.putenv"`` for a method of a module-level object.  ``detail`` maps the call's
    arguments to the detail (or the tuple of details) it affects, or to None when the call is
    not about this source.
    """

    module: str
    target: str
    kind: str
    detail: Callable[..., Detail] | None = None


class TraceTarget(NamedTuple):
    """A method of global objects that only a tracer sees being called (C types, early binds).

    ``owners`` returns the objects (e.g. ``torch.default_generator``) whose ``method`` counts.
    """

    owners: Callable[[], Sequence[object]]
    method: str
    kind: str


@runtime_checkable
class Source(Protocol):
    """A process-global random state that user code can see.

    ``capture`` returns a value that compares equal (``==``) exactly when the state is the
    same and that ``restore`` accepts.  It must be cheap: it runs at every phase boundary.
    """

    name: str
    #: The module that must already be in ``sys.modules`` (the plugin never imports it).
    module: str
    #: Whether ``seed`` means something (``deterministic`` seeds these and holds them).
    seedable: bool

    def available(self) -> bool: ...

    def capture(self) -> Any: ...

    def restore(self, state: Any) -> None: ...

    def seed(self, seed: int) -> None: ...

    def classify(self, before: Any, after: Any) -> list[Difference]:
        """How ``after`` differs from ``before``; ``before`` is None for a source that became
        available in between (then only a recognisable reseed is reported)."""
        ...

    def seeders(self) -> Sequence[Seeder]: ...

    def trace_targets(self) -> Sequence[TraceTarget]: ...


# Optional members of a source, looked up with ``getattr`` (a third-party source may lack them):
#
# ``import_module: str`` -- the module whose import creates the state (default: the top-level
# package of ``module``).  The moment that import finishes, the state is captured: it is what
# a source that became available during a test is put back to, and what its first change is
# classified against.
#
# ``whole_state: bool`` -- True where the state is one thing (a Mersenne Twister): ``classify``
# of two differing states, neither None, returns exactly one ``Difference`` with no detail and
# no description, only its kind depending on the states.  The monitor then takes the kind
# from a reseed that explains the change without classifying the states (which, after a
# reseed and many draws, searches thousands of twists for nothing).
#
# ``origin_hint() -> Sequence[str] | None`` -- ``traceback.format_stack()`` text of the last
# call that set the state, where the library keeps one (torch does for seeds it queues until
# CUDA starts); used when no intercepted call explains a change.


def import_module_of(source: Source) -> str:
    """The module whose import creates ``source``'s state (see above)."""
    module = getattr(source, "import_module", None)
    return module if isinstance(module, str) and module else library_of(source.module)


class ModuleSource:
    """Defaults for a source that is available when its library is loaded."""

    name = ""
    module = ""
    seedable = True

    def available(self) -> bool:
        return self.module in sys.modules

    def seeders(self) -> Sequence[Seeder]:
        return ()

    def trace_targets(self) -> Sequence[TraceTarget]:
        return ()


class Same:
    """An object a state holds by identity (NumPy's bit generator): states are equal only
    while they hold the same one, and fingerprint alike across processes (no address)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"Same({type(self.obj).__qualname__})"


def mt_kind(advanced: bool, seeded: bool) -> str:
    """The kind of change of an MT19937 source whose state changed."""
    if advanced:
        return ADVANCED
    return RESEEDED if seeded else REPLACED


def library_of(module: str) -> str:
    """The top-level package whose frames count as "inside the library" for origins."""
    return module.partition(".")[0]
