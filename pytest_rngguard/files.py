"""The report and fingerprint files: where they go, checked before the session starts, and
how they are written at its end (atomically, through links, with the mode ``open`` gives)."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable
from typing import Any


class FileProblem(ValueError):
    """Why a path cannot be the file: one sentence naming the path, for a usage error."""


def read_json(path: str, what: str, problem: Callable[[Any], str | None]) -> Any:
    """The JSON content of the file at ``path``; ``ValueError`` naming the file, ``what`` it
    should be and what is wrong where it is not UTF-8, not JSON, or ``problem`` (the checks of
    its shape) says so."""
    with open(path, "rb") as handle:
        content = handle.read()
    try:
        data = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError:
        found: str | None = "it is not UTF-8 text"
    except json.JSONDecodeError as exc:
        found = f"it is not valid JSON: {exc}"
    else:
        found = problem(data)
    if found is not None:
        raise ValueError(f"{path} is not {what}: {found}")
    return data


def expand(given: str) -> str:
    """The absolute path, ``~`` and variables expanded, as pytest's ``--junitxml`` does."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.path.expandvars(given))))


def _shown(path: str, real: str) -> str:
    return path if path == real else f"{path} (a link to {real})"


def target(given: str, *, write: bool) -> str:
    """The file that ``given`` names, links followed; ``write``: it must be writable too.

    Raises ``FileProblem`` for a folder, anything else that is not a regular file (a device,
    a FIFO: replacing one, or reading it, is never what was meant), a missing folder that
    cannot be created and, for writing, a file or folder the user may not write."""
    path = expand(given)
    real = os.path.realpath(path)
    try:
        mode: int | None = os.stat(real).st_mode
    except (FileNotFoundError, NotADirectoryError):  # below a file: found by the walk below
        mode = None
    except OSError as exc:
        raise FileProblem(f"{_shown(path, real)} cannot be looked at: {exc.strerror}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise FileProblem(f"{_shown(path, real)} is a folder, not a file")
    if mode is not None and not stat.S_ISREG(mode):
        raise FileProblem(f"{_shown(path, real)} is not a regular file")
    if not write:
        return real
    if mode is not None and not os.access(real, os.W_OK):
        raise FileProblem(f"{_shown(path, real)} is not writable")
    folder = os.path.dirname(real)
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise FileProblem(f"{folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileProblem(f"{folder} is not writable")
    return real


def same_file(a: str, b: str) -> bool:
    """Whether two targets are one file: the same path, or hard links to one file."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_json_atomically(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to a temporary file in the target's folder, then rename it into place.

    A link is written through, not replaced; an existing file keeps its mode and a new one
    gets the mode ``open`` would give it (the temporary file's own is 0600)."""
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        mode = _new_file_mode()
    else:
        # Checked before the session, but a test may have put something else there since.
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), real)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "Not a regular file", real)
    folder = os.path.dirname(real)
    os.makedirs(folder, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".rngguard-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False)
            handle.write("\n")
        os.chmod(temp, stat.S_IMODE(mode))
        os.replace(temp, real)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
