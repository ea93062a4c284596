"""An observer for inner runs: what each test's body starts from, read without touching it.

Loaded into an inner pytest run with ``-p rng_observer`` (the tests copy this file into the
run's folder).  Just before each test function runs (``pytest_runtest_call``), it appends one
JSON line to the file named by ``RNG_OBSERVATIONS``: the test's node id, the xdist worker,
and a fingerprint of every global random state that is loaded (``random``, NumPy's legacy
global, torch's CPU generator and seed), the watched environment variables and torch's
determinism flags.  It only reads (``getstate``, ``get_state``, ``get_rng_state``), so what
it records is what the test sees, independently of anything the plugin reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from typing import Any

import pytest

WATCHED = ("PL_GLOBAL_SEED", "CUBLAS_WORKSPACE_CONFIG", "VLLM_ENABLE_V1_MULTIPROCESSING")


def fingerprint(data: bytes | str) -> str:
    raw = data if isinstance(data, bytes) else data.encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def random_print(state: Any) -> str:
    """The fingerprint of a ``random.getstate()`` (of the module or of any ``Random``)."""
    return fingerprint(repr(state))


def numpy_print(state: Any) -> str:
    """The fingerprint of a legacy ``get_state()`` tuple."""
    return fingerprint(state[1].tobytes() + repr(state[2:]).encode())


def torch_print(generator_state: Any) -> str:
    return fingerprint(bytes(generator_state.numpy().tobytes()))


def observe() -> dict[str, Any]:
    seen: dict[str, Any] = {"random": random_print(random.getstate())}
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        seen["numpy"] = numpy_print(np_random.get_state())
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_rng_state"):
        seen["torch"] = torch_print(torch.get_rng_state())
        seen["torch_seed"] = torch.initial_seed()
        seen["flags"] = [
            torch.are_deterministic_algorithms_enabled(),
            bool(torch.backends.cudnn.benchmark),
        ]
    seen["env"] = {name: os.environ.get(name) for name in WATCHED}
    return seen


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    path = os.environ.get("RNG_OBSERVATIONS")
    if not path:
        return
    line = {
        "nodeid": item.nodeid,
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "seen": observe(),
    }
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The observations of a run, in the order the tests ran (per worker)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
