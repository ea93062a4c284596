"""A tiny stand-in for vLLM's offline ``LLM`` API, faithful to how vLLM V1 handles random
state: the engine seeds ``random``, NumPy and torch wherever the engine core runs, which is
the user's own process when ``VLLM_ENABLE_V1_MULTIPROCESSING=0``."""

from __future__ import annotations

from .engine import DEFAULT_SEED, set_random_seed
from .llm import LLM
from .params import RequestOutput, SamplingParams

__all__ = ["DEFAULT_SEED", "LLM", "RequestOutput", "SamplingParams", "set_random_seed"]
