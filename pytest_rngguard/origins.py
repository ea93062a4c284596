"""Who changed a source: interception of seeding calls, an opt-in tracer, and call origins.

By default the Python-level seeding functions (``random.seed``, ``np.random.seed``,
``torch.manual_seed``, ...) are replaced, for the session only, by thin wrappers that tell
the monitor about each call.  The wrappers are built with :func:`functools.wraps` (same
``__name__``, ``__doc__``, ``__wrapped__`` and so the same ``inspect.signature``) and return
exactly what the original returns.  ``--rngguard-trace`` adds a tracer that sees every call,
including names bound before the session started and calls made from C, and checks the
sources after every line of user code, to name the line after which a change no call explains
was made (:mod:`pytest_rngguard.linetrace`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import os
import sys
import sysconfig
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from .sources.base import Detail, Seeder, Source, library_of

if TYPE_CHECKING:
    from .linetrace import LineTracer

_OWN_PACKAGE = __name__.rpartition(".")[0]
#: Frames of these modules end the stack shown under an origin: they are the test runner.
_RUNNER_PREFIXES = ("_pytest", "pluggy", "pytest", "xdist", "execnet", _OWN_PACKAGE)
MAX_STACK = 8


@dataclasses.dataclass(frozen=True)
class Origin:
    """The call that changed a source: the frame that called into the RNG library."""

    file: str
    line: int
    function: str
    module: str
    #: From the outermost frame of user code down to the origin, as ``path:line in name``.
    stack: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line} in {self.function}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "stack": list(self.stack),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Origin:
        return cls(data["file"], data["line"], data["function"], "", tuple(data["stack"]))


class PathShortener:
    """Paths as a user reads them: relative to the rootdir, or from the package in
    site-packages (``transformers/trainer_utils.py``)."""

    def __init__(self, rootdir: str | os.PathLike[str] | None = None) -> None:
        paths = sysconfig.get_paths()
        prefixes = {paths.get("purelib"), paths.get("platlib"), paths.get("stdlib")}
        if rootdir is not None:
            prefixes.add(os.path.abspath(rootdir))
        # Longest first: a virtual environment inside the project shortens to the package
        # (``numpy/random/...``), not to ``.venv/lib/python3.11/site-packages/numpy/...``.
        self._prefixes = sorted((p + os.sep for p in prefixes if p), key=len, reverse=True)

    @functools.cache  # noqa: B019 - one shortener per session, paths are few
    def __call__(self, path: str) -> str:
        marker = f"{os.sep}site-packages{os.sep}"
        for prefix in self._prefixes:
            if path.startswith(prefix):
                rest = path[len(prefix) :]
                # Another environment's site-packages under the rootdir: from the package.
                return rest.split(marker, 1)[1] if marker in os.sep + rest else rest
        if marker in path:
            return path.split(marker, 1)[1]
        return path


class IgnoreRules:
    """``rngguard_ignore``: module patterns (fnmatch) whose state changes are not leaks."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)

    @functools.cache  # noqa: B019 - one set of rules per session, modules are few
    def __call__(self, module: str) -> bool:
        return any(fnmatch.fnmatchcase(module, p) for p in self.patterns)


def _module_of(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


#: Modules whose frames never name an origin: the test runner.  A seeding call made from one
#: of them (pytest-randomly's, through its hooks) names the plugin that called it.
_SKIPPED = ("_pytest", "pytest", "pluggy")


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple({p + os.sep for p in (paths.get("stdlib"), paths.get("platstdlib")) if p})


_STDLIB_DIRS = _stdlib_dirs()


@functools.lru_cache(maxsize=4096)
def in_stdlib(filename: str) -> bool:
    """Whether code from ``filename`` is the standard library's (``contextlib``, ``os``, the
    collection ABCs): plumbing between a caller and the library it calls, never an origin."""
    if filename.startswith("<frozen "):
        return True
    if not filename.startswith(_STDLIB_DIRS):
        return False
    return f"{os.sep}site-packages{os.sep}" not in filename and "dist-packages" not in filename


def _plumbing(frame: FrameType, module: str) -> bool:
    return in_stdlib(frame.f_code.co_filename) or any(_in(module, p) for p in _SKIPPED)


def caller_frame(
    frame: FrameType | None, library: str, keep: Callable[[str], bool] | None = None
) -> FrameType | None:
    """The innermost frame, walking out from ``frame``, that is outside ``library``, this
    plugin, the standard library and the test runner: the code that called into the RNG
    library.  A frame of a file ``keep`` names (a collected test module, a conftest) is
    never skipped, though the library's own test suite lives inside the library."""
    while frame is not None:
        if keep is not None and keep(frame.f_code.co_filename):
            return frame
        module = _module_of(frame)
        if not (_in(module, library) or _in(module, _OWN_PACKAGE) or _plumbing(frame, module)):
            return frame
        frame = frame.f_back
    return None


def build_origin(
    frame: FrameType, shorten: Callable[[str], str], line: int | None = None
) -> Origin:
    """The origin at ``frame`` and the stack from the test (or outermost user code) to it;
    at ``line`` of that frame where given (one it has run already), else at its current one."""
    if line is None:
        line = frame.f_lineno
    stack: list[str] = []
    current: FrameType | None = frame
    while current is not None and len(stack) < MAX_STACK:
        module = _module_of(current)
        if any(_in(module, prefix) for prefix in _RUNNER_PREFIXES) and stack:
            break
        code = current.f_code
        number = line if current is frame else current.f_lineno
        stack.append(f"{shorten(code.co_filename)}:{number} in {code.co_name}")
        current = current.f_back
    code = frame.f_code
    return Origin(
        shorten(code.co_filename),
        line,
        code.co_name,
        _module_of(frame),
        tuple(reversed(stack)),
    )


class UserCode:
    """Whether code is worth tracing line by line: the user's, where changes are named.  Not
    the plugin's, the test runner's, the standard library's, an RNG library's own or the
    other ``skipped`` modules' (a change made in one is named after the line of user code
    that called it), nor an ignored module's (its changes are nobody's leak); a file
    ``keep`` names always is."""

    def __init__(
        self,
        skipped: Iterable[str],
        ignore: Callable[[str], bool],
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self._skipped = (*_RUNNER_PREFIXES, *sorted(set(skipped)))
        self._ignore = ignore
        self._keep = keep

    def __call__(self, code: Any, frame: FrameType) -> bool:
        filename = code.co_filename
        if self._keep is not None and self._keep(filename):
            return True
        if in_stdlib(filename):
            return False
        module = _module_of(frame)
        if module.startswith("namedtuple_"):
            return False  # a named tuple's ``__new__``: built by the plugin as by anyone
        return not (any(_in(module, prefix) for prefix in self._skipped) or self._ignore(module))


def origin_from_traceback(lines: Sequence[str], shorten: Callable[[str], str]) -> Origin | None:
    """An origin from ``traceback.format_stack()`` text (torch keeps one for queued seeds)."""
    frames = []
    for entry in lines:
        head = entry.strip().splitlines()[0] if entry.strip() else ""
        if not head.startswith('File "'):
            continue
        path, _, rest = head[len('File "') :].partition('", line ')
        number, _, function = rest.partition(", in ")
        if number.isdigit():
            frames.append((path, int(number), function))
    user = [f for f in frames if f"{os.sep}torch{os.sep}" not in f[0] and not in_stdlib(f[0])]
    user = [f for f in user if not any(f"{os.sep}{p}{os.sep}" in f[0] for p in _RUNNER_PREFIXES)]
    if not user:
        return None
    path, line, function = user[-1]
    stack = tuple(f"{shorten(p)}:{n} in {fn}" for p, n, fn in user[-MAX_STACK:])
    return Origin(shorten(path), line, function, "", stack)


#: The monitor's handler: (original, args, kwargs, source, seeder, detail) -> result, where
#: ``detail`` is what ``seeder.detail`` said of the call (None for a seeder without one).
Handler = Callable[
    [Callable[..., Any], tuple[Any, ...], dict[str, Any], Source, Seeder, Detail], Any
]


def _resolve(module: Any, target: str) -> tuple[Any, str] | None:
    owner = module
    *path, attr = target.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    return (owner, attr) if hasattr(owner, attr) else None


class Interceptor:
    """Installs the wrappers on seeding functions of loaded libraries, and removes them."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._installed: list[tuple[Any, str, Any, Any]] = []  # owner, attr, original, wrapper
        self._done: set[tuple[str, str, str]] = set()
        self.originals: dict[int, tuple[Source, Seeder]] = {}
        self._wrappers: dict[int, Any] = {}  # id(wrapper) -> original

    def install(self, sources: Iterable[Source]) -> None:
        """Wrap every seeder whose module is loaded and not wrapped yet (never imports)."""
        for source in sources:
            for seeder in source.seeders():
                key = (source.name, seeder.module, seeder.target)
                if key in self._done:
                    continue
                module = sys.modules.get(seeder.module)
                if module is None:
                    continue
                resolved = _resolve(module, seeder.target)
                if resolved is None:
                    continue  # a module still being imported: tried again once it is done
                self._done.add(key)
                owner, attr = resolved
                original = getattr(owner, attr)
                if id(original) in self._wrappers:
                    # Copied from a module already wrapped (``from .mtrand import *``).
                    self._installed.append((owner, attr, self._wrappers[id(original)], original))
                    continue
                wrapper = self._wrap(original, source, seeder)
                try:
                    setattr(owner, attr, wrapper)
                except (AttributeError, TypeError):
                    continue
                self._installed.append((owner, attr, original, wrapper))
                self.originals[id(original)] = (source, seeder)
                self._wrappers[id(wrapper)] = original

    def _wrap(self, original: Callable[..., Any], source: Source, seeder: Seeder) -> Any:
        handler = self._handler
        about = seeder.detail
        if about is None:

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return handler(original, args, kwargs, source, seeder, None)

        else:
            # Some wrapped functions are mostly called about something else (``os.putenv``:
            # pytest sets PYTEST_CURRENT_TEST several times a test), so those calls go
            # straight through, without the monitor.
            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    detail = about(*args, **kwargs)
                except Exception:  # bad arguments: the real call raises its own error
                    detail = None
                if detail is None:
                    return original(*args, **kwargs)
                return handler(original, args, kwargs, source, seeder, detail)

        if hasattr(original, "__self__"):
            wrapper.__self__ = original.__self__  # type: ignore[attr-defined]
        return wrapper

    def uninstall(self) -> None:
        """Put every original back, newest first, where nobody replaced our wrapper since."""
        while self._installed:
            owner, attr, original, wrapper = self._installed.pop()
            if getattr(owner, attr, None) is wrapper:
                setattr(owner, attr, original)
        self._done.clear()
        self.originals.clear()
        self._wrappers.clear()

    def installed(self) -> list[tuple[Any, str, Any, Any]]:
        return list(self._installed)

    def wrapper_codes(self) -> frozenset[Any]:
        return frozenset(w.__code__ for _, _, _, w in self._installed if id(w) in self._wrappers)


class ImportWatcher:
    """Tells the monitor the moment a watched module has been imported, so a library first
    imported in the middle of a test has its seeders wrapped before the test can call them.

    A meta-path finder that only answers for watched names, by asking the finders after it
    and hooking that one loader's ``exec_module`` for the single import; the hook is gone
    once the module has run, so ``module.__loader__`` is the loader Python would have used.
    """

    def __init__(self, names: Iterable[str], imported: Callable[[str], None]) -> None:
        #: The watched module names (more can be added while installed).
        self.names = set(names)
        self._imported = imported

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.names:
            return None
        spec = None
        finders = sys.meta_path
        # Only the finders after this one: another watcher before it (a ``deterministic``
        # block inside the plugin's session) has asked this one already.
        with contextlib.suppress(ValueError):
            finders = finders[finders.index(self) + 1 :]
        for finder in finders:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module
        imported = self._imported

        def exec_module(module: Any) -> None:
            try:
                original(module)
            finally:
                with contextlib.suppress(AttributeError):
                    del loader.exec_module
            imported(fullname)

        # A loader with slots refuses: the monitor still sees the module at the next stretch.
        with contextlib.suppress(AttributeError, TypeError):
            loader.exec_module = exec_module
        return spec

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)


#: Signature of the tracer's callback: (source, kind, caller frame) -> None.
TraceCallback = Callable[[Source, str, FrameType], None]


class Tracer:
    """Sees every call (``sys.monitoring`` on 3.12+, ``sys.setprofile`` before), to find
    seeding calls the wrappers cannot: names bound early, methods of C generator objects;
    and, with a :class:`~pytest_rngguard.linetrace.LineTracer`, every line of user code
    (``sys.monitoring`` on 3.12+, ``sys.settrace`` before), for changes no call explains."""

    _TOOL_NAME = "pytest-rngguard"

    def __init__(
        self,
        sources: Callable[[], Sequence[Source]],
        interceptor: Interceptor,
        callback: TraceCallback,
        lines: LineTracer | None = None,
    ) -> None:
        self._sources = sources
        self._interceptor = interceptor
        self._callback = callback
        self._lines = lines
        self._tool: int | None = None
        #: The profile function installed with ``sys.setprofile`` (before 3.12), if any.
        self._profile: Callable[[FrameType, str, Any], None] | None = None
        #: Whether another profiler a test left installed has been reported already.
        self._yielded = False
        self._functions: dict[int, tuple[Source, str]] = {}
        self._methods: dict[int, tuple[Source, dict[str, str]]] = {}
        #: By id (the originals hold them), the code objects of wrapped Python seeders.
        self._codes: dict[int, tuple[Source, str, int | None]] = {}
        self._wrapper_codes: frozenset[Any] = frozenset()

    @property
    def running(self) -> bool:
        """Whether it watches anything (calls, lines or both)."""
        return self._tool is not None or self._profile is not None or self.tracing_lines

    @property
    def tracing_lines(self) -> bool:
        return self._lines is not None and self._lines.running

    def refresh(self) -> None:
        """Re-read the targets: libraries may have loaded since the last call."""
        functions: dict[int, tuple[Source, str]] = {}
        methods: dict[int, tuple[Source, dict[str, str]]] = {}
        codes: dict[int, tuple[Source, str, int | None]] = {}
        for original_id, (source, seeder) in self._interceptor.originals.items():
            functions[original_id] = (source, seeder.kind)
        for _owner, _attr, original, _ in self._interceptor.installed():
            source, seeder = self._interceptor.originals[id(original)]
            function = getattr(original, "__func__", original)
            code = getattr(function, "__code__", None)
            if code is not None:
                bound = getattr(original, "__self__", None)
                codes[id(code)] = (source, seeder.kind, None if bound is None else id(bound))
        for source in self._sources():
            if not source.available():
                continue
            for target in source.trace_targets():
                try:
                    objects = target.owners()
                except Exception:
                    continue
                for obj in objects:
                    methods.setdefault(id(obj), (source, {}))[1][target.method] = target.kind
        self._functions, self._methods, self._codes = functions, methods, codes
        self._wrapper_codes = self._interceptor.wrapper_codes()

    def _match(self, callable_: Any) -> tuple[Source, str] | None:
        hit = self._functions.get(id(callable_))
        if hit is not None:
            return hit
        owner = getattr(callable_, "__self__", None)
        if owner is None:
            return None
        entry = self._methods.get(id(owner))
        if entry is None:
            return None
        kind = entry[1].get(getattr(callable_, "__name__", ""))
        if kind is None or getattr(callable_, "__code__", None) in self._wrapper_codes:
            return None  # our wrapper, which has the method's ``__self__``: it reports itself
        return entry[0], kind

    def _report(self, hit: tuple[Source, str], frame: FrameType | None) -> None:
        if frame is None or self._inside_wrapper(frame, library_of(hit[0].module)):
            return  # made inside a call our own wrapper made: recorded already
        self._callback(hit[0], hit[1], frame)

    def _inside_wrapper(self, frame: FrameType | None, library: str) -> bool:
        """Whether ``frame``, or one it was called from inside the RNG library, the standard
        library and this plugin (``random.seed`` calling ``super().seed``, the wrapper's
        handler calling the original), is a wrapper's."""
        codes = self._wrapper_codes
        while frame is not None:
            if frame.f_code in codes:
                return True
            module = _module_of(frame)
            if not (
                _in(module, library)
                or _in(module, _OWN_PACKAGE)
                or in_stdlib(frame.f_code.co_filename)
            ):
                return False
            frame = frame.f_back
        return False

    def start(self) -> str | None:
        """Start tracing; where it cannot do all of it beside what is there, what it does
        not do and why, as a sentence for the user (``running`` tells whether it does any)."""
        self.refresh()
        monitoring = getattr(sys, "monitoring", None)
        if monitoring is not None:
            return self._start_monitoring(monitoring)
        # One profile function and one trace function per thread: ours would silence a
        # profiler (cProfile's C one cannot be called from ours), a debugger or coverage.py,
        # so each part gives way where the slot is taken.
        calls = None
        if sys.getprofile() is not None:
            calls = "another profiler is installed (sys.setprofile)"
        lines = self._lines.settrace() if self._lines is not None else None
        if calls is None:
            self._start_profile()
        if calls is not None and (lines is not None or self._lines is None):
            taken = f"{calls} and the tracer would replace it"
            if lines is not None:
                taken = f"{calls} and {lines}, and the tracer would replace them"
            return (
                f"--rngguard-trace is off: {taken}; origins that only the tracer finds are "
                f"not reported"
            )
        if calls is not None:
            return (
                f"--rngguard-trace watches no calls: {calls} and the tracer would replace it; "
                f"origins are still found from the lines that ran"
            )
        if lines is not None:
            return (
                f"--rngguard-trace watches no lines: {lines} and the tracer would replace it; "
                f"changes that no call explains have no origin"
            )
        return None

    def _start_monitoring(self, monitoring: Any) -> str | None:
        # Not PROFILER_ID, DEBUGGER_ID or COVERAGE_ID: cProfile, debuggers and coverage.py
        # take those, and tools of their own ids run side by side.
        free = [tool for tool in (3, 4) if monitoring.get_tool(tool) is None]
        if not free:
            return (
                "--rngguard-trace is off: no sys.monitoring tool id is free (3 and 4 are "
                "taken); origins that only the tracer finds are not reported"
            )
        self._tool = free[0]
        monitoring.use_tool_id(self._tool, self._TOOL_NAME)
        match, report, getframe = self._match, self._report, sys._getframe

        def on_call(code: Any, offset: int, callable_: Any, arg0: Any) -> None:
            hit = match(callable_)
            if hit is not None:
                report(hit, getframe(1))

        monitoring.register_callback(self._tool, monitoring.events.CALL, on_call)
        events = monitoring.events.CALL
        if self._lines is not None:
            events |= self._lines.monitor(self._tool)
        monitoring.set_events(self._tool, events)
        return None

    def _start_profile(self) -> None:
        match, report = self._match, self._report

        def profile(frame: FrameType, event: str, arg: Any) -> None:
            if event == "c_call":
                hit = match(arg)
                if hit is not None:
                    report(hit, frame)
            elif event == "call":
                # By id: hashing a code object, at every call, hashes its bytecode.
                entry = self._codes.get(id(frame.f_code))
                if entry is not None:
                    source, kind, bound = entry
                    if bound is None or id(frame.f_locals.get("self")) == bound:
                        report((source, kind), frame.f_back)

        self._profile = profile
        sys.setprofile(profile)

    def resume(self) -> str | None:
        """After a test: install the tracer again if the test removed it (``sys.setprofile``
        or ``sys.settrace`` of its own, cProfile's enable and disable, a debugger that
        ended), and say what happened, if anything."""
        said = [self._resume_profile()]
        if self._lines is not None:
            said.append(self._lines.resume())
        return "\n".join(line for line in said if line) or None

    def _resume_profile(self) -> str | None:
        if self._profile is None:
            return None
        current = sys.getprofile()
        if current is self._profile:
            return None
        if current is None:
            self._yielded = False
            sys.setprofile(self._profile)
            return (
                "rngguard: this test removed the --rngguard-trace tracer (sys.setprofile); "
                "origins after that were not traced; it is installed again"
            )
        if self._yielded:
            return None
        self._yielded = True
        return (
            "rngguard: this test left another profiler installed (sys.setprofile); the "
            "--rngguard-trace tracer cannot run beside it and is off until it is removed"
        )

    def forget(self) -> None:
        """The plugin has checked or set the sources: what ran before is nobody's to name."""
        if self._lines is not None:
            self._lines.forget()

    def stop(self) -> None:
        monitoring = getattr(sys, "monitoring", None)
        if monitoring is not None:
            if self._tool is not None:
                monitoring.set_events(self._tool, 0)
                monitoring.register_callback(self._tool, monitoring.events.CALL, None)
                if self._lines is not None:
                    self._lines.unmonitor()
                monitoring.free_tool_id(self._tool)
                self._tool = None
            return
        if self._profile is not None:
            if sys.getprofile() is self._profile:
                sys.setprofile(None)  # a profiler installed since is left to its owner
            self._profile = None
        if self._lines is not None:
            self._lines.unsettrace()


__all__ = [
    "IgnoreRules",
    "ImportWatcher",
    "Interceptor",
    "Origin",
    "PathShortener",
    "Tracer",
    "UserCode",
    "build_origin",
    "caller_frame",
    "library_of",
    "origin_from_traceback",
]
