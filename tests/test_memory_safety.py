"""Tampering with the libraries' globals through their public APIs never corrupts memory.

The ``random``, ``numpy`` and ``torch`` sources read (and, to put a state back, write) the
generators' memory directly where a check at start-up proved the layout, because it is many
times faster than the public ``getstate``.  That is safe only on an object the source holds
and re-validates (identity and exact type) at every use.  These inner runs swap NumPy's bit
generator for every kind NumPy ships, replace the global ``RandomState``, turn ``random``'s
global instance into a subclass and feed torch foreign generator states, under
``PYTHONMALLOC=debug`` (which aborts the interpreter on a heap overrun that a normal build
might survive by luck).  Each run must end normally, report each tamper, and let the next
test start from the state the suite had before the tamper: observed by the tests themselves
(``rng_observer``), never taken from the plugin's report.

The sources' own tests run under ``PYTHONMALLOC=debug`` too, in the ``memory`` tox
environment.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import require
from test_scopes import by_test, observed

BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")

NUMPY_SUITE = (
    """
    import numpy as np
    import numpy.random  # loaded lazily otherwise: the first probe would not see it

    def test_0_probe():
        pass
    """
    + "".join(
        f"""
    def test_swaps_to_{name.lower()}():
        np.random.set_bit_generator(np.random.{name}(1))
        np.random.random(10_000)
        np.random.standard_normal(3)

    def test_probe_after_{name.lower()}():
        pass
    """
        for name in BIT_GENERATORS
    )
    + """
    def test_replaces_the_global_random_state():
        from numpy.random import mtrand

        original = mtrand._rand
        mtrand._rand = np.random.RandomState(5)
        try:
            # np.random.seed acts on mtrand._rand (the stand-in); np.random.random and the
            # other drawing functions are bound to the original, which is what is watched.
            np.random.seed(3)
            np.random.set_bit_generator(np.random.PCG64(4))
        finally:
            mtrand._rand = original
        np.random.seed(6)  # the original again: a leak

    def test_probe_after_replacing():
        pass

    def test_swaps_twice_and_draws_gaussians():
        np.random.set_bit_generator(np.random.Philox(2))
        np.random.standard_normal(5)
        np.random.set_bit_generator(np.random.SFC64(3))
        np.random.standard_normal(5)

    def test_probe_after_twice():
        pass
    """
)

RANDOM_SUITE = """
import random

class Subclassed(random.Random):
    def getstate(self):
        return super().getstate()

def test_0_probe():
    pass

def test_turns_the_global_instance_into_a_subclass():
    inst = random.getstate.__self__
    inst.__class__ = Subclassed
    try:
        random.seed(11)
        random.random()
    finally:
        inst.__class__ = random.Random

def test_probe_after_subclass():
    pass

def test_replaces_the_module_instance():
    original = random._inst
    random._inst = random.Random(4)
    try:
        random.seed(8)  # bound to the original instance
        random.random()
    finally:
        random._inst = original

def test_probe_after_module_instance():
    pass

def test_sets_a_foreign_state():
    random.setstate(random.Random(99).getstate())

def test_probe_after_foreign():
    pass
"""

TORCH_SUITE = """
import pytest
import torch

def test_0_probe():
    pass

def test_sets_foreign_states():
    for seed in (0, 1, 2**40 + 7):
        other = torch.Generator().manual_seed(seed)
        torch.randn(7, generator=other)  # a cached normal in the state
        torch.set_rng_state(other.get_state())
        torch.rand(100)

def test_probe_after_foreign():
    pass

def test_a_state_of_the_wrong_size_is_refused_by_torch():
    with pytest.raises(RuntimeError):
        torch.set_rng_state(torch.zeros(17, dtype=torch.uint8))

def test_probe_after_refused():
    pass

def test_sets_a_state_of_arbitrary_bytes():
    state = torch.get_rng_state()
    state[24:1000] = torch.arange(976, dtype=torch.int64).to(torch.uint8)
    torch.set_rng_state(state)
    torch.rand(10)
    torch.randn(3, dtype=torch.float64)

def test_probe_after_bytes():
    pass
"""


def _stressed(pytester: pytest.Pytester, suite: str, *args: str) -> tuple[Any, Any, Any]:
    pytester.makepyfile(test_stress=suite)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONMALLOC", "debug")
        return observed(pytester, "-p", "no:randomly", *args)


def _probes(lines: list[dict[str, Any]], source: str) -> dict[str, Any]:
    return {name: seen[source] for name, seen in by_test(lines).items() if "probe" in name}


MODES = [(), ("--rngguard-strict", "--rngguard-restore=all"), ("--rngguard-trace",)]


@pytest.mark.parametrize("args", MODES, ids=["default", "strict-restore-all", "trace"])
def test_numpy_bit_generators_swapped_and_the_global_replaced(
    pytester: pytest.Pytester, args: tuple[str, ...]
) -> None:
    require("numpy")
    result, report, lines = _stressed(pytester, NUMPY_SUITE, *args)
    assert result.ret == 0, result.stdout.str()[-3000:] + result.stderr.str()[-3000:]
    probes = _probes(lines, "numpy")
    assert len(probes) == len(BIT_GENERATORS) + 3
    assert len(set(probes.values())) == 1, probes  # every probe sees the state before
    leaked = {leak["nodeid"].rpartition("::")[2] for leak in report["leaks"]}
    swapped = {f"test_swaps_to_{name.lower()}" for name in BIT_GENERATORS}
    assert swapped | {"test_replaces_the_global_random_state"} <= leaked
    assert all(leak["restored"] for leak in report["leaks"]), report["leaks"]


@pytest.mark.parametrize("args", MODES, ids=["default", "strict-restore-all", "trace"])
def test_random_subclassed_and_replaced(pytester: pytest.Pytester, args: tuple[str, ...]) -> None:
    result, report, lines = _stressed(pytester, RANDOM_SUITE, *args)
    assert result.ret == 0, result.stdout.str()[-3000:] + result.stderr.str()[-3000:]
    probes = _probes(lines, "random")
    assert len(probes) == 4
    assert len(set(probes.values())) == 1, probes
    kinds = {(leak["nodeid"].rpartition("::")[2], leak["kind"]) for leak in report["leaks"]}
    assert {
        ("test_turns_the_global_instance_into_a_subclass", "reseeded"),
        ("test_replaces_the_module_instance", "reseeded"),
        ("test_sets_a_foreign_state", "replaced"),
    } <= kinds


@pytest.mark.parametrize("args", MODES, ids=["default", "strict-restore-all", "trace"])
def test_torch_fed_foreign_states(pytester: pytest.Pytester, args: tuple[str, ...]) -> None:
    require("torch")
    result, report, lines = _stressed(pytester, TORCH_SUITE, *args)
    assert result.ret == 0, result.stdout.str()[-3000:] + result.stderr.str()[-3000:]
    probes = _probes(lines, "torch")
    assert len(probes) == 4
    assert len(set(probes.values())) == 1, probes
    leaked = {leak["nodeid"].rpartition("::")[2] for leak in report["leaks"]}
    assert {"test_sets_foreign_states", "test_sets_a_state_of_arbitrary_bytes"} <= leaked
    assert "test_a_state_of_the_wrong_size_is_refused_by_torch" not in leaked
