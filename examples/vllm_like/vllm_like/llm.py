"""The user-facing ``LLM`` class and the two ways it reaches its engine core."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import warnings
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from .engine import EngineCore, run_engine_core
from .params import RequestOutput, SamplingParams
from .seeding import DEFAULT_SEED

STARTUP_TIMEOUT = 120.0


def multiprocessing_enabled() -> bool:
    """``VLLM_ENABLE_V1_MULTIPROCESSING``, read the way vLLM reads it (default on)."""
    return bool(int(os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1")))


class EngineClient(Protocol):
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[RequestOutput]: ...

    def shutdown(self) -> None: ...


class InprocClient:
    """The engine core in this process: its seeding changes this process's generators."""

    def __init__(self, model: str, seed: int, dp_index: int, nondeterministic: bool) -> None:
        self.core = EngineCore(
            model, seed, data_parallel_index=dp_index, nondeterministic_sampling=nondeterministic
        )

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[RequestOutput]:
        return self.core.generate(prompts, params)

    def shutdown(self) -> None:
        pass


class MPClient:
    """The engine core in a worker process started with ``spawn`` (as vLLM does once CUDA
    may be in use): it seeds and samples there, and this process's generators stay as
    they were."""

    def __init__(self, model: str, seed: int, dp_index: int, nondeterministic: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=run_engine_core,
            args=(child, model, seed, dp_index, nondeterministic),
            name="EngineCore",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._finalizer = weakref.finalize(self, _stop, self._process, self._connection)
        if not self._connection.poll(STARTUP_TIMEOUT):
            self.shutdown()
            raise RuntimeError("the engine core process did not start")
        self._answer(self._connection.recv())

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[RequestOutput]:
        self._connection.send(("generate", (list(prompts), params)))
        result: list[RequestOutput] = self._answer(self._connection.recv())
        return result

    def shutdown(self) -> None:
        self._finalizer()

    def _answer(self, message: tuple[str, Any]) -> Any:
        status, payload = message
        if status == "error":
            self.shutdown()
            raise RuntimeError(f"the engine core process failed:\n{payload}")
        return payload


def _stop(process: multiprocessing.process.BaseProcess, connection: Any) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        connection.send(("shutdown", None))
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join()
    connection.close()


class LLM:
    """Offline generation, like ``vllm.LLM``.

    ``seed`` is an ``int``, 0 by default, as in vLLM: the engine is always seeded, and
    ``seed=None`` (deprecated) seeds it with 0 too.  Where the seeding happens depends on
    ``VLLM_ENABLE_V1_MULTIPROCESSING`` at construction time: in a worker process by default,
    in this very process when it is ``"0"``.  ``data_parallel_rank`` above 0 derives the
    worker's second seed from the seed and the rank, as vLLM's data-parallel engines do.

    ``nondeterministic_sampling=True`` plants a source of randomness that no seed controls,
    for the reproducibility gate to catch.
    """

    def __init__(
        self,
        model: str,
        seed: int = DEFAULT_SEED,
        *,
        data_parallel_rank: int = 0,
        nondeterministic_sampling: bool = False,
    ) -> None:
        if seed is None:
            warnings.warn(
                "seed=None is deprecated: the engine is seeded with 0 all the same",
                DeprecationWarning,
                stacklevel=2,
            )
            seed = DEFAULT_SEED
        self.model = model
        self.seed = seed
        self.in_process = not multiprocessing_enabled()
        client = InprocClient if self.in_process else MPClient
        self._client: EngineClient = client(
            model, seed, data_parallel_rank, nondeterministic_sampling
        )

    def generate(
        self, prompts: str | Sequence[str], sampling_params: SamplingParams | None = None
    ) -> list[RequestOutput]:
        if isinstance(prompts, str):
            prompts = [prompts]
        return self._client.generate(prompts, sampling_params or SamplingParams())

    def shutdown(self) -> None:
        """Stop the worker process, if there is one."""
        self._client.shutdown()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
