"""Seeding everything, setting the determinism environment and flags, and putting them back."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from .origins import ImportWatcher
from .sources import Source, build_sources
from .sources.base import import_module_of
from .sources.env import read_environ
from .sources.torch_flags import DETAILS, INDUCTOR_CONFIG, TorchFlags, current_flags, set_flags
from .sourceset import SourceSet

#: What every deterministic test gets, after the vLLM reproducibility recipe.
RECIPE_ENV = (
    ("VLLM_ENABLE_V1_MULTIPROCESSING", "0"),
    ("CUBLAS_WORKSPACE_CONFIG", ":4096:8"),
)
#: The torch settings a recipe with ``torch_flags`` sets (``warn_only`` as it says), by
#: ``TorchFlags`` field: deterministic algorithms and cuDNN kernels, and float32 computed in
#: float32 (matmul precision "highest", TF32 off, and every operation's ``fp32_precision``
#: "ieee", so that no ``generic`` or backend-wide setting lets TF32 or bfloat16 back in).
#: The reduced-precision reductions and the default dtype are left as they are (put back
#: all the same, if the test changes them).
RECIPE_FLAGS: dict[str, Any] = {
    "deterministic_algorithms": True,
    "cudnn_deterministic": True,
    "cudnn_benchmark": False,
    "float32_matmul_precision": "highest",
    "cuda_matmul_allow_tf32": False,
    "cudnn_allow_tf32": False,
    "cuda_matmul_fp32_precision": "ieee",
    "cudnn_conv_fp32_precision": "ieee",
    "cudnn_rnn_fp32_precision": "ieee",
    "mkldnn_matmul_fp32_precision": "ieee",
    "mkldnn_conv_fp32_precision": "ieee",
    "mkldnn_rnn_fp32_precision": "ieee",
}
RECIPE_FIELDS = (*RECIPE_FLAGS, "deterministic_algorithms_warn_only")
#: The report details of the settings the recipe sets: a deterministic test's own changes of
#: them are undone with the recipe, not reported (like those of the variables it sets).
RECIPE_DETAILS = frozenset(DETAILS[TorchFlags._fields.index(name)] for name in RECIPE_FIELDS)
SEED_LIMIT = 2**32  # derived seeds: every library takes [0, 2**32) as it is
#: Explicit seeds: torch takes 64 bits; NumPy's legacy seed is given the seed's 32-bit words.
MAX_SEED = 2**64 - 1


def derive_seed(base: int, nodeid: str) -> int:
    """A test's seed from the base seed and its node id: stable across runs, machines,
    Python versions, test order and xdist workers (never the salted ``hash()``)."""
    digest = hashlib.blake2b(f"{base}\0{nodeid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SEED_LIMIT


class Recipe(NamedTuple):
    """What a deterministic run sets (a named tuple: one is made for every marked test)."""

    seed: int
    env: tuple[tuple[str, str], ...] = ()
    torch_flags: bool = True
    warn_only: bool = False

    def environment(self) -> dict[str, str]:
        values = dict(RECIPE_ENV)
        # Python takes a hash seed up to 2**32 - 1 and refuses to start above it.
        values["PYTHONHASHSEED"] = str(self.seed % 2**32)
        values.update(self.env)
        return values


def check_arguments(
    seed: Any, env: Any, torch_flags: Any, warn_only: Any
) -> tuple[int | None, tuple[tuple[str, str], ...]]:
    """Validate the marker's / context manager's arguments; ValueError names the bad one."""
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
    ):
        raise ValueError(f"seed must be an integer from 0 to 2**64 - 1, or None, got {seed!r}")
    if env is None:
        pairs: tuple[tuple[str, str], ...] = ()
    elif isinstance(env, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        pairs = tuple(env.items())
    else:
        raise ValueError(f"env must be a mapping of str to str, got {env!r}")
    for name, value in pairs:
        # The rule of rngguard_env's lines; os.environ would refuse a NUL only once half the
        # recipe was applied.
        if not (name.isidentifier() and name.isascii()):
            raise ValueError(f"env: {name!r} is not a valid environment variable name")
        if "\0" in value:
            raise ValueError(f"env: the value of {name} contains a NUL byte")
    for name, value in (("torch_flags", torch_flags), ("warn_only", warn_only)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    return seed, pairs


class Applied:
    """Everything a recipe changed, and how it was before."""

    __slots__ = ("env", "flags", "inductor", "listener", "recipe", "states", "watcher")

    def __init__(self, recipe: Recipe, states: dict[str, Any], env: dict[str, str | None]) -> None:
        self.recipe = recipe
        #: The seeded sources' states before the recipe, by name, in the order seeded.
        self.states = states
        #: The environment variables the recipe sets, as they were (None: unset).
        self.env = env
        #: The torch flags before the recipe set them; None where not set.
        self.flags: TorchFlags | None = None
        #: Seeds the libraries first imported while the recipe is applied; None once undone:
        #: its own import watcher, or a listener on the plugin's monitor's.
        self.watcher: ImportWatcher | None = None
        self.listener: tuple[list[Callable[[str], None]], Callable[[str], None]] | None = None
        #: torch inductor's ``deterministic`` before the recipe set it; None where not set.
        self.inductor: bool | None = None

    @property
    def seeded(self) -> tuple[str, ...]:
        """The names of the sources the recipe seeded."""
        return tuple(self.states)

    @property
    def watching(self) -> bool:
        return self.watcher is not None or self.listener is not None


#: Called with a source's name and its state before the recipe seeds it.
Record = Callable[[str, Any], None]


def apply(  # noqa: C901 - one all-or-nothing sequence, undone as a whole
    recipe: Recipe,
    sources: SourceSet,
    *,
    adopted: Callable[[tuple[str, ...]], None] | None = None,
    record: Record | None = None,
    listeners: list[Callable[[str], None]] | None = None,
) -> Applied:
    """Save, then seed every available source and set the environment and torch flags.

    A library first imported later, before :func:`undo` (``import numpy`` in the test
    itself), is seeded the moment its import finishes; ``adopted`` is told the names of the
    sources seeded then.  ``record`` is told each source's state before the recipe seeds or
    sets it, the environment and the torch flags included (the plugin puts them back with the
    rest of the test's changes: what the test changed of them goes back past the recipe, to
    where it was before), and ``listeners`` is the list of an import watcher already
    installed, to listen to instead of installing one.
    """
    environment = recipe.environment()
    saved_env = read_environ(environment)
    applied = Applied(recipe, {}, saved_env)
    try:
        for source in sources.available():
            if source.seedable:
                _seed(applied, sources, source, record)
        _record(sources, "env", record)
        os.environ.update(environment)
        if "torch" in sys.modules:
            _set_flags(applied, sources, record)
    except BaseException:
        # All or nothing: whatever stopped it (an interrupt too), nothing it did stays.
        undo(applied, sources)
        raise
    later = {
        import_module_of(s) for s in sources.sources if s.seedable and s.name not in applied.states
    }
    if recipe.torch_flags and applied.flags is None:
        later.add("torch")
    if recipe.torch_flags and applied.inductor is None:
        later.add(INDUCTOR_CONFIG)
    if later:

        def imported(name: str) -> None:
            if name not in later:
                return
            names = _adopt(applied, sources, name, record)
            if names and adopted is not None:
                adopted(names)

        if listeners is not None:
            listeners.append(imported)
            applied.listener = (listeners, imported)
        else:
            applied.watcher = ImportWatcher(later, imported)
            applied.watcher.install()
    return applied


def _seed(applied: Applied, sources: SourceSet, source: Source, record: Record | None) -> None:
    before = sources.capture_now(source)
    if before is None and source.available():
        # Its library is loaded but the state not created yet (NumPy 2 loads numpy.random
        # on first use): create it, so that every run of the test seeds the same sources.
        with contextlib.suppress(Exception):
            importlib.import_module(import_module_of(source))
        before = sources.capture_now(source)
    if before is None:
        return  # not ready (a library still initialising): seeded when its import ends
    if record is not None:
        record(source.name, before)
    applied.states[source.name] = before
    if not sources.seed(source, applied.recipe.seed, before):
        del applied.states[source.name]  # it raised: put back and disabled


def _record(sources: SourceSet, name: str, record: Record | None) -> Any:
    """Tell ``record`` the state of a source that the recipe sets without seeding it;
    returns that state (None where not read)."""
    source = sources.get(name)
    if record is None or source is None:
        return None
    state = sources.capture_now(source)
    if state is not None:
        record(name, state)
    return state


def _set_flags(applied: Applied, sources: SourceSet, record: Record | None) -> None:
    if not applied.recipe.torch_flags:
        return
    state = _record(sources, "torch.flags", record)
    # The source's state is the settings as a plain tuple, just read: not read twice.
    fresh = isinstance(state, tuple) and len(state) == len(TorchFlags._fields)
    now = TorchFlags(*state) if fresh else current_flags()
    applied.flags = now
    _set_inductor(applied)
    set_flags(recipe_flags(now, applied.recipe.warn_only), now)


def _recipe_part(before: TorchFlags, now: TorchFlags) -> TorchFlags:
    """``now``, with the settings the recipe sets as they were ``before`` it."""
    return now._replace(**{name: getattr(before, name) for name in RECIPE_FIELDS})


def recipe_flags(now: TorchFlags, warn_only: bool) -> TorchFlags:
    """The torch settings a deterministic run has, from ``now``: ``RECIPE_FLAGS``, the
    ``fp32_precision`` ones where this torch has them (before 2.9 they read None)."""
    wanted = {
        name: value
        for name, value in RECIPE_FLAGS.items()
        if not name.endswith("fp32_precision") or getattr(now, name) is not None
    }
    return now._replace(**wanted, deterministic_algorithms_warn_only=warn_only)


def _set_inductor(applied: Applied) -> None:
    """Make torch.compile's kernels deterministic too, where its config is loaded."""
    config: Any = sys.modules.get(INDUCTOR_CONFIG)
    if config is None or applied.inductor is not None:
        return
    applied.inductor = bool(config.deterministic)
    config.deterministic = True


def _adopt(
    applied: Applied, sources: SourceSet, module: str, record: Record | None
) -> tuple[str, ...]:
    """Seed the sources whose library's import (``module``) has just finished, and set the
    flags."""
    if not applied.watching:  # undone already (an import in another thread)
        return ()
    names = []
    for source in sources.sources:
        if not source.seedable or source.name in applied.states:
            continue
        if import_module_of(source) != module:
            continue
        _seed(applied, sources, source, record)
        if source.name in applied.states:
            names.append(source.name)
    if module == "torch" and applied.flags is None:
        _set_flags(applied, sources, record)
    if module == INDUCTOR_CONFIG and applied.flags is not None:
        _set_inductor(applied)
    return tuple(names)


def undo(applied: Applied, sources: SourceSet, *, restore_sources: bool = True) -> list[str]:
    """Put back everything ``apply`` changed, exactly, unset variables included, and every
    torch setting the block changed; returns the names of the sources that could not be put
    back.  Without ``restore_sources`` the seeded sources, and the torch settings the recipe
    does not set, are left to whoever ``record`` told (the plugin: it puts back what the test
    changed as ``--rngguard-restore`` says)."""
    if applied.watcher is not None:
        applied.watcher.uninstall()
        applied.watcher = None
    if applied.listener is not None:
        listeners, imported = applied.listener
        with contextlib.suppress(ValueError):
            listeners.remove(imported)
        applied.listener = None
    for name, value in applied.env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if applied.flags is not None:
        now = current_flags()
        set_flags(applied.flags if restore_sources else _recipe_part(applied.flags, now), now)
    config: Any = sys.modules.get(INDUCTOR_CONFIG)
    if applied.inductor is not None and config is not None:
        config.deterministic = applied.inductor
    if not restore_sources:
        return []
    return sorted(sources.restore(applied.states).failed)


@contextlib.contextmanager
def deterministic(
    seed: int = 0,
    *,
    env: Mapping[str, str] | None = None,
    torch_flags: bool = True,
    warn_only: bool = False,
) -> Iterator[int]:
    """Run a block with every global RNG seeded and the determinism environment set.

    Seeds ``random``, NumPy's global generator, torch (CPU and every CUDA device, without
    initialising CUDA), TensorFlow and CuPy where loaded, and each of them the moment it is
    first imported inside the block; sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0``,
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, ``PYTHONHASHSEED=<seed mod 2**32>`` (for child
    processes) and ``env``; with ``torch_flags``, once torch is loaded, turns on deterministic
    algorithms (``warn_only`` as given) and the cuDNN flags, and makes float32 compute in
    float32: matmul precision ``"highest"``, TF32 off (``RECIPE_FLAGS``).  On exit, also on
    exception, all of it is put back, and every torch setting the block changed.  Yields the
    seed.
    """
    checked_seed, pairs = check_arguments(seed, env, torch_flags, warn_only)
    recipe = Recipe(checked_seed or 0, pairs, torch_flags, warn_only)
    sources = SourceSet(build_sources(()))
    applied = apply(recipe, sources)
    try:
        yield recipe.seed
    finally:
        undo(applied, sources)
