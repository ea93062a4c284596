"""A deterministic test's lifecycle in the session: the recipe applied at the start of its
setup, held against reseeding plugins while it runs, and undone after its teardown.

:mod:`.determinism` applies and undoes a recipe; this module ties that to the session's
monitor and ledger: the seeds are the test's own changes (never reported as its leaks, put
back with its other changes), and a library first imported during the test is seeded too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .compat import seed_hypothesis, unseed_hypothesis

if TYPE_CHECKING:
    import pytest

    from .determinism import Applied, Recipe
    from .session import Guard, ItemRun


def start_deterministic(guard: Guard, item: pytest.Item, run: ItemRun, recipe: Recipe) -> None:
    from .determinism import RECIPE_DETAILS, apply

    monitor = guard.monitor

    def hold(_: tuple[str, ...] = ()) -> None:
        # Again for a library first imported during the test, seeded as its import finished.
        recipe_set = {(name, "") for name in applied.seeded}
        recipe_set.update(("env", name) for name in applied.env)
        if applied.flags is not None:
            recipe_set.update(("torch.flags", detail) for detail in RECIPE_DETAILS)
        run.recipe_set = frozenset(recipe_set)
        if guard.watching:
            monitor.held = frozenset(applied.seeded)

    def record(name: str, before: Any) -> None:
        # The seeds are the test's changes: undone with the rest of them, after a wider
        # fixture set up during the test has had its own change kept.  An unchecked
        # source's seed is nobody else's: ``finish_deterministic`` puts it back.  The
        # environment and torch flags the recipe sets: what the test changed of them goes
        # back past the recipe, unless --rngguard-restore=none keeps the test's changes.
        source = monitor.source(name)
        if source is not None and (source.seedable or guard.settings.restore != "none"):
            guard.ledger.record(run, name, before)

    listeners = monitor.import_listeners if monitor.watching_imports else None
    with monitor.paused():
        applied = apply(recipe, guard.seeding, adopted=hold, record=record, listeners=listeners)
    run.applied, run.seed = applied, recipe.seed
    if guard.gate.unlogged or guard.gate.compares:
        guard.results.compared = True
    hold()
    function = getattr(item, "obj", None)
    if hasattr(function, "hypothesis"):
        # What ``@hypothesis.seed(n)`` does: examples are derived from the test's seed.
        run.hypothesis = seed_hypothesis(function, recipe.seed)
    if guard.watching:
        monitor.reset()


def finish_deterministic(guard: Guard, run: ItemRun, applied: Applied) -> None:
    """Undo what the recipe set beside the sources (the environment, the flags); the seeded
    sources go back with the test's other changes."""
    if run.hypothesis is not None:
        unseed_hypothesis(run.hypothesis)
    from .determinism import undo

    monitor = guard.monitor
    unchecked = {n: state for n, state in applied.states.items() if monitor.source(n) is None}
    with monitor.paused():
        undo(applied, guard.seeding, restore_sources=False)
        if unchecked:
            guard.seeding.restore(unchecked)
    monitor.held = frozenset()
