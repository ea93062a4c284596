"""What pytest-rngguard shows about a vLLM-style ``LLM``.

Run from the repository root:  pytest examples/vllm_like -p no:randomly --rngguard-repeat=2
Three tests pass and one fails on purpose: the gate catching a planted non-determinism.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from vllm_like import LLM, SamplingParams

MODEL = "tiny-opt"
PROMPTS = [
    "Hello, my name is",
    "The president of the United States is",
    "The capital of France is",
    "The future of AI is",
]
SAMPLING = SamplingParams(temperature=0.8, max_tokens=16)


def test_in_process_engine_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    # vLLM's reproducibility recipe; the context puts the variable back before the test ends.
    with monkeypatch.context() as env:
        env.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        llm = LLM(model=MODEL)  # seed=0, vLLM's default
    llm.generate(PROMPTS, SAMPLING)

    # The engine's worker seeded this process (twice): user code now draws what seed 0 draws.
    # rngguard reports it, with the line in vllm_like/seeding.py that did it.
    assert llm.in_process
    assert random.random() == random.Random(0).random()


def test_worker_process_engine_does_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as env:
        env.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # vLLM's default
        llm = LLM(model=MODEL)
    try:
        outputs = llm.generate(PROMPTS, SAMPLING)
    finally:
        llm.shutdown()

    # Seeded and sampled in the worker process: nothing here changed, nothing is reported.
    assert not llm.in_process
    assert [len(output.token_ids) for output in outputs] == [16] * len(PROMPTS)


@pytest.mark.deterministic
def test_generation_is_reproducible_with_the_deterministic_marker(rngguard: Any) -> None:
    # The marker seeds every generator and sets VLLM_ENABLE_V1_MULTIPROCESSING=0, so the
    # engine runs here; it puts all of it back after the test, the worker's reseeding too.
    prompts = random.sample(PROMPTS, k=len(PROMPTS))  # the test's own randomness, seeded
    llm = LLM(model=MODEL)
    outputs = llm.generate(prompts, SAMPLING)

    assert llm.in_process
    rngguard.record("prompts", prompts)
    rngguard.record("tokens", [output.token_ids for output in outputs])
    rngguard.record("logprobs", [output.cumulative_logprob for output in outputs])


@pytest.mark.deterministic
def test_planted_nondeterminism_fails_the_gate(rngguard: Any) -> None:
    # Passes when run once; with --rngguard-repeat=2 the second run's tokens differ from
    # the first's, and the gate fails the test as not reproducible.
    llm = LLM(model=MODEL, nondeterministic_sampling=True)
    outputs = llm.generate(PROMPTS, SAMPLING)

    rngguard.record("tokens", [output.token_ids for output in outputs])
