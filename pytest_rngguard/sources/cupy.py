"""CuPy's global ``RandomState`` per device (``cupy.random.seed``, ``cupy.random.rand``, ...).

CuPy creates one ``RandomState`` per device on first use and keeps them in
``cupy.random._generator._random_states``; reading that dict touches no device, so this
source never initialises CUDA.  Each ``RandomState`` wraps a cuRAND generator, and cuRAND
offers no way to read a generator's seed or position back, so what is watched is:

* which ``RandomState`` each device has (``set_random_state``, ``reset_states``: undone
  exactly, the replaced objects are kept and put back);
* its Python-side seed ``_rk_seed``: set by ``seed()``, moved forward by the distributions
  CuPy draws with its own kernels (``beta``, ``poisson``, ``gamma``, ...);
* the calls the plugin saw setting it (``seed``, ``set_random_state``), so that seeding
  again with the same value, or installing an equal state, is still seen;
* ``CUPY_SEED``, which seeds the states CuPy creates from then on.

Draws served by cuRAND (``rand``, ``randn``, ``uniform``, ``normal``, ``randint``,
``choice``, ``shuffle``, ``permutation``) leave nothing readable: they are never reported,
not even as ``advanced``.  A reseed in place is undone by seeding the state again with the
seed it had, which puts cuRAND back at offset 0 rather than where it was.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from .base import ADVANCED, CHANGED, REPLACED, RESEEDED, Difference, ModuleSource, Seeder
from .tensorflow import Held

ENV_SEED = "CUPY_SEED"
_GENERATOR = "cupy.random._generator"


class DeviceState(NamedTuple):
    device: int
    seed: int  # the RandomState's ``_rk_seed``
    random_state: Held  # the RandomState object itself, for restore


class CupyState(NamedTuple):
    devices: tuple[DeviceState, ...]
    #: (device, count) of the calls seen setting a device's state, for every device seen.
    settings: tuple[tuple[int, int], ...]
    env_seed: str | None  # CUPY_SEED


def _states() -> dict[int, Any]:
    generator = sys.modules.get(_GENERATOR)
    # ``reset_states`` rebinds the module's dict: look it up every time.
    states = getattr(generator, "_random_states", None)
    return states if isinstance(states, dict) else {}


def _label(device: int) -> str:
    return f"cuda:{device}"


class CupySource(ModuleSource):
    name = "cupy"
    module = "cupy"

    def __init__(self) -> None:
        # Part of the state: restored with it, so equal states compare equal again.
        self._settings: dict[int, int] = {}

    def capture(self) -> CupyState:
        devices = tuple(
            DeviceState(device, rs._rk_seed, Held(rs))
            for device, rs in sorted(_states().items(), key=lambda item: item[0])
        )
        return CupyState(devices, tuple(sorted(self._settings.items())), os.environ.get(ENV_SEED))

    def restore(self, state: CupyState) -> None:
        if state.env_seed is None:
            os.environ.pop(ENV_SEED, None)
        elif os.environ.get(ENV_SEED) != state.env_seed:
            os.environ[ENV_SEED] = state.env_seed
        states = _states()
        wanted = {d.device for d in state.devices}
        for device in [d for d in states if d not in wanted]:
            del states[device]
        settings = dict(state.settings)
        for saved in state.devices:
            rs: Any = saved.random_state.obj
            counted = self._settings.get(saved.device, 0) != settings.get(saved.device, 0)
            in_place = states.get(saved.device) is rs
            if counted and in_place:
                # Reseeded in place since: cuRAND's position cannot be read, so it goes back
                # to the seed it had, at offset 0.
                with sys.modules["cupy"].cuda.Device(saved.device):
                    rs.seed(saved.seed)
            states[saved.device] = rs
            rs._rk_seed = saved.seed
        self._settings = settings

    def seed(self, seed: int) -> None:
        """Give every device that has a state a fresh one seeded with ``seed`` (the old ones
        are kept for restore, untouched), and set ``CUPY_SEED`` so that states created
        during the test start from it too, without this source initialising any device."""
        os.environ[ENV_SEED] = str(seed)
        states = _states()
        if not states:
            return
        cupy, generator = sys.modules["cupy"], sys.modules[_GENERATOR]
        for device, rs in list(states.items()):
            with cupy.cuda.Device(device):
                states[device] = generator.RandomState(seed, method=rs.method)

    def classify(self, before: CupyState | None, after: CupyState) -> list[Difference]:
        old = {d.device: d for d in before.devices} if before is not None else {}
        new = {d.device: d for d in after.devices}
        old_settings = dict(before.settings) if before is not None else {}
        new_settings = dict(after.settings)
        changes = []
        for device in sorted(old.keys() | new.keys()):
            reset = old_settings.get(device, 0) != new_settings.get(device, 0)
            difference = _classify_device(old.get(device), new.get(device), reset)
            if difference is None:
                continue
            if before is None and difference.kind != RESEEDED:
                continue  # loaded meanwhile: only seeding calls are recognisable
            changes.append(difference)
        if before is not None and before.env_seed != after.env_seed:
            changes.append(
                Difference(
                    CHANGED,
                    ENV_SEED,
                    f"{_describe(before.env_seed)} -> {_describe(after.env_seed)}",
                )
            )
        return changes

    def _count(self, device: int) -> str:
        self._settings[device] = self._settings.get(device, 0) + 1
        return _label(device)

    def _seeding(self, rs: Any, *_: Any, **__: Any) -> str | None:
        """The device a ``RandomState.seed`` call reseeds, if the state is a global one.

        The monitor asks this for every intercepted call, before making it: counting the
        call here is what makes a reseed with the state's current seed visible."""
        for device, state in _states().items():
            if state is rs:
                return self._count(device)
        return None  # a local RandomState, or one being created: not global state

    def _setting(self, *_: Any, **__: Any) -> str | None:
        """The device ``set_random_state`` sets: the current one."""
        try:
            device = int(sys.modules["cupy"].cuda.device.get_device_id())
        except Exception:  # no device: the call itself is about to fail
            return None
        return self._count(device)

    def seeders(self) -> Sequence[Seeder]:
        return (
            Seeder(_GENERATOR, "RandomState.seed", RESEEDED, self._seeding),
            Seeder(_GENERATOR, "set_random_state", REPLACED, self._setting),
            Seeder("cupy.random", "set_random_state", REPLACED, self._setting),
            Seeder(_GENERATOR, "reset_states", REPLACED),
            Seeder("cupy.random", "reset_states", REPLACED),
        )


def _describe(value: str | None) -> str:
    return "unset" if value is None else repr(value)


def _classify_device(
    old: DeviceState | None, new: DeviceState | None, reset: bool
) -> Difference | None:
    """``reset``: a call setting this device's state was seen in between."""
    if new is None:
        return None if old is None else Difference(REPLACED, _label(old.device), "dropped")
    label = _label(new.device)
    if old is None:
        if reset:
            return Difference(RESEEDED, label, f"created and seeded with {new.seed}")
        return Difference(ADVANCED, label, "created on first use")
    if old.random_state.obj is not new.random_state.obj:
        return Difference(REPLACED, label, "set_random_state")
    if old == new and not reset:
        return None
    described = f"seed {old.seed} -> {new.seed}"
    # CuPy's own kernels move the seed forward by the number of values drawn; only
    # ``seed()`` moves it anywhere else.
    advanced = new.seed > old.seed and not reset
    return Difference(ADVANCED if advanced else RESEEDED, label, described)
