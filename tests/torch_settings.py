"""torch's numerics settings, read and set only through torch's own public API: the oracle of
``tests/test_torch_settings.py`` (and of inner runs, which import this module too).

``observe()`` reads every public getter (a getter that raises reads as the error's type);
``operations`` is a Hypothesis strategy of setter calls through both the legacy API
(``set_float32_matmul_precision``, ``allow_tf32``) and the fine-grained ``fp32_precision``
one, and ``perform`` makes one.  Nothing here uses the plugin.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from hypothesis import strategies as st

backends: Any = torch.backends


def _complex_default() -> Any:
    """The complex dtype Python complex numbers become: it follows the default dtype (and
    there is none for bfloat16, where making one raises)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex32 is "experimental"
        return torch.tensor(1j).dtype


#: Every public getter, by what a user types, with the detail the plugin's report must give
#: a change of it.
GETTERS: dict[str, tuple[Callable[[], Any], str]] = {
    "torch.are_deterministic_algorithms_enabled()": (
        torch.are_deterministic_algorithms_enabled,
        "deterministic_algorithms",
    ),
    "torch.is_deterministic_algorithms_warn_only_enabled()": (
        torch.is_deterministic_algorithms_warn_only_enabled,
        "deterministic_algorithms_warn_only",
    ),
    "torch.backends.cudnn.deterministic": (
        lambda: backends.cudnn.deterministic,
        "cudnn.deterministic",
    ),
    "torch.backends.cudnn.benchmark": (lambda: backends.cudnn.benchmark, "cudnn.benchmark"),
    "torch.get_float32_matmul_precision()": (
        torch.get_float32_matmul_precision,
        "float32_matmul_precision",
    ),
    "torch.backends.cuda.matmul.allow_tf32": (
        lambda: backends.cuda.matmul.allow_tf32,
        "cuda.matmul.allow_tf32",
    ),
    "torch.backends.cudnn.allow_tf32": (lambda: backends.cudnn.allow_tf32, "cudnn.allow_tf32"),
    **{
        f"torch.backends.cuda.matmul.{name}": (
            functools.partial(getattr, backends.cuda.matmul, name),
            f"cuda.matmul.{name}",
        )
        for name in (
            "allow_fp16_reduced_precision_reduction",
            "allow_fp16_reduced_precision_reduction_split_k",
            "allow_bf16_reduced_precision_reduction",
            "allow_bf16_reduced_precision_reduction_split_k",
        )
    },
    "torch.backends.fp32_precision": (lambda: backends.fp32_precision, "fp32_precision"),
    **{
        f"torch.backends.{path}.fp32_precision": (
            functools.partial(
                getattr, functools.reduce(getattr, path.split("."), backends), "fp32_precision"
            ),
            f"{path}.fp32_precision",
        )
        for path in (
            "cudnn",
            "cuda.matmul",
            "cudnn.conv",
            "cudnn.rnn",
            "mkldnn",
            "mkldnn.matmul",
            "mkldnn.conv",
            "mkldnn.rnn",
        )
    },
    "torch.get_default_dtype()": (torch.get_default_dtype, "default_dtype"),
    "torch.tensor(1j).dtype": (_complex_default, "default_dtype"),
}


def observe() -> dict[str, Any]:
    """What each public getter reads now (the error's type where it raises)."""
    seen: dict[str, Any] = {}
    for name, (get, _) in GETTERS.items():
        try:
            seen[name] = get()
        except RuntimeError as exc:
            seen[name] = type(exc)
    return seen


def details_of(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """The details a report must name for the getters that read differently."""
    return {GETTERS[name][1] for name in before if before[name] != after[name]}


# -- setters ---------------------------------------------------------------------------------

PRECISIONS = ("none", "ieee", "tf32", "bf16")
CUDA_PRECISIONS = ("none", "ieee", "tf32")  # cuda refuses "bf16"
#: The values the reduced-precision reduction switches accept: a bool, or (switch, split-K)
#: except (True, False), which torch refuses.
REDUCTIONS = (True, False, (False, False), (False, True), (True, True))
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

#: One call of a setter: (what, value).
Operation = tuple[str, Any]

operations: st.SearchStrategy[Operation] = st.one_of(
    st.tuples(
        st.just("set_float32_matmul_precision"), st.sampled_from(("highest", "high", "medium"))
    ),
    st.tuples(st.just("cuda.matmul.allow_tf32"), st.booleans()),
    st.tuples(st.just("cudnn.allow_tf32"), st.booleans()),
    st.tuples(
        st.just("cuda.matmul.allow_fp16_reduced_precision_reduction"), st.sampled_from(REDUCTIONS)
    ),
    st.tuples(
        st.just("cuda.matmul.allow_bf16_reduced_precision_reduction"), st.sampled_from(REDUCTIONS)
    ),
    st.tuples(st.just("set_default_dtype"), st.sampled_from(DTYPES)),
    st.tuples(st.just("use_deterministic_algorithms"), st.tuples(st.booleans(), st.booleans())),
    st.tuples(st.just("cudnn.deterministic"), st.booleans()),
    st.tuples(st.just("cudnn.benchmark"), st.booleans()),
    st.tuples(st.just("fp32_precision"), st.sampled_from(PRECISIONS)),
    st.tuples(
        st.sampled_from(
            (
                "cudnn.fp32_precision",
                "cuda.matmul.fp32_precision",
                "cudnn.conv.fp32_precision",
                "cudnn.rnn.fp32_precision",
            )
        ),
        st.sampled_from(CUDA_PRECISIONS),
    ),
    st.tuples(
        # torch.backends.mkldnn.fp32_precision's setter writes the generic setting; its own
        # is only reachable through mkldnn.set_flags (and the flags() context manager).
        st.sampled_from(
            (
                "mkldnn.fp32_precision",
                "mkldnn.set_flags",
                "mkldnn.matmul.fp32_precision",
                "mkldnn.conv.fp32_precision",
                "mkldnn.rnn.fp32_precision",
            )
        ),
        st.sampled_from(PRECISIONS),
    ),
)


#: Only the calls that set the matmul and cuDNN precision, old API and new: the states
#: where torch's legacy getters raise are a few calls deep among them.
precision_operations: st.SearchStrategy[Operation] = st.one_of(
    st.tuples(
        st.just("set_float32_matmul_precision"), st.sampled_from(("highest", "high", "medium"))
    ),
    st.tuples(st.sampled_from(("cuda.matmul.allow_tf32", "cudnn.allow_tf32")), st.booleans()),
    st.tuples(
        st.sampled_from(
            ("cuda.matmul.fp32_precision", "cudnn.conv.fp32_precision", "cudnn.rnn.fp32_precision")
        ),
        st.sampled_from(CUDA_PRECISIONS),
    ),
    st.tuples(
        st.sampled_from(("mkldnn.matmul.fp32_precision", "fp32_precision")),
        st.sampled_from(PRECISIONS),
    ),
)


def perform(operation: Operation) -> None:
    """Make one setter call, the way a user (or a library) would."""
    what, value = operation
    if what == "set_float32_matmul_precision":
        torch.set_float32_matmul_precision(value)
    elif what == "set_default_dtype":
        torch.set_default_dtype(value)
    elif what == "use_deterministic_algorithms":
        torch.use_deterministic_algorithms(value[0], warn_only=value[1])
    elif what == "mkldnn.set_flags":
        backends.mkldnn.set_flags(_fp32_precision=value)
    else:
        *path, attribute = what.split(".")
        setattr(functools.reduce(getattr, path, backends), attribute, value)


def perform_all(sequence: Sequence[Operation]) -> None:
    for operation in sequence:
        perform(operation)


@contextlib.contextmanager
def torch_defaults_afterwards() -> Iterator[None]:
    """Put every setting back to torch's own defaults at the end, through torch's public
    API (not the plugin's restore, which the tests check)."""
    try:
        yield
    finally:
        reset_to_defaults()


def hidden_matmul_precision() -> str:
    """The float32 matmul precision torch keeps for its legacy API, also where its getter
    raises: made readable by setting the fine-grained matmul settings it is checked against
    to "none" (which changes the state: the caller puts it back)."""
    backends.fp32_precision = "none"
    backends.cudnn.fp32_precision = "none"
    backends.cuda.matmul.fp32_precision = "none"
    backends.mkldnn.set_flags(_fp32_precision="none")
    backends.mkldnn.matmul.fp32_precision = "none"
    return torch.get_float32_matmul_precision()


def hidden_cudnn_tf32() -> bool:
    """cuDNN's legacy TF32 switch, also where its getter raises: with the conv and rnn
    settings both "tf32" the getter answers only if the switch is on (changes the state)."""
    backends.cudnn.conv.fp32_precision = "tf32"
    backends.cudnn.rnn.fp32_precision = "tf32"
    try:
        return bool(backends.cudnn.allow_tf32)
    except RuntimeError:
        return False


def inheritance() -> tuple[tuple[Any, ...], ...]:
    """What the ``fp32_precision`` getters read as each parent of the tree is set in turn.

    A node of the tree either inherits its parent's value ("none") or holds its own, and the
    getters read the same in both cases while the two agree: only a later change of the parent
    tells them apart.  Two states with equal getters and different answers here differ in
    that hidden part (changes the state: the caller puts it back)."""
    answers = []
    for value in PRECISIONS:
        backends.fp32_precision = value
        answers.append(tuple(observe().values()))
    for value in CUDA_PRECISIONS:
        backends.cudnn.fp32_precision = value
        answers.append(tuple(observe().values()))
    for value in PRECISIONS:
        backends.mkldnn.set_flags(_fp32_precision=value)
        answers.append(tuple(observe().values()))
    return tuple(answers)


def reset_to_defaults() -> None:
    # The legacy setters first: each also writes fp32_precision settings, set after them.
    torch.set_float32_matmul_precision("highest")
    backends.cudnn.allow_tf32 = True
    backends.fp32_precision = "none"
    backends.cudnn.fp32_precision = "none"
    backends.cuda.matmul.fp32_precision = "none"
    backends.mkldnn.set_flags(_fp32_precision="none")
    for node in (backends.mkldnn.matmul, backends.mkldnn.conv, backends.mkldnn.rnn):
        node.fp32_precision = "none"
    backends.cuda.matmul.allow_fp16_reduced_precision_reduction = (True, True)
    backends.cuda.matmul.allow_bf16_reduced_precision_reduction = (True, True)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(False)
    backends.cudnn.deterministic = False
    backends.cudnn.benchmark = False
