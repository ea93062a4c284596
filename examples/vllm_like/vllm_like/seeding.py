"""``set_random_seed``, as vLLM has it in ``vllm/utils/torch_utils.py``.

vLLM cannot run without torch; this stand-in can, so that the example needs NumPy alone.
Where torch is installed it seeds torch too, as vLLM does.
"""

from __future__ import annotations

import random

import numpy as np

try:
    import torch
except ImportError:  # the example runs with NumPy alone
    torch = None

#: vLLM's default seed (``ModelConfig.seed``): an engine is always seeded.
DEFAULT_SEED = 0


def set_random_seed(seed: int, data_parallel_index: int = 0) -> None:
    """Seed every global generator, as vLLM's worker does (twice) when it starts."""
    if data_parallel_index:
        # Data-parallel engines share the seed but must not sample unseeded requests alike.
        seed = int(np.random.SeedSequence((seed, data_parallel_index)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    if torch is not None:
        torch.manual_seed(seed)
        if torch.cuda.is_available():  # vLLM's CUDA platform; its CPU platform seeds no device
            torch.cuda.manual_seed_all(seed)
