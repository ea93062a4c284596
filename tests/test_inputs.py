"""What a user can hand the plugin (ini values, sources of their own, records, profilers)
is either honoured or refused with a message naming it, never an internal error."""

from __future__ import annotations

import pytest
from conftest import run

# -- ini booleans ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["rngguard_strict", "rngguard_trace"])
def test_a_bad_boolean_in_the_ini_file_is_a_usage_error_naming_the_key_and_the_values(
    pytester: pytest.Pytester, key: str
) -> None:
    pytester.makeini(f"[pytest]\n{key} = maybe\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: rngguard: {key} (ini) is not a boolean (invalid truth value 'maybe'): "
            f"use true or false (or yes/no, on/off, 1/0)"
        ]
    )
    result.stderr.no_fnmatch_line("*Traceback*")


@pytest.mark.parametrize("value", ["yes", "On", "1", "true"])
def test_every_spelling_of_true_pytest_accepts_turns_strict_on(
    pytester: pytest.Pytester, value: str
) -> None:
    pytester.makeini(f"[pytest]\nrngguard_strict = {value}\n")
    pytester.makepyfile("def test_nothing(): pass")
    run(pytester).stdout.fnmatch_lines(["rngguard: mode=warn strict=yes *"])
