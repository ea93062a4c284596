"""The library form of the leak guard: ``snapshot()``, ``Snapshot.diff``/``restore``,
``guard()``, ``isolated()``, ``register_source()`` and sources from entry points."""

from __future__ import annotations

import importlib.metadata
import os
import random
import subprocess
import sys
import textwrap
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.random  # NumPy 2 loads it lazily: the numpy source watches it
import pytest

import pytest_rngguard
from pytest_rngguard import (
    Change,
    Difference,
    RNGLeakError,
    Seeder,
    Snapshot,
    guard,
    isolated,
    register_source,
    snapshot,
)
from pytest_rngguard import sources as registry
from pytest_rngguard.sources import ADVANCED, CHANGED, REPLACED, RESEEDED, ModuleSource
from pytest_rngguard.sources.env import DEFAULT_VARIABLES

try:
    import torch
except ImportError:  # the 3.10, 3.12 and 3.13 CI environments have no torch
    torch = None  # type: ignore[assignment]

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def legacy_numpy_state() -> Any:
    """NumPy's global state, the legacy tuple it is at run time (its stubs say a dict)."""
    return np.random.get_state()


@pytest.fixture
def no_registered_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """``register_source`` is process-wide: start and end each test with none registered."""
    monkeypatch.setattr(registry, "_registered", [])


# A third-party source: one integer that a fictional library keeps as its global seed.
COUNTER = {"value": 1}


class CounterSource(ModuleSource):
    name = "counter"
    module = __name__

    def capture(self) -> int:
        return COUNTER["value"]

    def restore(self, state: int) -> None:
        COUNTER["value"] = state

    def seed(self, seed: int) -> None:
        COUNTER["value"] = seed

    def classify(self, before: Any, after: Any) -> list[Difference]:
        if before is not None and after > before:
            return [Difference(ADVANCED)]
        return [Difference(RESEEDED if after == 0 else REPLACED)]


def seed_numpy_like_a_library() -> None:
    np.random.seed(1234)


SEED_LINE = seed_numpy_like_a_library.__code__.co_firstlineno + 1


def printed_by_a_fresh_interpreter(code: str) -> str:
    """What ``code`` prints in a new Python process, where nothing is imported yet."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


# -- snapshot() ------------------------------------------------------------------------------


def test_snapshot_captures_every_available_source() -> None:
    taken = snapshot()
    if torch is None:  # torch's sources are not available, so not captured
        assert {"random", "numpy", "env"} <= set(taken)
        assert not {"torch", "torch.cuda", "torch.flags"} & set(taken)
        assert len(taken) == len(list(taken))
        assert repr(taken).startswith("<Snapshot of random, numpy, env")
    else:
        assert {"random", "numpy", "torch", "env", "torch.flags"} <= set(taken)
        assert ("torch.cuda" in taken) == torch.backends.cuda.is_built()
        assert len(taken) == len(list(taken))
        assert repr(taken).startswith("<Snapshot of random, numpy, torch")


def test_snapshot_of_unchanged_state_has_no_differences() -> None:
    before = snapshot()
    assert before.diff(snapshot()) == []


def test_snapshot_does_not_change_what_it_captures() -> None:
    python, numpy_state = random.getstate(), legacy_numpy_state()
    snapshot().restore()
    assert random.getstate() == python
    assert np.array_equal(legacy_numpy_state()[1], numpy_state[1])


def test_diff_lists_each_changed_source_with_its_kind_and_detail() -> None:
    before = snapshot()
    random.seed(5)
    np.random.rand(3)
    if torch is not None:
        torch.manual_seed(5)
    os.environ["CUDA_LAUNCH_BLOCKING"] = (
        "1" if os.environ.get("CUDA_LAUNCH_BLOCKING") != "1" else "0"
    )
    changes = before.diff(snapshot())
    before.restore()
    rows = [(c.source, c.kind, c.detail) for c in changes]
    assert ("random", RESEEDED, "") in rows
    assert ("numpy", ADVANCED, "") in rows
    assert ("torch", RESEEDED, "") in rows or torch is None
    assert ("env", CHANGED, "CUDA_LAUNCH_BLOCKING") in rows
    assert all(isinstance(c, Change) and c.origin is None for c in changes)


def test_restore_puts_every_source_back() -> None:
    python = random.getstate()
    torch_state = torch.get_rng_state() if torch is not None else None
    environ = {name: os.environ.get(name) for name in DEFAULT_VARIABLES}
    before = snapshot()
    random.seed(1)
    np.random.seed(1)
    if torch is not None:
        torch.manual_seed(1)
    os.environ["PYTHONHASHSEED"] = "123"
    os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    before.restore()
    assert before.diff(snapshot()) == []
    assert random.getstate() == python
    if torch_state is not None:
        assert torch.equal(torch.get_rng_state(), torch_state)
    assert {name: os.environ.get(name) for name in DEFAULT_VARIABLES} == environ


def test_diff_reports_a_seeded_source_that_was_not_captured_before() -> None:
    sources = registry.build_sources(DEFAULT_VARIABLES)
    full = Snapshot.capture(sources)
    without_numpy = Snapshot(sources, {k: v for k, v in full.items() if k != "numpy"})
    np.random.seed(3)
    changes = without_numpy.diff(Snapshot.capture(sources))
    full.restore()
    assert [(c.source, c.kind) for c in changes] == [("numpy", RESEEDED)]


@needs_torch
def test_snapshot_with_given_sources_captures_only_those() -> None:
    sources = [s for s in registry.build_sources(()) if s.name in ("random", "torch")]
    assert set(snapshot(sources)) == {"random", "torch"}


def test_snapshot_never_imports_a_library_the_user_did_not() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pytest_rngguard
        taken = pytest_rngguard.snapshot()
        with pytest_rngguard.isolated():
            pass
        loaded = {"numpy", "torch", "tensorflow", "cupy"} & set(sys.modules)
        print(sorted(taken), sorted(loaded))
        """
    )
    assert printed_by_a_fresh_interpreter(code) == "['env', 'random'] []"


# -- guard() ---------------------------------------------------------------------------------


def test_guard_raises_an_assertion_error_naming_the_line_that_seeded() -> None:
    before = legacy_numpy_state()
    with pytest.raises(RNGLeakError) as raised, guard():
        seed_numpy_like_a_library()
    assert isinstance(raised.value, AssertionError)
    message = str(raised.value)
    assert "numpy reseeded" in message
    assert f"test_snapshot_and_guard.py:{SEED_LINE} in seed_numpy_like_a_library" in message
    assert np.array_equal(legacy_numpy_state()[1], before[1])  # put back before raising


def test_guard_names_the_environment_variable_that_was_set() -> None:
    os.environ.pop("PL_GLOBAL_SEED", None)
    leak = r"env\[PL_GLOBAL_SEED\] changed.*unset -> '7'"
    with pytest.raises(RNGLeakError, match=leak), guard(label="seed_everything"):
        os.environ["PL_GLOBAL_SEED"] = "7"
    assert "PL_GLOBAL_SEED" not in os.environ


@needs_torch
def test_guard_uses_the_label_in_its_message() -> None:
    leak = r"^building the model changed global random state"
    with pytest.raises(RNGLeakError, match=leak), guard(label="building the model"):
        torch.manual_seed(3)


def test_guard_passes_a_block_that_only_draws_numbers() -> None:
    with guard():
        random.random()
        np.random.rand(10)
        if torch is not None:
            torch.rand(10)


def test_guard_strict_flags_a_block_that_only_draws_numbers() -> None:
    before = random.getstate()
    with pytest.raises(RNGLeakError, match="random advanced"), guard(strict=True):
        random.random()
    assert random.getstate() == before


def test_guard_passes_a_block_that_puts_back_what_it_changed() -> None:
    with guard():
        state = random.getstate()
        random.seed(3)
        random.setstate(state)


@needs_torch
@pytest.mark.allow_rng_leak("torch", reason="guard(restore=False) leaves the reseed on purpose")
def test_guard_without_restore_leaves_the_change() -> None:
    before = torch.get_rng_state()
    try:
        torch.manual_seed(5)
        with pytest.raises(RNGLeakError), guard(restore=False):
            torch.manual_seed(6)
        assert torch.initial_seed() == 6
    finally:
        torch.set_rng_state(before)


@needs_torch
@pytest.mark.allow_rng_leak("torch", reason="seeds torch first, to fail the same in any order")
def test_guard_passes_a_block_that_forks_the_torch_rng_and_puts_it_back() -> None:
    before = torch.get_rng_state()
    torch.manual_seed(0)  # as pytest-randomly or a fixture would
    try:
        with guard(), torch.random.fork_rng():
            torch.manual_seed(1)
            torch.rand(5)
    finally:
        torch.set_rng_state(before)


def test_guard_lets_an_exception_from_the_block_through_and_still_restores() -> None:
    before = random.getstate()

    def seed_then_fail() -> None:
        random.seed(9)
        1 / 0  # noqa: B018

    with pytest.raises(ZeroDivisionError), guard():
        seed_then_fail()
    assert random.getstate() == before


def test_guard_leaves_no_wrapper_behind() -> None:
    def seeding_functions() -> tuple[Any, ...]:
        torch_seed = (torch.manual_seed,) if torch is not None else ()
        return (random.seed, np.random.seed, *torch_seed, os.putenv)

    seeders = seeding_functions()
    meta_path = list(sys.meta_path)
    with pytest.raises(RNGLeakError), guard():
        np.random.seed(1)
    assert seeding_functions() == seeders
    assert sys.meta_path == meta_path


# -- isolated() ------------------------------------------------------------------------------


def test_isolated_puts_everything_back_on_exit() -> None:
    python = random.getstate()
    torch_state = torch.get_rng_state() if torch is not None else None
    with isolated() as taken:
        assert isinstance(taken, Snapshot)
        random.seed(1)
        if torch is not None:
            torch.manual_seed(1)
        os.environ["TF_DETERMINISTIC_OPS"] = "1"
    assert random.getstate() == python
    if torch_state is not None:
        assert torch.equal(torch.get_rng_state(), torch_state)
    assert taken.diff(snapshot()) == []


def test_isolated_puts_everything_back_on_exception() -> None:
    numpy_state = legacy_numpy_state()
    os.environ.pop("HCCL_DETERMINISTIC", None)

    def seed_then_fail() -> None:
        np.random.seed(2)
        os.environ["HCCL_DETERMINISTIC"] = "1"
        raise KeyError("boom")

    with pytest.raises(KeyError), isolated():
        seed_then_fail()
    assert np.array_equal(legacy_numpy_state()[1], numpy_state[1])
    assert "HCCL_DETERMINISTIC" not in os.environ


@needs_torch
def test_isolated_never_initialises_cuda() -> None:
    started = torch.cuda.is_initialized()
    with isolated():
        torch.manual_seed(3)
    assert torch.cuda.is_initialized() == started


# -- register_source() -----------------------------------------------------------------------


@pytest.mark.usefixtures("no_registered_sources")
def test_a_registered_source_is_snapshotted_guarded_and_restored() -> None:
    source = CounterSource()
    assert register_source(source) is source
    COUNTER["value"] = 5
    taken = snapshot()
    assert taken["counter"] == 5
    with pytest.raises(RNGLeakError, match="counter reseeded"), guard():
        COUNTER["value"] = 0
    assert COUNTER["value"] == 5
    with isolated():
        COUNTER["value"] = 8
    assert COUNTER["value"] == 5
    COUNTER["value"] = 9
    assert [(c.source, c.kind) for c in taken.diff(snapshot())] == [("counter", ADVANCED)]
    taken.restore()
    assert COUNTER["value"] == 5


@pytest.mark.usefixtures("no_registered_sources")
def test_registering_a_source_again_by_name_replaces_it() -> None:
    first, second = CounterSource(), CounterSource()
    register_source(first)
    register_source(second)
    assert [s for s in registry.build_sources(()) if s.name == "counter"] == [second]
    assert "counter" in registry.known_names()


@pytest.mark.usefixtures("no_registered_sources")
def test_register_source_refuses_an_object_that_is_not_a_source() -> None:
    with pytest.raises(TypeError, match=r"pytest_rngguard\.sources\.Source"):
        register_source(object())  # type: ignore[arg-type]
    assert registry.known_names() == list(registry.BUILTIN_NAMES)


@pytest.mark.usefixtures("no_registered_sources")
@pytest.mark.parametrize("name", ["", "numpy", "torch.cuda", "env"])
def test_register_source_refuses_an_empty_or_builtin_name(name: str) -> None:
    source = CounterSource()
    source.name = name
    with pytest.raises(ValueError, match="empty or built in"):
        register_source(source)


# -- entry points ----------------------------------------------------------------------------


def _install(folder: Path, name: str, text: str) -> None:
    """A distribution, as pip leaves one: ``<name>-1.0.dist-info`` with its entry points."""
    info = folder / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(text)


def _entry_points(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, values: Sequence[tuple[str, str]]
) -> None:
    """Install a distribution that declares ``values`` as source entry points, next to one
    that declares only entry points of other groups."""
    lines = "".join(f"{name} = {value}\n" for name, value in values)
    _install(
        tmp_path,
        "rngguard_probe",
        f"[console_scripts]\nprobe = os:getcwd\n\n[{registry.ENTRY_POINT_GROUP}]\n{lines}",
    )
    _install(tmp_path, "rngguard_other", "[pytest11]\nother = os\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def broken_factory() -> CounterSource:
    raise RuntimeError("the library is not configured")


def test_a_source_from_an_entry_point_is_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _entry_points(monkeypatch, tmp_path, [("counter", f"{__name__}:CounterSource")])
    names = [s.name for s in registry.build_sources(())]
    assert names[-1] == "counter"
    assert names.count("counter") == 1


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("no_such_module_for_rngguard:Source", "ModuleNotFoundError"),
        (f"{__name__}:no_such_attribute", "AttributeError"),
        ("os:sep", "TypeError"),
        (f"{__name__}:COUNTER", "TypeError"),
        (f"{__name__}:broken_factory", "the library is not configured"),
    ],
)
def test_an_entry_point_that_cannot_be_loaded_is_a_warning_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, why: str
) -> None:
    counter = ("counter", f"{__name__}:CounterSource")
    _entry_points(monkeypatch, tmp_path, [("broken", value), counter])
    with pytest.warns(UserWarning, match=r"source entry point 'broken' .* skipped") as caught:
        names = [s.name for s in registry.build_sources(())]
    assert why in str(caught[0].message)
    assert "broken" not in names
    assert names[-1] == "counter"


def test_an_entry_point_cannot_replace_a_builtin_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _entry_points(monkeypatch, tmp_path, [("numpy", "pytest_rngguard.sources.env:EnvSource")])
    sources = registry.build_sources(())
    assert [s.name for s in sources] == list(registry.BUILTIN_NAMES)
    assert type(sources[1]).__name__ == "NumpySource"


def test_entry_points_are_found_as_importlib_metadata_finds_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The first copy of a distribution on sys.path shadows later ones, also where only the
    # later one declares sources; the group is matched as a section, not as text anywhere.
    group = registry.ENTRY_POINT_GROUP
    _install(tmp_path / "first", "rngguard_shadowed", "[pytest11]\nshadowed = os\n")
    _install(tmp_path / "later", "rngguard_shadowed", f"[{group}]\nhidden = os:sep\n")
    _install(tmp_path / "first", "rngguard_two", f"[{group}]\na = os:sep\nb = os:getcwd\n")
    _install(tmp_path / "first", "rngguard_comment", f"# not [{group}]\n[other]\nc = os\n")
    for folder in ("later", "first"):
        monkeypatch.syspath_prepend(str(tmp_path / folder))
    expected = importlib.metadata.entry_points(group=group)
    assert [(e.name, e.value) for e in expected] == [("a", "os:sep"), ("b", "os:getcwd")]
    assert list(registry._entry_points()) == list(expected)


def test_the_public_api_is_what_the_spec_names() -> None:
    assert set(pytest_rngguard.__all__) >= {
        "snapshot",
        "Snapshot",
        "guard",
        "isolated",
        "deterministic",
        "assert_reproducible",
        "register_source",
        "RNGLeakWarning",
        "RNGLeakError",
    }
    assert issubclass(pytest_rngguard.RNGLeakWarning, pytest.PytestWarning)
    assert issubclass(RNGLeakError, AssertionError)


def test_every_public_name_is_the_api_even_after_every_module_is_loaded() -> None:
    # The names load lazily; a submodule of the same name must never shadow one.
    for module in (
        "determinism",
        "guards",
        "monitor",
        "plugin",
        "report",
        "reproducibility",
        "settings",
        "snapshots",
        "sources",
    ):
        importlib.import_module(f"pytest_rngguard.{module}")
    for name in pytest_rngguard.__all__:
        value = getattr(pytest_rngguard, name)
        assert not isinstance(value, type(pytest_rngguard)), name
    assert pytest_rngguard.snapshot is pytest_rngguard.guards.snapshot
    assert pytest_rngguard.guard is pytest_rngguard.guards.guard
    assert set(pytest_rngguard.__all__) <= set(dir(pytest_rngguard))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        pytest_rngguard.nothing_here  # noqa: B018


def test_the_sources_submodule_is_an_attribute_of_a_freshly_imported_package() -> None:
    code = (
        "import pytest_rngguard; "
        "print(pytest_rngguard.sources.Source is pytest_rngguard.Source, "
        "'sources' in dir(pytest_rngguard))"
    )
    assert printed_by_a_fresh_interpreter(code) == "True True"


def test_importing_the_plugin_loads_no_heavy_library_and_no_optional_part() -> None:
    code = (
        "import sys, pytest_rngguard.plugin; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'numpy', 'torch', 'tensorflow', 'cupy', 'hypothesis'} or m in "
        "{'pytest_rngguard.determinism', 'pytest_rngguard.reproducibility', "
        "'pytest_rngguard.report', 'pytest_rngguard.monitor'}))"
    )
    assert printed_by_a_fresh_interpreter(code) == "[]"


NESTED_LIBRARY = "rngguard_nested_rng_library"


class NestedLibrarySource(ModuleSource):
    """One of two generators of a library whose ``seed_all`` seeds the other through its
    public ``seed_inner``, as ``torch.manual_seed`` seeds ``torch.cuda``."""

    module = NESTED_LIBRARY

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self._target = target

    def capture(self) -> Any:
        return sys.modules[NESTED_LIBRARY].STATE[self.name]

    def restore(self, state: Any) -> None:
        sys.modules[NESTED_LIBRARY].STATE[self.name] = state

    def seed(self, seed: int) -> None:
        self.restore(seed)

    def classify(self, before: Any, after: Any) -> list[Difference]:
        return [Difference(RESEEDED)]

    def seeders(self) -> Sequence[Seeder]:
        return (Seeder(NESTED_LIBRARY, self._target, RESEEDED),)


@pytest.mark.usefixtures("no_registered_sources")
def test_a_seeder_called_inside_another_seeder_is_blamed_on_the_users_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    library = types.ModuleType(NESTED_LIBRARY)
    exec(  # the library's own code, with its own module name in its frames
        textwrap.dedent(
            """
            STATE = {"nested.outer": 0, "nested.inner": 0}

            def seed_inner(value):
                STATE["nested.inner"] = value

            def seed_all(value):
                STATE["nested.outer"] = value
                seed_inner(value)  # through the module: the wrapped function
            """
        ),
        library.__dict__,
    )
    monkeypatch.setitem(sys.modules, NESTED_LIBRARY, library)
    register_source(NestedLibrarySource("nested.outer", "seed_all"))
    register_source(NestedLibrarySource("nested.inner", "seed_inner"))
    line = sys._getframe().f_lineno + 2
    with pytest.raises(RNGLeakError) as raised, guard():
        library.seed_all(7)
    message = str(raised.value)
    assert "nested.outer reseeded during call at " in message
    assert message.count(f"test_snapshot_and_guard.py:{line} in ") == 2, message
