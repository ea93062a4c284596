"""What a request asks for and what it gets back (vLLM's ``SamplingParams`` and
``RequestOutput``, cut down)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How to sample one request.

    ``seed=None`` samples from the engine's global torch generator, as vLLM does; a seed
    gives the request its own generator, so its tokens do not depend on anything else.
    """

    temperature: float = 1.0
    max_tokens: int = 16
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclasses.dataclass(frozen=True)
class RequestOutput:
    """One prompt's completion."""

    prompt: str
    token_ids: tuple[int, ...]
    text: str
    cumulative_logprob: float
