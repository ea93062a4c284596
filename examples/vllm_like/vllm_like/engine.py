"""The engine core: a tiny deterministic "model", its sampler, and the seeding that vLLM V1
does wherever the engine core runs.

vLLM's worker calls ``set_random_seed(model_config.seed)`` when it starts, and in V1 the seed
is never unset (``seed=None`` means the default seed 0).  With multiprocessing on (the
default) that happens in a worker process; with ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` the
engine core runs in the process that constructed ``LLM`` and reseeds the user's ``random``,
NumPy and torch generators.  This module does the same, without downloading any weights.
"""

from __future__ import annotations

import os
import random
import traceback
import zlib
from collections.abc import Sequence
from multiprocessing.connection import Connection

import numpy as np
import torch

from .params import RequestOutput, SamplingParams

#: vLLM V1's default seed: a V1 engine is always seeded.
DEFAULT_SEED = 0

VOCAB = "abcdefghijklmnopqrstuvwxyz .,!?'"
HIDDEN = 24
CONTEXT = 8


def set_random_seed(seed: int) -> None:
    """Seed every global generator, as vLLM's worker does on start-up."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def encode(text: str) -> list[int]:
    return [VOCAB.index(ch) for ch in text.lower() if ch in VOCAB]


def decode(token_ids: Sequence[int]) -> str:
    return "".join(VOCAB[i] for i in token_ids)


class TinyModel:
    """A fixed random projection standing in for a language model.

    Its weights come from the model's name through a local generator, the way real weights
    come from a checkpoint: they never depend on, or touch, global random state.
    """

    def __init__(self, name: str) -> None:
        weights = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        self.embedding = torch.randn(len(VOCAB), HIDDEN, generator=weights)
        self.projection = torch.randn(HIDDEN, len(VOCAB), generator=weights)

    def logits(self, token_ids: Sequence[int]) -> torch.Tensor:
        context = torch.tensor(list(token_ids[-CONTEXT:]) or [0])
        hidden = torch.tanh(self.embedding[context].mean(dim=0))
        return 2.0 * hidden @ self.projection


class EngineCore:
    """Loads the model and samples; one per ``LLM``, in-process or in a worker process."""

    def __init__(self, model: str, seed: int, *, nondeterministic_sampling: bool = False) -> None:
        set_random_seed(seed)
        self.model = TinyModel(model)
        self.nondeterministic_sampling = nondeterministic_sampling

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[RequestOutput]:
        return [self._complete(prompt, params) for prompt in prompts]

    def _complete(self, prompt: str, params: SamplingParams) -> RequestOutput:
        # vLLM samples with the global generator unless the request brings its own seed.
        generator = None if params.seed is None else torch.Generator().manual_seed(params.seed)
        token_ids = encode(prompt)
        new: list[int] = []
        logprob = 0.0
        for _ in range(params.max_tokens):
            logits = self.model.logits(token_ids + new)
            if self.nondeterministic_sampling:
                logits = logits + _entropy_noise(len(VOCAB))
            if params.temperature == 0:
                token = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits / params.temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            logprob += float(torch.log_softmax(logits, dim=-1)[token])
            new.append(token)
        return RequestOutput(prompt, tuple(new), decode(new), logprob)


def _entropy_noise(size: int) -> torch.Tensor:
    """The planted bug: noise from the OS, which no seed controls (think of a reduction whose
    order depends on thread timing)."""
    raw = np.frombuffer(os.urandom(4 * size), dtype=np.uint32)
    return torch.from_numpy(raw / 2.0**32 * 4.0 - 2.0).float()


def run_engine_core(
    connection: Connection, model: str, seed: int, nondeterministic_sampling: bool
) -> None:
    """The worker process's main loop: answer ``generate`` requests until ``shutdown``."""
    try:
        core = EngineCore(model, seed, nondeterministic_sampling=nondeterministic_sampling)
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
