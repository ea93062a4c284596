"""The texts of ``report.py`` for any leaks: grouped without losing one, capped with a count
of what is left out, and what to do spelled as a user would write it."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from pytest_rngguard.origins import Origin
from pytest_rngguard.report import (
    MAX_ENTRIES,
    Leak,
    entries,
    ignore_patterns,
    one_line,
    render_entry,
    render_test,
    what_to_do,
)
from pytest_rngguard.snapshots import Change

NODEID = "tests/test_x.py::test_x"

#: Where a call can be: the test's own file, a library's module or package, a conftest.
PLACES = [
    ("tests/test_x.py", "test_x"),
    ("lib/seeding.py", "lib.seeding"),
    ("lib/__init__.py", "lib"),
    ("tests/helpers.py", "tests.helpers"),
    ("tests/conftest.py", "conftest"),
]
#: The pattern that excuses each place's calls, with what it names: the package's modules,
#: or one module where the package also holds the test; none for the test's own code.
PATTERNS = {
    "lib.seeding": ("lib", "lib.*"),
    "lib": ("lib", "lib"),
    "tests.helpers": ("tests.helpers", "tests.helpers"),
}
origins = st.one_of(
    st.none(),
    st.builds(
        lambda place, line, stack: Origin(place[0], line, "f", place[1], stack),
        st.sampled_from(PLACES),
        st.integers(1, 3),
        st.sampled_from([(), ("tests/test_x.py:9 in test_x", "lib/seeding.py:1 in f")]),
    ),
)
changes = st.builds(
    Change,
    source=st.sampled_from(["random", "numpy", "env", "torch.flags"]),
    kind=st.sampled_from(["reseeded", "replaced", "changed"]),
    detail=st.sampled_from(["", "A", "B"]),
    description=st.sampled_from(["", "'x' -> 'y'", "unset -> '1'"]),
    origin=origins,
)
leaks = st.builds(
    Leak,
    nodeid=st.just(NODEID),
    phase=st.sampled_from(["setup", "call", "teardown"]),
    fixture=st.sampled_from([None, "model"]),
    change=changes,
)


def key(leak: Leak) -> tuple[object, ...]:
    change = leak.change
    return (leak.phase, leak.fixture, leak.scope, change.source, change.kind, change.origin)


@given(st.lists(leaks, min_size=1, max_size=40))
def test_grouping_keeps_every_leak_once_and_only_with_its_own_kind(found: list[Leak]) -> None:
    groups = entries(found)
    assert sorted(map(id, (leak for group in groups for leak in group))) == sorted(map(id, found))
    assert all(len({key(leak) for leak in group}) == 1 for group in groups)
    assert len(groups) == len({key(leak) for leak in found})


@given(st.lists(leaks, min_size=1, max_size=40))
def test_a_warning_shows_at_most_ten_changes_and_counts_the_rest(found: list[Leak]) -> None:
    text = render_test(NODEID, found, report="out/report.json")
    heads = [line for line in text.splitlines() if re.match(r"^  \S", line)]
    changes = [line for line in heads if " during " in line]
    distinct = Counter(key(leak) for leak in found)
    assert len(changes) == min(len(distinct), MAX_ENTRIES)
    hidden = re.search(r"\.\.\. and (\d+) more changes? \((\d+) leaks?\)", text)
    if len(distinct) <= MAX_ENTRIES:
        assert hidden is None
    else:
        assert hidden is not None
        shown = sum(list(distinct.values())[:MAX_ENTRIES])
        assert (int(hidden[1]), int(hidden[2])) == (len(distinct) - MAX_ENTRIES, len(found) - shown)
        assert f"{hidden.group(0)}: every one is in the JSON report, in out/report.json" in text


@given(st.lists(leaks, min_size=1, max_size=10))
def test_what_to_do_names_every_source_and_no_pattern_for_the_tests_own_code(
    found: list[Leak],
) -> None:
    advice = "\n".join(what_to_do(NODEID, found))
    sources = dict.fromkeys(leak.change.source for leak in found)
    assert f"allow_rng_leak({', '.join(f'{s!r}'.replace(chr(39), chr(34)) for s in sources)})" in (
        advice
    )
    modules = {leak.change.origin.module for leak in found if leak.change.origin is not None}
    expected = {PATTERNS[module] for module in modules if module in PATTERNS}
    assert set(ignore_patterns(NODEID, found)) == expected
    assert advice.endswith("reading-a-report.html#what-to-do-about-a-leak")


@given(leaks, st.sampled_from(["fixture_a", None]), st.sampled_from(["test", "setup_module x"]))
def test_an_entry_of_one_change_reads_as_the_same_change_made_twice_says_it_once(
    leak: Leak, fixture: str | None, scope: str
) -> None:
    # A group of one takes a shorter road (every draw a strict test reports is one); the
    # grouped rendering of the same change made twice is the oracle, less its "2 times".
    leak = dataclasses.replace(leak, fixture=fixture, scope=scope)
    alone, twice = render_entry([leak]), render_entry([leak, leak])
    kind = leak.change.kind
    assert f"{kind} 2 times during" in twice[0]
    assert alone[0] == twice[0].replace(f"{kind} 2 times during", f"{kind} during", 1)
    assert alone[1:] == twice[1:]
    assert one_line(leak) == f"{leak.phase}: {' '.join(alone[0].split())}"
