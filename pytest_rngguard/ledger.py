"""Scoped undo: every change belongs to the scope that made it, and is undone when it ends.

A scope is a test (its setup, body and teardown), a fixture of a wider scope (until it is
finalised) or a collector (a test module's import: its tests).  For each source the ledger
keeps the changes not yet undone, oldest first, each with its scope (the *owner*) and the
state the source had before it.  When a scope ends, each of its changes is undone:

* if it is the latest change of that source, the source goes back to the state before it;
* if a scope still running changed the source after it (a module fixture set up inside the
  test, say), nothing is put back yet: the later change now also carries the earlier one's
  state, so the source goes back past both when that scope ends.

Scopes nest in time (a module's tests start after its import, a fixture ends after the tests
that use it), so the second case only arises when a wider scope begins inside a narrower one.
The ledger knows nothing of pytest: owners are any objects, compared by identity.
"""

from __future__ import annotations

from typing import Any


class Putback:
    """Whether a leak's change was put back: ``done`` is None until its scope ended, then
    whether the source read back as it was asked to be, with ``why`` when it did not."""

    __slots__ = ("done", "held", "why")

    def __init__(self) -> None:
        self.done: bool | None = None
        self.why = ""
        #: Whether the change is recorded to be undone (not under ``--rngguard-restore=none``).
        self.held = False

    def settle(self, done: bool, why: str = "") -> None:
        self.done, self.why = done, why


class _Entry:
    __slots__ = ("before", "owner", "putbacks")

    def __init__(self, owner: object, before: Any, putbacks: list[Putback]) -> None:
        self.owner = owner
        self.before = before
        self.putbacks = putbacks


#: What a scope's end puts back: per source, the state to restore and the leaks it undoes.
Targets = dict[str, tuple[Any, list[Putback]]]


class Ledger:
    __slots__ = ("_entries", "owners")

    def __init__(self) -> None:
        self._entries: dict[str, list[_Entry]] = {}
        #: ``id()`` of each owner with at least one entry, and how many: a scope that changed
        #: nothing ends for free (the hot paths test ``id(owner) in owners`` without a call).
        self.owners: dict[int, int] = {}

    def __bool__(self) -> bool:
        return bool(self._entries)

    def owns(self, owner: object) -> bool:
        return id(owner) in self.owners

    def record(self, owner: object, name: str, before: Any, putback: Putback | None = None) -> None:
        """Note that ``owner`` changed source ``name``, which was ``before`` until then."""
        if putback is not None:
            putback.held = True
        stack = self._entries.setdefault(name, [])
        if stack and stack[-1].owner is owner:
            # Changed again by the same scope: the oldest state is the one to go back to.
            if putback is not None:
                stack[-1].putbacks.append(putback)
            return
        stack.append(_Entry(owner, before, [putback] if putback is not None else []))
        self.owners[id(owner)] = self.owners.get(id(owner), 0) + 1

    def release(self, owner: object) -> Targets:
        """End ``owner``'s scope: the states to put back now (see the module's docstring)."""
        if self.owners.pop(id(owner), None) is None:
            return {}
        targets: Targets = {}
        for name in list(self._entries):
            stack = self._entries[name]
            for index in range(len(stack) - 1, -1, -1):
                entry = stack[index]
                if entry.owner is not owner:
                    continue
                if index == len(stack) - 1:
                    targets[name] = (entry.before, entry.putbacks)
                    stack.pop()
                else:
                    later = stack[index + 1]
                    later.before = entry.before
                    later.putbacks.extend(entry.putbacks)
                    del stack[index]
            if not stack:
                del self._entries[name]
        return targets

    def release_all(self) -> Targets:
        """End every scope at once (the session is over): each source back to the state
        before the oldest change still recorded."""
        targets: Targets = {}
        for name, stack in self._entries.items():
            putbacks = [p for entry in stack for p in entry.putbacks]
            targets[name] = (stack[0].before, putbacks)
        self._entries.clear()
        self.owners.clear()
        return targets
