"""The user-facing ``LLM`` class and the two ways it reaches its engine core."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from .engine import DEFAULT_SEED, EngineCore, run_engine_core
from .params import RequestOutput, SamplingParams

STARTUP_TIMEOUT = 120.0


def multiprocessing_enabled() -> bool:
    """``VLLM_ENABLE_V1_MULTIPROCESSING``, read the way vLLM reads it (default on)."""
    return bool(int(os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1")))


class EngineClient(Protocol):
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[RequestOutput]: ...

    def shutdown(self) -> None: ...


class InprocClient:
    """The engine core in this process: its seeding changes this process's generators."""

    def __init__(self, model: str, seed: int, nondeterministic_sampling: bool) -> None:
        self.core = EngineCore(model, seed, nondeterministic_sampling=nondeterministic_sampling)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[RequestOutput]:
        return self.core.generate(prompts, params)

    def shutdown(self) -> None:
        pass


class MPClient:
    """The engine core in a worker process started with ``spawn`` (as vLLM does once CUDA
    may be in use): it seeds and samples there, and this process's generators stay as
    they were."""

    def __init__(self, model: str, seed: int, nondeterministic_sampling: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=run_engine_core,
            args=(child, model, seed, nondeterministic_sampling),
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

    ``seed=None`` means vLLM V1's default seed, 0: the engine is always seeded.  Where the
    seeding happens depends on ``VLLM_ENABLE_V1_MULTIPROCESSING`` at construction time: in
    a worker process by default, in this very process when it is ``"0"``.

    ``nondeterministic_sampling=True`` plants a source of randomness that no seed controls,
    for the reproducibility gate to catch.
    """

    def __init__(
        self, model: str, seed: int | None = None, *, nondeterministic_sampling: bool = False
    ) -> None:
        self.model = model
        self.seed = DEFAULT_SEED if seed is None else seed
        self.in_process = not multiprocessing_enabled()
        client = InprocClient if self.in_process else MPClient
        self._client: EngineClient = client(model, self.seed, nondeterministic_sampling)

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
