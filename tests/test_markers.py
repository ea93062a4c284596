"""``markers.py`` on its own: a test's markers read once into frozen marks (end to end, the
marker tests are in test_plugin_markers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_rngguard.determinism import Recipe, derive_seed
from pytest_rngguard.markers import UNMARKED, MarkReader, marks_key
from pytest_rngguard.settings import Settings

KNOWN = frozenset({"random", "numpy", "torch"})


def reader(**settings: Any) -> MarkReader:
    return MarkReader(Settings()._replace(**settings), KNOWN)


def test_an_unmarked_test_gets_the_shared_unmarked_marks_in_its_stash(
    pytester: pytest.Pytester,
) -> None:
    [item] = pytester.getitems("def test_plain():\n    pass\n")
    marks = reader().read(item)
    assert marks is UNMARKED
    assert item.stash[marks_key] is marks


def test_allow_rng_leak_markers_add_up_and_without_a_source_allow_every_one(
    pytester: pytest.Pytester,
) -> None:
    some, every = pytester.getitems(
        """
        import pytest

        pytestmark = pytest.mark.allow_rng_leak("numpy")

        @pytest.mark.allow_rng_leak("random", reason="seeds on purpose")
        def test_some():
            pass

        @pytest.mark.allow_rng_leak()
        def test_every():
            pass
        """
    )
    assert reader().read(some).allowed == frozenset({"random", "numpy"})
    assert reader().read(every).allowed is None


def test_a_bad_allow_rng_leak_argument_is_kept_as_the_message_that_fails_the_setup(
    pytester: pytest.Pytester,
) -> None:
    unknown, keyword = pytester.getitems(
        """
        import pytest

        @pytest.mark.allow_rng_leak("jax")
        def test_unknown():
            pass

        @pytest.mark.allow_rng_leak("random", why="no")
        def test_keyword():
            pass
        """
    )
    assert reader().read(unknown).allow_problem == (
        f"{unknown.nodeid}: allow_rng_leak got 'jax', which is not a source; "
        f"known sources are numpy, random, torch"
    )
    assert reader().read(keyword).allow_problem == (
        f"{keyword.nodeid}: allow_rng_leak got unknown keyword(s) ['why']; "
        f"it takes source names and reason="
    )


def test_a_deterministic_test_gets_its_recipe_with_a_seed_derived_from_its_node_id(
    pytester: pytest.Pytester,
) -> None:
    derived, explicit = pytester.getitems(
        """
        import pytest

        @pytest.mark.deterministic
        def test_derived():
            pass

        @pytest.mark.deterministic(7, env={"A": "1"}, warn_only=True)
        def test_explicit():
            pass
        """
    )
    marks = reader(seed=5, env_set=(("B", "2"),))
    assert marks.read(derived).recipe == Recipe(derive_seed(5, derived.nodeid), (("B", "2"),))
    assert marks.read(explicit).recipe == Recipe(7, (("B", "2"), ("A", "1")), True, True)


def test_repeat_gives_the_runs_and_a_bad_one_a_single_run_and_the_setups_message(
    pytester: pytest.Pytester,
) -> None:
    default, three, bad, plain = pytester.getitems(
        """
        import pytest

        @pytest.mark.deterministic
        def test_default():
            pass

        @pytest.mark.deterministic(repeat=3)
        def test_three():
            pass

        @pytest.mark.deterministic(repeat=0)
        def test_bad():
            pass

        def test_plain():
            pass
        """
    )
    read = reader(repeat=2).read
    assert [read(item).runs for item in (default, three, bad, plain)] == [2, 3, 1, 1]
    marks = read(bad)
    assert marks.recipe is None
    assert marks.deterministic_problem == (
        f"{bad.nodeid}: deterministic: repeat must be an integer >= 1, got 0"
    )


def test_a_custom_nodes_setup_is_not_plain(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        class Checked(pytest.Item):
            def setup(self):
                pass

            def runtest(self):
                pass

        class Spec(pytest.File):
            def collect(self):
                yield Checked.from_parent(self, name="check")

        def pytest_collect_file(file_path, parent):
            if file_path.suffix == ".spec":
                return Spec.from_parent(parent, path=file_path)
        """
    )
    pytester.makefile(".spec", "")
    pytester.makepyfile("def test_plain():\n    pass\n")
    items, _ = pytester.inline_genitems()
    assert {item.name: reader().read(item).plain_setups for item in items} == {
        "check": False,
        "test_plain": True,
    }
