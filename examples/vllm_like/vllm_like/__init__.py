"""A tiny stand-in for vLLM's offline ``LLM`` API, faithful to how vLLM handles random state:
the worker seeds ``random``, NumPy and torch (where installed) wherever the engine core runs,
which is the user's own process when ``VLLM_ENABLE_V1_MULTIPROCESSING=0``."""

from __future__ import annotations

from .llm import LLM
from .params import RequestOutput, SamplingParams
from .seeding import DEFAULT_SEED, set_random_seed

__all__ = ["DEFAULT_SEED", "LLM", "RequestOutput", "SamplingParams", "set_random_seed"]
