"""The worker that runs the model, treating global state as vLLM's GPU worker does
(``vllm/v1/worker/gpu_worker.py``): it sets torch's float32 matmul precision, seeds every
generator when it initialises its device, draws numbers while it warms up, then seeds them
all again, with its data-parallel index."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .model import TinyModel, decode, encode, entropy_noise, sample
from .params import RequestOutput, SamplingParams
from .seeding import set_random_seed

try:
    import torch
except ImportError:  # the example runs with NumPy alone
    torch = None

WARM_UP = SamplingParams(temperature=1.0, max_tokens=4)


class Worker:
    def __init__(
        self, model: str, seed: int, data_parallel_index: int, nondeterministic_sampling: bool
    ) -> None:
        self.model_name = model
        self.seed = seed
        self.data_parallel_index = data_parallel_index
        self.nondeterministic_sampling = nondeterministic_sampling
        if torch is not None:
            # VLLM_FLOAT32_MATMUL_PRECISION's default, whatever the process had chosen.
            torch.set_float32_matmul_precision("highest")

    def init_device(self) -> None:
        set_random_seed(self.seed)

    def load_model(self) -> None:
        self.model = TinyModel(self.model_name)

    def compile_or_warm_up_model(self) -> None:
        # The warm-up samples dummy tokens from the global generators...
        self.execute(["warm up"], WARM_UP)
        # ...so reseed: what requests draw must not depend on the warm-up.
        set_random_seed(self.seed, self.data_parallel_index)

    def execute(self, prompts: Sequence[str], params: SamplingParams) -> list[RequestOutput]:
        return [self._complete(prompt, params) for prompt in prompts]

    def _complete(self, prompt: str, params: SamplingParams) -> RequestOutput:
        # vLLM samples from the global generator unless the request brings its own seed.
        generator = None if params.seed is None else np.random.RandomState(params.seed)
        token_ids = encode(prompt)
        new: list[int] = []
        logprob = 0.0
        for _ in range(params.max_tokens):
            logits = self.model.logits(token_ids + new)
            if self.nondeterministic_sampling:
                logits = logits + entropy_noise(len(logits))
            token, token_logprob = sample(logits, params.temperature, generator)
            new.append(token)
            logprob += token_logprob
        return RequestOutput(prompt, tuple(new), decode(new), logprob)
