"""``rngguard_env`` lines as ``parse_env_lines`` reads them, and the settings' defaults (the
options themselves are tested end to end, where pytest parses them)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rngguard.settings import (
    DEFAULT_IGNORE,
    MODES,
    OPTIONS,
    RESTORE,
    Settings,
    parse_env_lines,
)
from pytest_rngguard.sources.env import DEFAULT_VARIABLES


def test_no_lines_watch_the_default_variables_and_set_nothing() -> None:
    assert parse_env_lines([]) == (DEFAULT_VARIABLES, ())


def test_a_bare_name_is_watched_but_not_set() -> None:
    watched, to_set = parse_env_lines(["MY_SEED"])
    assert watched == (*DEFAULT_VARIABLES, "MY_SEED")
    assert to_set == ()


def test_a_name_with_a_value_is_watched_and_set() -> None:
    watched, to_set = parse_env_lines(["MY_SEED=42", "TOKENIZERS_PARALLELISM=false"])
    assert watched[-2:] == ("MY_SEED", "TOKENIZERS_PARALLELISM")
    assert to_set == (("MY_SEED", "42"), ("TOKENIZERS_PARALLELISM", "false"))


def test_spaces_around_names_and_values_are_dropped() -> None:
    assert parse_env_lines(["  MY_SEED =  42  "])[1] == (("MY_SEED", "42"),)


def test_values_may_be_empty_or_contain_equals_signs() -> None:
    assert parse_env_lines(["EMPTY=", "OPTS=a=b=c"])[1] == (("EMPTY", ""), ("OPTS", "a=b=c"))


def test_a_default_variable_given_again_is_watched_once_and_set() -> None:
    watched, to_set = parse_env_lines(["CUBLAS_WORKSPACE_CONFIG=:16:8", "MY_SEED", "MY_SEED"])
    assert watched == (*DEFAULT_VARIABLES, "MY_SEED")
    assert to_set == (("CUBLAS_WORKSPACE_CONFIG", ":16:8"),)


def test_a_later_value_for_the_same_variable_comes_later() -> None:
    assert parse_env_lines(["A=1", "A=2"])[1] == (("A", "1"), ("A", "2"))


@pytest.mark.parametrize("line", ["", "   ", "=1", "1ABC", "MY-SEED=1", "MY SEED", "A.B"])
def test_a_line_that_is_not_a_variable_name_is_a_usage_error_naming_it(line: str) -> None:
    with pytest.raises(pytest.UsageError) as refused:
        parse_env_lines(["GOOD", line])
    message = str(refused.value)
    assert message.startswith(f"rngguard: rngguard_env={line!r} is not valid: ")
    assert "VAR or VAR=VALUE" in message


def test_a_name_made_of_underscores_is_a_valid_variable_name() -> None:
    assert parse_env_lines(["_", "__=1"])[1] == (("__", "1"),)


def test_the_error_names_the_option_it_was_given() -> None:
    with pytest.raises(pytest.UsageError, match=r"^rngguard: rngguard_env \(ini\)='1A' is not"):
        parse_env_lines(["1A"], name="rngguard_env (ini)")


names = st.from_regex(r"_{0,2}[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True)
values = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=10)


@settings(max_examples=100, deadline=None)
@given(entries=st.lists(st.tuples(names, st.none() | values), max_size=6))
def test_any_valid_lines_are_watched_in_order_and_set_as_given(
    entries: list[tuple[str, str | None]],
) -> None:
    lines = [name if value is None else f"{name}={value}" for name, value in entries]
    watched, to_set = parse_env_lines(lines)
    assert watched == tuple(dict.fromkeys((*DEFAULT_VARIABLES, *(name for name, _ in entries))))
    assert to_set == tuple((n, v.strip()) for n, v in entries if v is not None)


def test_settings_default_to_what_the_spec_says() -> None:
    defaults = Settings()
    assert (defaults.mode, defaults.strict, defaults.restore, defaults.seed) == (
        "warn",
        False,
        "leaked",
        0,
    )
    assert (defaults.repeat, defaults.trace, defaults.report, defaults.fingerprints) == (
        1,
        False,
        None,
        None,
    )
    assert defaults.env_watched == DEFAULT_VARIABLES
    assert defaults.ignore == DEFAULT_IGNORE
    assert defaults.enabled
    assert not Settings(mode="off").enabled
    assert (MODES, RESTORE) == (("off", "warn", "fail"), ("leaked", "all", "none"))


def test_every_option_has_the_spelling_the_spec_fixes() -> None:
    spelled = {(option.cli, option.ini) for option in OPTIONS}
    assert spelled == {
        ("--rngguard", "rngguard_mode"),
        ("--rngguard-strict", "rngguard_strict"),
        ("--rngguard-restore", "rngguard_restore"),
        ("--rngguard-report", "rngguard_report"),
        ("--rngguard-seed", "rngguard_seed"),
        ("--rngguard-repeat", "rngguard_repeat"),
        ("--rngguard-trace", "rngguard_trace"),
        ("--rngguard-fingerprints", "rngguard_fingerprints"),
        ("--rngguard-fingerprints-update", None),
        # Additions to the SPEC's table: the leak baseline.
        ("--rngguard-baseline", "rngguard_baseline"),
        ("--rngguard-baseline-update", None),
        (None, "rngguard_sources"),
        (None, "rngguard_env"),
        (None, "rngguard_ignore"),
    }
    for option in OPTIONS:
        assert option.help[0].isupper(), option.dest
        assert not option.help.endswith("."), option.dest
