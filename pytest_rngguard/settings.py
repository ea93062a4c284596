"""Every option, declared once (CLI flag and ini key), resolved once into ``Settings``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pytest

from .sources.env import DEFAULT_VARIABLES

MODES = ("off", "warn", "fail")
#: The options that name a file, and what each file is called in messages.
FILES = ("report", "fingerprints", "baseline")
FILE_NAMES = {
    "report": "JSON report",
    "fingerprints": "fingerprint file",
    "baseline": "baseline file",
}
RESTORE = ("leaked", "all", "none")
#: pytest-randomly's and Hypothesis's own modules: never a leak (SPEC).
DEFAULT_IGNORE = ("pytest_randomly", "pytest_randomly.*", "hypothesis", "hypothesis.*")


class Option(NamedTuple):
    """One setting: its CLI flag (or None), ini key (or None), ini type, default and help."""

    dest: str
    cli: str | None
    ini: str | None
    ini_type: str | None
    default: Any
    help: str
    metavar: str | None = None


# fmt: off
# One option a row: the table reads best as a table.
OPTIONS = (
    Option("mode", "--rngguard", "rngguard_mode", "string", "warn",
           "What to do about a leak: off, warn (default: one RNGLeakWarning per test) or fail",
           "MODE"),
    Option("strict", "--rngguard-strict", "rngguard_strict", "bool", False,
           "Also flag sources that only advanced because numbers were drawn"),
    Option("restore", "--rngguard-restore", "rngguard_restore", "string", "leaked",
           "Which sources to put back after each test: leaked (default), all or none", "WHAT"),
    Option("report", "--rngguard-report", "rngguard_report", "string", None,
           "Write the JSON report of leaks and non-reproducible tests to PATH", "PATH"),
    Option("seed", "--rngguard-seed", "rngguard_seed", "string", "0",
           "Base seed (integer >= 0) from which deterministic tests derive theirs (default 0)",
           "N"),
    Option("repeat", "--rngguard-repeat", "rngguard_repeat", "string", "1",
           "Run each deterministic test N times and fail it if the runs differ (default 1)",
           "N"),
    Option("trace", "--rngguard-trace", "rngguard_trace", "bool", False,
           "Trace every call to find origins the default interception cannot see (slower)"),
    Option("fingerprints", "--rngguard-fingerprints", "rngguard_fingerprints", "string", None,
           "Write fingerprints of deterministic tests to PATH, or compare with it if it exists",
           "PATH"),
    Option("fingerprints_update", "--rngguard-fingerprints-update", None, None, False,
           "Rewrite the fingerprint file instead of comparing with it"),
    Option("baseline", "--rngguard-baseline", "rngguard_baseline", "string", None,
           "Leaks recorded in PATH are known: listed, never warned about or failed; only new "
           "leaks are", "PATH"),
    Option("baseline_update", "--rngguard-baseline-update", None, None, False,
           "Record this run's leaks in the baseline file (keeping the entries of tests that "
           "did not run) instead of checking against it"),
    Option("sources", None, "rngguard_sources", "linelist", None,
           "Only check these sources (default: every available one)"),
    Option("env", None, "rngguard_env", "linelist", None,
           "Watched environment variables: VAR (watched) or VAR=VALUE (watched, and set by "
           "the deterministic marker)"),
    Option("ignore", None, "rngguard_ignore", "linelist", None,
           "Module patterns (fnmatch) whose state changes are not leaks; pytest-randomly's "
           "and Hypothesis's own modules always are"),
)
# fmt: on


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("rngguard", "global random state guard (pytest-rngguard)")
    for option in OPTIONS:
        if option.cli is not None:
            if option.ini_type == "bool" or option.dest.endswith("_update"):
                group.addoption(
                    option.cli,
                    action="store_true",
                    default=None,
                    dest=f"rngguard_{option.dest}",
                    help=option.help,
                )
            else:
                group.addoption(
                    option.cli,
                    action="store",
                    default=None,
                    metavar=option.metavar,
                    dest=f"rngguard_{option.dest}",
                    help=option.help,
                )
        if option.ini is not None:
            default = option.default if option.ini_type != "linelist" else []
            parser.addini(
                option.ini,
                option.help,
                type=option.ini_type,  # type: ignore[arg-type]
                default=default,
            )


class Settings(NamedTuple):
    """The resolved options.  A named tuple, not a frozen dataclass: this module loads with
    the plugin in every session, and building a dataclass costs milliseconds there."""

    mode: str = "warn"
    strict: bool = False
    restore: str = "leaked"
    report: str | None = None
    seed: int = 0
    repeat: int = 1
    trace: bool = False
    fingerprints: str | None = None
    fingerprints_update: bool = False
    baseline: str | None = None
    baseline_update: bool = False
    #: The files ``report``, ``fingerprints`` and ``baseline`` name: absolute, links followed.
    report_path: str | None = None
    fingerprints_path: str | None = None
    baseline_path: str | None = None
    sources: tuple[str, ...] | None = None
    env_watched: tuple[str, ...] = DEFAULT_VARIABLES
    env_set: tuple[tuple[str, str], ...] = ()
    ignore: tuple[str, ...] = DEFAULT_IGNORE

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


def _raw(config: pytest.Config, option: Option) -> tuple[Any, str]:
    """The option's value and how the user spelled where it came from (for errors)."""
    if option.cli is not None:
        value = config.getoption(f"rngguard_{option.dest}")
        if value is not None:
            return value, option.cli
    if option.ini is None:
        return option.default, option.cli or option.dest
    name = f"{option.ini} (ini)"
    try:
        return config.getini(option.ini), name
    except (ValueError, TypeError, pytest.UsageError) as exc:
        if option.ini_type != "bool":
            raise
        # pytest's own message names the value but not the key.
        problem = str(exc)
    raise pytest.UsageError(
        f"rngguard: {name} is not a boolean ({problem}): use true or false (or yes/no, on/off, 1/0)"
    )


def given_as(config: pytest.Config, dest: str) -> str:
    """How the user spelled the option ``dest`` was taken from: its flag or its ini key."""
    return _raw(config, next(o for o in OPTIONS if o.dest == dest))[1]


def _usage(name: str, value: Any, allowed: str) -> pytest.UsageError:
    return pytest.UsageError(f"rngguard: {name}={value!r} is not valid: {allowed}")


def _choice(allowed: Sequence[str]) -> Callable[[Any, str], str]:
    def parse(value: Any, name: str) -> str:
        text = str(value).strip().lower()
        if text not in allowed:
            raise _usage(name, value, f"use one of {', '.join(allowed)}")
        return text

    return parse


def _integer(minimum: int) -> Callable[[Any, str], int]:
    def parse(value: Any, name: str) -> int:
        try:
            number = int(str(value).strip(), 10)
        except ValueError:
            raise _usage(name, value, f"use an integer >= {minimum}") from None
        if number < minimum:
            raise _usage(name, value, f"use an integer >= {minimum}")
        return number

    return parse


def _path(value: Any, name: str) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _check_files(config: pytest.Config, values: dict[str, Any], names: dict[str, str]) -> None:
    """Refuse, before any test runs, a path that cannot be the file it names; only the
    process that writes (not an xdist worker) needs to be able to write it."""
    _check_baseline_update(values, names)
    if all(values[dest] is None for dest in FILES):
        return
    from .files import FileProblem, target

    writes = not hasattr(config, "workerinput")
    for dest in FILES:
        given = values[dest]
        if given is None:
            continue
        try:
            values[f"{dest}_path"] = target(given, write=writes and _writes(dest, values))
        except FileProblem as exc:
            raise _usage(names[dest], given, str(exc)) from None
    _check_distinct(values, names)


def _writes(dest: str, values: dict[str, Any]) -> bool:
    """Whether the session may write the file ``dest`` names: an existing fingerprint file
    is compared with, so only read, unless rewritten; a baseline is only read, unless
    updated."""
    if dest == "baseline":
        return bool(values["baseline_update"])
    if dest == "fingerprints":
        from .files import expand

        return bool(values["fingerprints_update"]) or not os.path.exists(
            expand(values["fingerprints"])
        )
    return True


def _check_distinct(values: dict[str, Any], names: dict[str, str]) -> None:
    """No two of the files may be one: each would overwrite (or be read as) the other."""
    from .files import same_file

    for index, dest in enumerate(FILES):
        for other in FILES[index + 1 :]:
            path, other_path = values.get(f"{dest}_path"), values.get(f"{other}_path")
            if path is not None and other_path is not None and same_file(path, other_path):
                raise _usage(
                    names[dest],
                    values[dest],
                    f"it is the {FILE_NAMES[other]} ({names[other]}={values[other]!r})",
                )


def _check_baseline_update(values: dict[str, Any], names: dict[str, str]) -> None:
    if not values["baseline_update"]:
        return
    if values["baseline"] is None:
        raise pytest.UsageError(
            "rngguard: --rngguard-baseline-update needs the baseline file: give "
            "--rngguard-baseline=PATH or the rngguard_baseline ini key"
        )
    if values["mode"] == "off":
        raise pytest.UsageError(
            f"rngguard: --rngguard-baseline-update records the leaks found, and "
            f"{names['mode']}=off looks for none"
        )


def parse_env_lines(
    lines: Sequence[str], name: str = "rngguard_env"
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    watched = list(DEFAULT_VARIABLES)
    to_set = []
    for line in lines:
        var, eq, value = line.strip().partition("=")
        var = var.strip()
        if not var.isidentifier() or not var.isascii():
            raise _usage(name, line, "each line is VAR or VAR=VALUE with a valid variable name")
        watched.append(var)
        if eq:
            to_set.append((var, value.strip()))
    return tuple(dict.fromkeys(watched)), tuple(to_set)


def resolve(config: pytest.Config) -> Settings:
    """Read and check every option once; a bad value is a UsageError naming it."""
    parsers: dict[str, Callable[[Any, str], Any]] = {
        "mode": _choice(MODES),
        "restore": _choice(RESTORE),
        "seed": _integer(0),
        "repeat": _integer(1),
        "report": _path,
        "fingerprints": _path,
        "baseline": _path,
        "strict": lambda v, n: bool(v),
        "trace": lambda v, n: bool(v),
        "fingerprints_update": lambda v, n: bool(v),
        "baseline_update": lambda v, n: bool(v),
    }
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for option in OPTIONS:
        raw, name = _raw(config, option)
        if option.dest in parsers:
            values[option.dest] = parsers[option.dest](raw, name)
            names[option.dest] = name
    _check_files(config, values, names)
    sources_lines = [s.strip() for s in config.getini("rngguard_sources") if s.strip()]
    if sources_lines:
        values["sources"] = tuple(sources_lines)
    watched, to_set = parse_env_lines([s for s in config.getini("rngguard_env") if s.strip()])
    values["env_watched"], values["env_set"] = watched, to_set
    ignore = [s.strip() for s in config.getini("rngguard_ignore") if s.strip()]
    values["ignore"] = tuple(dict.fromkeys((*DEFAULT_IGNORE, *ignore)))
    return Settings(**values)


def check_sources(settings: Settings, known: Sequence[str]) -> None:
    """A UsageError for each name in ``rngguard_sources`` that is no source of this session
    (built in, registered or from an entry point)."""
    unknown = [s for s in settings.sources or () if s not in known]
    if unknown:
        raise _usage(
            "rngguard_sources (ini)", ", ".join(unknown), f"known sources are {', '.join(known)}"
        )
