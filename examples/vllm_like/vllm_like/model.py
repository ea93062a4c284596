"""A tiny deterministic "model" and its sampler, in NumPy: nothing to download."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence

import numpy as np

VOCAB = "abcdefghijklmnopqrstuvwxyz .,!?'"
HIDDEN = 24
CONTEXT = 8


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
        weights = np.random.RandomState(zlib.crc32(name.encode()))
        self.embedding = weights.standard_normal((len(VOCAB), HIDDEN))
        self.projection = weights.standard_normal((HIDDEN, len(VOCAB)))

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        context = list(token_ids[-CONTEXT:]) or [0]
        hidden = np.tanh(self.embedding[context].mean(axis=0))
        return 2.0 * hidden @ self.projection


def sample(
    logits: np.ndarray, temperature: float, generator: np.random.RandomState | None
) -> tuple[int, float]:
    """One token and its log-probability.

    Without a generator of the request's own, the draw comes from NumPy's global generator,
    which the engine seeded (vLLM draws from torch's, which it seeded too).
    """
    logprobs = logits - np.logaddexp.reduce(logits)
    if temperature == 0:
        token = int(np.argmax(logits))
    else:
        scaled = logits / temperature
        probs = np.exp(scaled - np.logaddexp.reduce(scaled))
        token = int((generator or np.random).choice(len(probs), p=probs / probs.sum()))
    return token, float(logprobs[token])


def entropy_noise(size: int) -> np.ndarray:
    """The planted bug: noise from the OS, which no seed controls (think of a reduction whose
    order depends on thread timing)."""
    raw = np.frombuffer(os.urandom(4 * size), dtype=np.uint32)
    return raw / 2.0**32 * 4.0 - 2.0
