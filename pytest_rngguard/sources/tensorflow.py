"""TensorFlow's global seed, its global generator and its op-determinism switch.

Three pieces of process-wide state decide what TensorFlow's random ops produce:

* the **global seed** (``tf.random.set_seed``), kept by the eager context together with a
  private ``random.Random`` that hands each seedless random op its operation seed: setting
  the seed replaces that object, drawing moves it forward;
* the **global generator** (``tf.random.get_global_generator()``), a Philox counter and key
  in a variable.  ``get_global_generator`` creates it on first call, so it is read from the
  module variable behind it and never created by reading;
* **op determinism** (``tf.config.experimental.enable_op_determinism``).

Graph-mode seeds (``tf.compat.v1`` graphs) belong to a graph object, not to the process,
and are not watched.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from . import _mt19937 as mt
from .base import ADVANCED, CHANGED, REPLACED, RESEEDED, Difference, ModuleSource, Seeder

GENERATOR = "global_generator"
OP_DETERMINISM = "op_determinism"

_CONTEXT = "tensorflow.python.eager.context"
_RANDOM_SEED = "tensorflow.python.framework.random_seed"
_STATEFUL = "tensorflow.python.ops.stateful_random_ops"
_CONFIG = "tensorflow.python.framework.config"


class Held:
    """An object a state keeps for ``restore`` without being part of its value: states compare
    equal, and fingerprint alike, across runs and processes whatever objects they hold."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Held)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "Held(...)"


class TensorflowState(NamedTuple):
    """Compares equal exactly when TensorFlow would produce the same numbers."""

    seed: Any  # the eager global seed, None when unset
    op_seeds: Any  # state of the ``random.Random`` that derives operation seeds from it
    generator_state: bytes | None  # the global generator's int64 words; None if none exists
    op_determinism: bool
    generator: Held  # the global ``tf.random.Generator`` object itself (or None)


def _tf(name: str) -> Any:
    """A module of ``tensorflow.python`` (loaded with TensorFlow: no import happens)."""
    return importlib.import_module(f"tensorflow.python.{name}")


def _describe_seed(seed: Any) -> str:
    return "unset" if seed is None else repr(seed)


def _counter_and_key(raw: bytes) -> tuple[int, int]:
    """A counter-based generator's state is its counter words followed by one key word."""
    return int.from_bytes(raw[:-8], sys.byteorder), int.from_bytes(raw[-8:], sys.byteorder)


def _looks_seeded(raw: bytes) -> bool:
    """``Generator.from_seed(n)`` / ``reset_from_seed(n)`` with an integer ``n`` < 2**64
    give the state ``[n, 0, 0]``: the key and every counter word above the first are 0."""
    return not any(raw[8:])


def _classify_generator(before: TensorflowState, after: TensorflowState) -> Difference | None:
    old, new = before.generator_state, after.generator_state
    if old == new:
        return None
    if new is None:
        return Difference(REPLACED, GENERATOR, "removed")
    if old is None:
        if _looks_seeded(new):
            return Difference(RESEEDED, GENERATOR, "created from a seed")
        return Difference(ADVANCED, GENERATOR, "created on first use")
    if before.generator.obj is not after.generator.obj and after.generator.obj is not None:
        return Difference(REPLACED, GENERATOR, "set_global_generator")
    (old_counter, old_key), (new_counter, new_key) = _counter_and_key(old), _counter_and_key(new)
    if new_key == old_key and new_counter > old_counter:
        return Difference(ADVANCED, GENERATOR, f"counter +{new_counter - old_counter}")
    if _looks_seeded(new):
        return Difference(RESEEDED, GENERATOR, f"reset from seed {new_counter}")
    return Difference(REPLACED, GENERATOR, "state reset")


class TensorflowSource(ModuleSource):
    name = "tensorflow"
    module = "tensorflow"

    def __init__(self) -> None:
        self._memory = mt.random_memory()
        self._op_seeds: Any = None
        self._view: Any = None
        self._read_variable: Any = None

    def available(self) -> bool:
        return self.module in sys.modules and _CONTEXT in sys.modules

    # -- reading ----------------------------------------------------------------------------

    def _draws(self, rng: Any) -> Any:
        if self._memory is None:
            return rng.getstate()
        if rng is not self._op_seeds:
            self._op_seeds, self._view = rng, self._memory.view(rng)
        return self._view.raw

    def _generator_state(self, generator: Any) -> bytes:
        variable = generator.state
        context = sys.modules[_CONTEXT]
        if not context.executing_eagerly():
            # Called from inside a function being traced (a seeder used in tf.function).
            with _tf("framework.ops").init_scope():
                return bytes(variable.numpy().tobytes())
        try:
            # The raw op is a fifth of the cost of ``variable.numpy()`` (tens of µs).
            read = self._read_variable
            if read is None:
                read = _tf("ops.gen_resource_variable_ops").read_variable_op
                self._read_variable = read
            return bytes(read(variable.handle, variable.dtype)._numpy().tobytes())
        except Exception:  # a distributed or mirrored variable: the public way
            return bytes(variable.numpy().tobytes())

    def capture(self) -> TensorflowState:
        ctx = getattr(sys.modules[_CONTEXT], "_context", None)
        seed = getattr(ctx, "_seed", None)
        rng = getattr(ctx, "_rng", None) if seed is not None else None
        stateful = sys.modules.get(_STATEFUL)
        generator = getattr(stateful, "global_generator", None)
        config = sys.modules.get(_CONFIG)
        return TensorflowState(
            seed,
            None if rng is None else self._draws(rng),
            None if generator is None else self._generator_state(generator),
            bool(config.is_op_determinism_enabled()) if config is not None else False,
            Held(generator),
        )

    # -- writing ----------------------------------------------------------------------------

    def restore(self, state: TensorflowState) -> None:
        now = self.capture()
        if now == state:
            return  # setting the seed clears TensorFlow's kernel cache: only when needed
        if state[:2] != now[:2]:
            self._restore_seed(state)
        if state.generator.obj is not now.generator.obj or state[2] != now[2]:
            self._restore_generator(state)
        if state.op_determinism != now.op_determinism:
            config = _tf("framework.config")
            if state.op_determinism:
                config.enable_op_determinism()
            else:
                config.disable_op_determinism()

    def _restore_seed(self, state: TensorflowState) -> None:
        # What ``set_seed`` does, clearing the kernel cache too: cached random kernels carry
        # their own position, which must not outlive the seed they were created under.
        ctx = _tf("eager.context").context()
        ctx._set_global_seed(state.seed)
        if state.op_seeds is None:
            return
        if self._memory is not None:
            self._memory.write(ctx._rng, state.op_seeds)
        else:
            ctx._rng.setstate(state.op_seeds)

    def _restore_generator(self, state: TensorflowState) -> None:
        import numpy

        generator = state.generator.obj
        _tf("ops.stateful_random_ops").global_generator = generator
        if generator is None or state.generator_state is None:
            return
        if self._generator_state(generator) != state.generator_state:
            words = numpy.frombuffer(state.generator_state, dtype=numpy.int64)
            with _tf("framework.ops").init_scope():
                generator.reset(words)

    def seed(self, seed: int) -> None:
        """``tf.random.set_seed(seed)``, the global generator reset from ``seed`` (created if
        none exists yet, so that a deterministic test may use it), and op determinism on."""
        stateful_random_ops = _tf("ops.stateful_random_ops")
        _tf("framework.random_seed").set_seed(seed)
        with _tf("framework.ops").init_scope():
            generator = stateful_random_ops.global_generator
            if generator is None:
                stateful_random_ops.global_generator = stateful_random_ops.Generator.from_seed(seed)
            else:
                generator.reset_from_seed(seed)
        _tf("framework.config").enable_op_determinism()

    # -- judging ----------------------------------------------------------------------------

    def classify(self, before: TensorflowState | None, after: TensorflowState) -> list[Difference]:
        if before is None:  # loaded meanwhile: only deliberate settings are recognisable
            before = TensorflowState(None, None, None, False, Held(None))
            if after.generator_state is not None and not _looks_seeded(after.generator_state):
                after = after._replace(generator_state=None, generator=Held(None))
        changes = []
        if before.seed != after.seed:
            changes.append(
                Difference(
                    RESEEDED, "", f"{_describe_seed(before.seed)} -> {_describe_seed(after.seed)}"
                )
            )
        elif before.op_seeds != after.op_seeds:
            if self._drawn_from(before.op_seeds, after.op_seeds):
                changes.append(Difference(ADVANCED))
            else:
                changes.append(Difference(RESEEDED, "", f"{after.seed!r} set again"))
        generator = _classify_generator(before, after)
        if generator is not None:
            changes.append(generator)
        if before.op_determinism != after.op_determinism:
            changes.append(
                Difference(
                    CHANGED, OP_DETERMINISM, f"{before.op_determinism} -> {after.op_determinism}"
                )
            )
        return changes

    def _drawn_from(self, old: Any, new: Any) -> bool:
        """Whether operation seeds drawn from ``old`` lead to ``new`` (setting the seed, even
        to the same value, starts the sequence over)."""
        if self._memory is not None:
            return mt.reachable(self._memory.split(old), self._memory.split(new))
        old_words, new_words = old[1], new[1]
        return mt.reachable(
            mt.MTState(mt.key_bytes(old_words[: mt.N]), old_words[mt.N]),
            mt.MTState(mt.key_bytes(new_words[: mt.N]), new_words[mt.N]),
        )

    # -- who did it -------------------------------------------------------------------------

    def seeders(self) -> Sequence[Seeder]:
        def seed_detail(*_: Any, **__: Any) -> str:
            return ""  # the global seed, not the generator or the switch

        def flag_detail(*_: Any, **__: Any) -> str:
            return OP_DETERMINISM

        def generator_detail(*_: Any, **__: Any) -> str:
            return GENERATOR

        def global_generator_only(generator: Any, *_: Any, **__: Any) -> str | None:
            stateful = sys.modules.get(_STATEFUL)
            if generator is getattr(stateful, "global_generator", None):
                return GENERATOR
            return None  # a local tf.random.Generator is nobody's business

        seeds = (
            (_RANDOM_SEED, "set_seed"),
            (_RANDOM_SEED, "set_random_seed"),
            ("tensorflow", "random.set_seed"),
            ("tensorflow", "compat.v1.set_random_seed"),
            ("tensorflow", "compat.v1.random.set_random_seed"),
        )
        switches = (
            (_CONFIG, "enable_op_determinism"),
            (_CONFIG, "disable_op_determinism"),
            ("tensorflow", "config.experimental.enable_op_determinism"),
        )
        return (
            *(Seeder(module, target, RESEEDED, seed_detail) for module, target in seeds),
            *(Seeder(module, target, CHANGED, flag_detail) for module, target in switches),
            Seeder(_STATEFUL, "set_global_generator", REPLACED, generator_detail),
            Seeder("tensorflow", "random.set_global_generator", REPLACED, generator_detail),
            Seeder(
                "tensorflow",
                "random.experimental.set_global_generator",
                REPLACED,
                generator_detail,
            ),
            Seeder(_STATEFUL, "Generator.reset_from_seed", RESEEDED, global_generator_only),
            Seeder(_STATEFUL, "Generator.reset", REPLACED, global_generator_only),
            Seeder(_STATEFUL, "Generator.reset_from_key_counter", REPLACED, global_generator_only),
        )
