"""The engine core: one per ``LLM``, in the caller's process or in a worker process.

Building it starts its worker the way vLLM's does: the worker initialises its device (and
seeds every global generator), loads the model, warms up (drawing from the global generators)
and seeds them all again.  In the caller's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``)
that reseeds the user's ``random``, NumPy and torch generators; in a worker process it does
not touch them.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection

from .params import RequestOutput, SamplingParams
from .worker import Worker


class EngineCore:
    def __init__(
        self,
        model: str,
        seed: int,
        *,
        data_parallel_index: int = 0,
        nondeterministic_sampling: bool = False,
    ) -> None:
        self.worker = Worker(model, seed, data_parallel_index, nondeterministic_sampling)
        self.worker.init_device()
        self.worker.load_model()
        self.worker.compile_or_warm_up_model()

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[RequestOutput]:
        return self.worker.execute(prompts, params)


def run_engine_core(
    connection: Connection,
    model: str,
    seed: int,
    data_parallel_index: int,
    nondeterministic_sampling: bool,
) -> None:
    """The worker process's main loop: answer ``generate`` requests until ``shutdown``."""
    try:
        core = EngineCore(
            model,
            seed,
            data_parallel_index=data_parallel_index,
            nondeterministic_sampling=nondeterministic_sampling,
        )
    except Exception:
        connection.send(("error", traceback.format_exc()))
        return
    connection.send(("ready", None))
    while True:
        try:
            request, payload = connection.recv()
        except EOFError:
            return  # the client went away
        if request == "shutdown":
            return
        try:
            connection.send(("ok", core.generate(*payload)))
        except Exception:
            connection.send(("error", traceback.format_exc()))
