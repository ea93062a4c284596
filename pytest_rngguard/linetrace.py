"""The line after which a state changed: the part of ``--rngguard-trace`` that needs no call.

Some changes are made by no call the plugin can see: an attribute set
(``torch.backends.cudnn.benchmark = True``), a C function bound to a name before the session
(``from numpy.random import seed`` in a conftest, on Python 3.10 and 3.11), a seeding function
called from C (``map(seed, ...)``).  For those, the sources are compared after every line of
user code, and the line after which one differs is its origin: ``sys.monitoring`` LINE events
on Python 3.12 and later, a ``sys.settrace`` function before.

A check runs at each new line, and when a frame returns, yields or resumes, so a change made
by a function's last line is found before its caller goes on.  What ran since the previous
check, per thread, is one frame and one line: the check names that line.

Only user code is traced: the plugin's own frames, the test runner's, the standard library's
and the RNG libraries' are not (they cost one decision per code object); a change made inside
one of them is found at the next line of the user code that called it, and named after that
line, which is where the user reads it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

#: Whether code (run by this frame, for its module) is user code, worth tracing.
Wanted = Callable[[CodeType, FrameType], bool]
#: Compares the sources with the previous check and, where one changed, names what ran since
#: in this thread: a frame and its line (None where unknown).
Check = Callable[["tuple[FrameType, int] | None"], None]

# Generators and coroutines resume in the middle of a line begun before they yielded.
_SUSPENDABLE = 0x20 | 0x80 | 0x200  # CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR
#: Code objects decided on before 3.12, at most: ``exec`` in a loop makes new ones forever.
_DECIDED_MAX = 100_000


def _returning(
    last: dict[int, tuple[FrameType, int]],
    key: int,
    frame: FrameType,
    traced: Callable[[FrameType], bool],
) -> None:
    """``frame`` returns (or yields): what runs next, until the next check, is the rest of
    the current line of the nearest traced frame it returns into (untraced ones in between
    return without a word)."""
    back = frame.f_back
    while back is not None and not traced(back):
        back = back.f_back
    if back is None:
        last.pop(key, None)
    else:
        last[key] = (back, back.f_lineno or 0)


def _starting(frame: FrameType) -> bool:
    """Whether a generator's or coroutine's frame is starting rather than resuming (before
    3.12: no instruction run yet on 3.10, at the line of its ``def`` on 3.11)."""
    return frame.f_lasti < 0 or frame.f_lineno == frame.f_code.co_firstlineno


class LineTracer:
    """Calls ``check`` at every line of user code, in every thread, with what ran since the
    previous check (see the module's docstring)."""

    def __init__(self, wanted: Wanted, check: Check) -> None:
        self._wanted = wanted
        self._check = check
        #: Per thread id, what is running since the last check.
        self._last: dict[int, tuple[FrameType, int]] = {}
        #: 3.12+: the sys.monitoring tool id shared with the call tracer, and by id the
        #: code objects given local events (held, so that the ids stay theirs; their events
        #: are taken back at the end).
        self._tool: int | None = None
        self._codes: dict[int, CodeType] = {}
        #: Before 3.12: the global trace function, and whether new threads get it too.
        self._trace: Callable[[FrameType, str, Any], Any] | None = None
        self._threads = False
        #: Whether another trace function a test left installed has been reported already.
        self._yielded = False

    def forget(self) -> None:
        """Forget what was running: the plugin has just checked (or set) the sources itself,
        so nothing that ran before is to be named for what changes next."""
        self._last.clear()

    @property
    def running(self) -> bool:
        if self._tool is not None:
            return True
        return self._trace is not None and sys.gettrace() is self._trace

    # -- Python 3.12 and later: sys.monitoring ---------------------------------------------

    def monitor(self, tool: int) -> int:
        """Register the callbacks on ``tool`` (already in use by the call tracer); returns
        the global events the tool must also have enabled."""
        monitoring = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        events = monitoring.events
        local = events.LINE | events.PY_RETURN | events.PY_YIELD | events.PY_RESUME
        wanted, check, last, codes = self._wanted, self._check, self._last, self._codes
        getframe, ident = sys._getframe, threading.get_ident
        set_local, disable = monitoring.set_local_events, monitoring.DISABLE

        def traced(frame: FrameType) -> bool:
            return id(frame.f_code) in codes

        def on_start(code: CodeType, offset: int) -> Any:
            # Once per code object: user code gets the line events, the rest nothing more.
            try:
                if wanted(code, getframe(1)):
                    set_local(tool, code, local)
                    codes[id(code)] = code
            except Exception:
                pass  # a callback that raised would break the code it runs in
            return disable

        def on_line(code: CodeType, line: int) -> None:
            key = ident()
            check(last.get(key))
            last[key] = (getframe(1), line)

        def on_leave(code: CodeType, offset: int, value: object) -> None:
            key = ident()
            check(last.get(key))
            _returning(last, key, getframe(1), traced)

        def on_resume(code: CodeType, offset: int) -> None:
            key = ident()
            check(last.get(key))
            frame = getframe(1)
            last[key] = (frame, frame.f_lineno or 0)

        self._tool = tool
        # Events disabled for code objects by an earlier session's tracer fire again.
        monitoring.restart_events()
        monitoring.register_callback(tool, events.PY_START, on_start)
        monitoring.register_callback(tool, events.LINE, on_line)
        monitoring.register_callback(tool, events.PY_RETURN, on_leave)
        monitoring.register_callback(tool, events.PY_YIELD, on_leave)
        monitoring.register_callback(tool, events.PY_RESUME, on_resume)
        return int(events.PY_START)

    def unmonitor(self) -> None:
        """Take back the callbacks and every code object's line events (the tool id may be
        taken by another tool, or this plugin in a later session, which must not get them)."""
        if self._tool is None:
            return
        monitoring = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        events = monitoring.events
        for code in self._codes.values():
            monitoring.set_local_events(self._tool, code, 0)
        for event in (events.PY_START, events.LINE, events.PY_RETURN, events.PY_YIELD):
            monitoring.register_callback(self._tool, event, None)
        monitoring.register_callback(self._tool, events.PY_RESUME, None)
        self._codes = {}
        self._tool = None
        self._last.clear()

    # -- before Python 3.12: sys.settrace --------------------------------------------------

    def settrace(self) -> str | None:
        """Install the trace function; or, where another one is installed, why not."""
        if sys.gettrace() is not None:
            # One trace function per thread: ours would silence a debugger or coverage.py.
            return "another trace function is installed (sys.settrace: a debugger or coverage.py)"
        trace = self._trace_function()
        self._trace = trace
        sys.settrace(trace)
        # Threads started from now on are traced too, unless another tool's hook is there.
        if threading.gettrace() is None:
            threading.settrace(trace)
            self._threads = True
        return None

    def _trace_function(self) -> Callable[[FrameType, str, object], Any]:
        """The ``sys.settrace`` function: it decides once per code object whether to trace
        its frames, and checks at their lines, returns and resumptions."""
        wanted, check, last = self._wanted, self._check, self._last
        ident = threading.get_ident
        # By id (hashing a code object hashes its bytecode), with the code objects held so
        # that their ids stay theirs.
        decided: dict[int, bool] = {}
        held: list[CodeType] = []
        local = self._local_function()

        def trace(frame: FrameType, event: str, arg: object) -> Any:
            code = frame.f_code
            worth = decided.get(id(code))
            if worth is None:
                if len(decided) >= _DECIDED_MAX:
                    decided.clear()
                    held.clear()
                try:
                    worth = decided[id(code)] = wanted(code, frame)
                except Exception:
                    worth = False
                held.append(code)
            if not worth:
                return None
            if code.co_flags & _SUSPENDABLE and not _starting(frame):
                # Resumed: what it runs now is the rest of the line it yielded on.
                key = ident()
                check(last.get(key))
                last[key] = (frame, frame.f_lineno)
            return local

        return trace

    def _local_function(self) -> Callable[[FrameType, str, object], Any]:
        """The trace function of a traced frame: a check at each line and at its return."""
        check, last = self._check, self._last
        ident = threading.get_ident

        def local(frame: FrameType, event: str, arg: object) -> Any:
            if event == "line":
                key = ident()
                check(last.get(key))
                last[key] = (frame, frame.f_lineno)
            elif event == "return":  # also a yield, and leaving by an exception
                key = ident()
                check(last.get(key))
                _returning(last, key, frame, traced)
            return local

        def traced(frame: FrameType) -> bool:
            return frame.f_trace is not None

        return local

    def resume(self) -> str | None:
        """After a test: install the trace function again if the test removed it
        (``sys.settrace(None)``, a debugger that ended), and say what happened, if anything."""
        if self._trace is None:
            return None
        current = sys.gettrace()
        if current is self._trace:
            return None
        if current is None:
            self._yielded = False
            sys.settrace(self._trace)
            return (
                "rngguard: this test removed the --rngguard-trace line tracer (sys.settrace); "
                "lines after that were not traced; it is installed again"
            )
        if self._yielded:
            return None
        self._yielded = True
        return (
            "rngguard: this test left another trace function installed (sys.settrace); the "
            "--rngguard-trace line tracer cannot run beside it and is off until it is removed"
        )

    def unsettrace(self) -> None:
        if self._trace is None:
            return
        if sys.gettrace() is self._trace:
            sys.settrace(None)  # one installed since is left to its owner
        if self._threads and threading.gettrace() is self._trace:
            threading.settrace(None)
        self._trace = None
        self._threads = False
        self._last.clear()


__all__ = ["LineTracer"]
