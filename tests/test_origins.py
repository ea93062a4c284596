"""Who changed a source: the wrappers on seeding functions, the import watcher, origins, paths
as users read them, and ignore rules."""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import os
import random
import sys
import sysconfig
import textwrap
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.random  # NumPy 2 loads it lazily: the numpy source watches it
import pytest

from pytest_rngguard.origins import (
    IgnoreRules,
    ImportWatcher,
    Interceptor,
    Origin,
    PathShortener,
    build_origin,
    caller_frame,
    origin_from_traceback,
)
from pytest_rngguard.settings import DEFAULT_IGNORE
from pytest_rngguard.sources import CHANGED, RESEEDED, ModuleSource, Seeder, Source
from pytest_rngguard.sources.base import Detail
from pytest_rngguard.sources.env import EnvSource
from pytest_rngguard.sources.numpy import NumpySource
from pytest_rngguard.sources.python_random import PythonRandomSource
from pytest_rngguard.sources.torch import TorchSource
from pytest_rngguard.sources.torch_flags import TorchFlagsSource

try:
    import torch
except ImportError:  # the 3.10, 3.12 and 3.13 CI environments have no torch
    torch = None  # type: ignore[assignment]

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

FAKE = "rngguard_fake_rng_library"


class Calls:
    """A monitor stand-in: records each intercepted call and makes it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(
        self,
        original: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        source: Source,
        seeder: Seeder,
        detail: Detail,
    ) -> Any:
        self.seen.append((source.name, seeder.target, args, kwargs))
        return original(*args, **kwargs)


class FakeSource(ModuleSource):
    name = "fake"
    module = FAKE

    def capture(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        pass

    def seed(self, seed: int) -> None:
        pass

    def classify(self, before: Any, after: Any) -> list[Any]:
        return []

    def seeders(self) -> Sequence[Seeder]:
        return (
            Seeder(FAKE, "seed", RESEEDED),
            Seeder(FAKE, "config.set_flag", CHANGED),
            Seeder(FAKE, "not_there", RESEEDED),
            Seeder("rngguard_library_nobody_imported", "seed", RESEEDED),
        )


@pytest.fixture
def fake_library(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType(FAKE)
    exec(  # a library's own code, with its own module name in its frames
        textwrap.dedent(
            """
            import types

            STATE = {"seed": None, "flag": False}

            def seed(value: int, *, deep: bool = False) -> tuple[str, int]:
                '''Seed the fake generator.'''
                STATE["seed"] = value
                return ("seeded", value)

            def set_flag(on: bool) -> bool:
                STATE["flag"] = on
                return on

            config = types.SimpleNamespace(set_flag=set_flag)
            """
        ),
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, FAKE, module)
    return module


@pytest.fixture
def interceptor() -> Iterator[tuple[Interceptor, Calls]]:
    calls = Calls()
    made = Interceptor(calls)
    yield made, calls
    made.uninstall()


# -- Interceptor -----------------------------------------------------------------------------


def test_wrappers_look_like_the_originals_and_return_what_they_return(
    fake_library: types.ModuleType, interceptor: tuple[Interceptor, Calls]
) -> None:
    made, calls = interceptor
    original = fake_library.seed
    made.install([FakeSource()])
    wrapper = fake_library.seed
    assert wrapper is not original
    assert wrapper.__wrapped__ is original
    assert (wrapper.__name__, wrapper.__qualname__, wrapper.__doc__) == (
        "seed",
        "seed",
        "Seed the fake generator.",
    )
    assert inspect.signature(wrapper) == inspect.signature(original)
    assert wrapper(5, deep=True) == ("seeded", 5)
    assert fake_library.STATE["seed"] == 5
    assert calls.seen == [("fake", "seed", (5,), {"deep": True})]


def test_a_dotted_target_is_wrapped_on_its_owner(
    fake_library: types.ModuleType, interceptor: tuple[Interceptor, Calls]
) -> None:
    made, calls = interceptor
    original = fake_library.config.set_flag
    made.install([FakeSource()])
    assert fake_library.config.set_flag is not original
    assert fake_library.config.set_flag(True) is True
    assert calls.seen == [("fake", "config.set_flag", (True,), {})]
    made.uninstall()
    assert fake_library.config.set_flag is original


def test_uninstall_puts_back_the_exact_original_objects(
    fake_library: types.ModuleType, interceptor: tuple[Interceptor, Calls]
) -> None:
    made, _ = interceptor
    before = dict(vars(fake_library))
    made.install([FakeSource()])
    made.uninstall()
    assert vars(fake_library) == before
    assert all(vars(fake_library)[name] is value for name, value in before.items())
    assert made.installed() == []


def test_installing_again_does_not_wrap_twice(
    fake_library: types.ModuleType, interceptor: tuple[Interceptor, Calls]
) -> None:
    made, calls = interceptor
    original = fake_library.seed
    made.install([FakeSource()])
    made.install([FakeSource()])
    assert fake_library.seed.__wrapped__ is original
    fake_library.seed(1)
    assert len(calls.seen) == 1


def test_uninstall_leaves_alone_what_someone_else_replaced_since(
    fake_library: types.ModuleType, interceptor: tuple[Interceptor, Calls]
) -> None:
    made, _ = interceptor
    made.install([FakeSource()])

    def replacement(value: int) -> None:
        pass

    library: Any = fake_library
    library.seed = replacement
    made.uninstall()
    assert library.seed is replacement


def test_seeders_of_libraries_not_loaded_are_skipped_without_importing_them(
    fake_library: types.ModuleType, interceptor: tuple[Interceptor, Calls]
) -> None:
    made, _ = interceptor
    made.install([FakeSource()])
    assert "rngguard_library_nobody_imported" not in sys.modules
    assert sorted(attr for _, attr, _, _ in made.installed()) == ["seed", "set_flag"]


@needs_torch
@pytest.mark.allow_rng_leak(
    "torch",
    reason="bug: torch.set_rng_state back to the state it had is reported as replaced (see "
    "test_sources.py::test_torch_state_put_back_by_fork_rng_is_captured_unchanged)",
)
def test_wrappers_of_the_real_seeding_functions_keep_name_signature_and_result(
    interceptor: tuple[Interceptor, Calls],
) -> None:
    made, calls = interceptor
    sources: list[Source] = [
        PythonRandomSource(),
        NumpySource(),
        TorchSource(),
        TorchFlagsSource(),
        EnvSource(["RNGGUARD_TEST_WATCHED"]),
    ]
    owners = {
        "random": random,
        "numpy.random": np.random,
        "numpy.random.mtrand": np.random.mtrand,
        "torch": torch,
        "torch.random": torch.random,
        "os": os,
    }
    before = {
        (module, attr): getattr(owner, attr)
        for module, owner in owners.items()
        for attr in ("seed", "setstate", "set_state", "manual_seed", "set_rng_state", "putenv")
        if hasattr(owner, attr)
    }
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    made.install(sources)
    try:
        for (module, attr), original in before.items():
            wrapper = getattr(owners[module], attr)
            assert wrapper is not original, f"{module}.{attr} is not wrapped"
            assert wrapper.__wrapped__ is original
            assert wrapper.__name__ == original.__name__
            if hasattr(original, "__self__"):
                assert wrapper.__self__ is original.__self__
            try:
                expected = inspect.signature(original)
            except ValueError:  # a builtin without a signature: the wrapper has none either
                with pytest.raises(ValueError, match="no signature found"):
                    inspect.signature(wrapper)
            else:
                assert inspect.signature(wrapper) == expected
        assert torch.manual_seed(3) is torch.default_generator
        assert random.seed(3) is None
        assert np.random.seed(3) is None
        os.environ["RNGGUARD_TEST_WATCHED"] = "1"  # os.environ calls os.putenv
        del os.environ["RNGGUARD_TEST_WATCHED"]
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        made.uninstall()
    assert [(name, target) for name, target, _, _ in calls.seen] == [
        ("torch", "manual_seed"),
        ("random", "seed"),
        ("numpy", "seed"),
        ("env", "putenv"),
        ("env", "unsetenv"),
        ("random", "setstate"),
        ("numpy", "set_state"),
        ("torch", "set_rng_state"),
    ]
    for (module, attr), original in before.items():
        assert getattr(owners[module], attr) is original, f"{module}.{attr} was not put back"


# -- ImportWatcher ---------------------------------------------------------------------------


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for modules made in the test; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("rngguard_watched_"):
            del sys.modules[name]


def test_the_import_watcher_reports_a_watched_import_and_leaves_no_trace(
    module_dir: Path,
) -> None:
    (module_dir / "rngguard_watched_a.py").write_text("VALUE = 1\n", encoding="utf-8")
    importlib.invalidate_caches()
    seen: list[str] = []
    watcher = ImportWatcher({"rngguard_watched_a"}, seen.append)
    meta_path = list(sys.meta_path)
    watcher.install()
    watcher.install()
    try:
        assert sys.meta_path[0] is watcher
        assert sys.meta_path.count(watcher) == 1
        module = importlib.import_module("rngguard_watched_a")
    finally:
        watcher.uninstall()
    assert seen == ["rngguard_watched_a"]
    assert module.VALUE == 1
    assert type(module.__loader__) is importlib.machinery.SourceFileLoader
    assert "exec_module" not in vars(module.__loader__)
    assert module.__spec__ is not None
    assert module.__spec__.loader is module.__loader__
    assert len(sys.meta_path) == len(meta_path)
    assert all(a is b for a, b in zip(sys.meta_path, meta_path, strict=True))
    watcher.uninstall()  # a second uninstall is harmless


def test_the_import_watcher_ignores_modules_it_does_not_watch(module_dir: Path) -> None:
    (module_dir / "rngguard_watched_b.py").write_text("VALUE = 2\n", encoding="utf-8")
    importlib.invalidate_caches()
    seen: list[str] = []
    watcher = ImportWatcher({"rngguard_watched_a"}, seen.append)
    assert watcher.find_spec("rngguard_watched_b", None) is None
    watcher.install()
    try:
        module = importlib.import_module("rngguard_watched_b")
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("rngguard_watched_a")  # watched, but nowhere to be found
    finally:
        watcher.uninstall()
    assert module.VALUE == 2
    assert seen == []


def test_the_import_watcher_reports_after_the_module_ran(module_dir: Path) -> None:
    (module_dir / "rngguard_watched_c.py").write_text("import sys\nREADY = True\n", "utf-8")
    importlib.invalidate_caches()
    ready: list[bool] = []
    watcher = ImportWatcher(
        {"rngguard_watched_c"}, lambda name: ready.append(sys.modules[name].READY)
    )
    watcher.install()
    try:
        importlib.import_module("rngguard_watched_c")
    finally:
        watcher.uninstall()
    assert ready == [True]


# -- origins ---------------------------------------------------------------------------------


def library_frame() -> types.FrameType:
    """A frame of code whose module is ``fakelib.seeding``, called from here."""
    namespace: dict[str, Any] = {"__name__": "fakelib.seeding", "sys": sys}
    exec("def set_seed():\n    return sys._getframe()\n", namespace)
    frame: types.FrameType = namespace["set_seed"]()
    return frame


def test_caller_frame_walks_out_of_the_library() -> None:
    frame = library_frame()
    assert frame.f_back is not None
    assert caller_frame(frame, "fakelib") is frame.f_back
    assert caller_frame(frame, "numpy") is frame
    assert caller_frame(frame, "fake") is frame  # a prefix of the name is another library


def test_build_origin_names_file_line_function_and_stack() -> None:
    frame = sys._getframe()
    line = frame.f_lineno
    origin = build_origin(frame, PathShortener(Path(__file__).parent))
    assert origin.file == "test_origins.py"
    assert origin.function == "test_build_origin_names_file_line_function_and_stack"
    assert origin.module == __name__
    assert origin.line == line + 1
    assert origin.location == f"test_origins.py:{line + 1} in {origin.function}"
    assert origin.stack[-1] == origin.location
    assert len(origin.stack) == 1  # the stack ends where pytest's frames begin


def test_origin_round_trips_through_json() -> None:
    origin = Origin("a.py", 3, "f", "a", ("t.py:1 in test", "a.py:3 in f"))
    data = origin.to_json()
    assert data == {"file": "a.py", "line": 3, "function": "f", "stack": list(origin.stack)}
    assert Origin.from_json(data) == Origin("a.py", 3, "f", "", origin.stack)


def test_origin_from_traceback_finds_the_last_frame_outside_torch() -> None:
    torch_frame = (
        f'  File "{os.sep}site{os.sep}torch{os.sep}random.py", line 46, in manual_seed\n'
        "    torch.cuda.manual_seed_all(seed)\n"
    )
    lines = [*traceback.format_stack(), torch_frame]
    line = sys._getframe().f_lineno - 1
    origin = origin_from_traceback(lines, lambda path: os.path.basename(path))
    assert origin is not None
    assert (origin.file, origin.line, origin.function) == (
        "test_origins.py",
        line,
        "test_origin_from_traceback_finds_the_last_frame_outside_torch",
    )
    assert origin_from_traceback([torch_frame], str) is None


# -- PathShortener ---------------------------------------------------------------------------


def test_paths_under_the_rootdir_are_relative_to_it(tmp_path: Path) -> None:
    shorten = PathShortener(tmp_path)
    assert shorten(str(tmp_path / "tests" / "test_llm.py")) == os.path.join("tests", "test_llm.py")
    assert shorten(str(tmp_path) + "x" + os.sep + "a.py") == str(tmp_path) + "x" + os.sep + "a.py"


def test_paths_in_site_packages_start_at_the_package(tmp_path: Path) -> None:
    shorten = PathShortener(tmp_path)
    assert shorten(np.__file__) == os.path.join("numpy", "__init__.py")
    if torch is not None:
        assert shorten(torch.random.__file__) == os.path.join("torch", "random.py")
    elsewhere = os.path.join(os.sep, "opt", "py", "lib", "site-packages", "vllm", "engine.py")
    assert shorten(elsewhere) == os.path.join("vllm", "engine.py")


def test_paths_in_the_standard_library_start_at_the_module() -> None:
    assert PathShortener()(random.__file__) == "random.py"


def test_other_paths_are_left_as_they_are(tmp_path: Path) -> None:
    other = os.path.join(os.sep, "somewhere", "else", "tool.py")
    assert PathShortener(tmp_path)(other) == other
    assert PathShortener()(other) == other


def test_paths_in_a_virtual_environment_inside_the_rootdir_start_at_the_package() -> None:
    purelib = Path(sysconfig.get_paths()["purelib"])
    environment_root = purelib.parents[2]  # <venv>/lib/python3.X/site-packages
    assert PathShortener(environment_root)(np.__file__) == os.path.join("numpy", "__init__.py")


# -- IgnoreRules -----------------------------------------------------------------------------


def test_the_default_rules_ignore_pytest_randomly_and_hypothesis_only() -> None:
    ignored = IgnoreRules(DEFAULT_IGNORE)
    for module in ("pytest_randomly", "hypothesis", "hypothesis.internal.entropy"):
        assert ignored(module), module
    for module in ("pytest_randomly_extra", "hypothesisx", "my.hypothesis", "tests.test_x", ""):
        assert not ignored(module), module


@pytest.mark.parametrize(
    ("pattern", "module", "ignored"),
    [
        ("vllm.*", "vllm.worker.seed", True),
        ("vllm.*", "vllm", False),
        ("*.seeding", "lib.utils.seeding", True),
        ("lib?", "lib2", True),
        ("lib[0-9]", "libx", False),
        ("Hypothesis", "hypothesis", False),
    ],
)
def test_ignore_patterns_are_case_sensitive_fnmatch_patterns(
    pattern: str, module: str, ignored: bool
) -> None:
    assert IgnoreRules([pattern])(module) is ignored
