"""PyTorch's global settings that decide whether two runs agree: the determinism switches
(deterministic algorithms and warn-only, cuDNN's deterministic and benchmark), the float32
matmul precision and the TF32 switches with the fine-grained ``fp32_precision`` settings
behind them, cuBLAS's reduced-precision reductions, and the default dtype.

The state is what torch's public getters read, one value each.  torch 2.9 and later keep
two records of the matmul and cuDNN precision, the legacy one (``set_float32_matmul_precision``,
``allow_tf32``) and a tree of ``fp32_precision`` settings (``generic`` above ``cuda`` and
``mkldnn``, each above its ``matmul``, ``conv`` and ``rnn``, where ``"none"`` inherits); each
legacy setter also writes the tree, and a legacy getter raises once the two disagree (the
state then holds None for it).  Restoring sets the legacy record first, then the tree from
the top, so every getter reads again what it read before.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .base import CHANGED, Difference, ModuleSource, Seeder


class TorchFlags(NamedTuple):
    """Each setting as its public getter reads it.  None: the getter raises (a legacy getter
    once the legacy and fine-grained APIs were mixed) or this torch has no such setting."""

    deterministic_algorithms: bool
    deterministic_algorithms_warn_only: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    float32_matmul_precision: str | None
    cuda_matmul_allow_tf32: bool | None
    cudnn_allow_tf32: bool | None
    cuda_matmul_allow_fp16_reduced_precision_reduction: bool | None
    cuda_matmul_allow_fp16_reduced_precision_reduction_split_k: bool | None
    cuda_matmul_allow_bf16_reduced_precision_reduction: bool | None
    cuda_matmul_allow_bf16_reduced_precision_reduction_split_k: bool | None
    fp32_precision: str | None
    cudnn_fp32_precision: str | None
    cuda_matmul_fp32_precision: str | None
    cudnn_conv_fp32_precision: str | None
    cudnn_rnn_fp32_precision: str | None
    mkldnn_fp32_precision: str | None
    mkldnn_matmul_fp32_precision: str | None
    mkldnn_conv_fp32_precision: str | None
    mkldnn_rnn_fp32_precision: str | None
    default_dtype: Any


#: The detail that names each setting in a report: its public name, below ``torch.`` for
#: functions and below ``torch.backends.`` for attributes.
DETAILS = (
    "deterministic_algorithms",
    "deterministic_algorithms_warn_only",
    "cudnn.deterministic",
    "cudnn.benchmark",
    "float32_matmul_precision",
    "cuda.matmul.allow_tf32",
    "cudnn.allow_tf32",
    "cuda.matmul.allow_fp16_reduced_precision_reduction",
    "cuda.matmul.allow_fp16_reduced_precision_reduction_split_k",
    "cuda.matmul.allow_bf16_reduced_precision_reduction",
    "cuda.matmul.allow_bf16_reduced_precision_reduction_split_k",
    "fp32_precision",
    "cudnn.fp32_precision",
    "cuda.matmul.fp32_precision",
    "cudnn.conv.fp32_precision",
    "cudnn.rnn.fp32_precision",
    "mkldnn.fp32_precision",
    "mkldnn.matmul.fp32_precision",
    "mkldnn.conv.fp32_precision",
    "mkldnn.rnn.fp32_precision",
    "default_dtype",
)

#: The (backend, op) of each ``fp32_precision`` field, in field order: every parent before
#: its children, the order they are restored in.
NODES = (
    ("generic", "all"),
    ("cuda", "all"),
    ("cuda", "matmul"),
    ("cuda", "conv"),
    ("cuda", "rnn"),
    ("mkldnn", "all"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
)
#: The indices in ``NODES`` of each node's ancestors, its parent last: the generic setting
#: above each backend's "all", above its operations.
_ANCESTORS: tuple[tuple[int, ...], ...] = (
    (),
    (0,),
    (0, 1),
    (0, 1),
    (0, 1),
    (0,),
    (0, 5),
    (0, 5),
    (0, 5),
)
FIRST_NODE = TorchFlags._fields.index("fp32_precision")
PRECISIONS = slice(FIRST_NODE, FIRST_NODE + len(NODES))
REDUCTIONS = slice(
    TorchFlags._fields.index("cuda_matmul_allow_fp16_reduced_precision_reduction"), FIRST_NODE
)
#: The legacy matmul precision of a state whose getter raises, by the mkldnn matmul setting
#: it then disagrees with (the precision is not "highest" there, see ``matmul_precision``).
_PRECISION_BY_MKLDNN = {"bf16": "high", "tf32": "medium"}


#: torch.use_deterministic_algorithms also sets this module's ``deterministic``, importing it
#: first (over a second the first time): the flags are set without it unless it is loaded.
INDUCTOR_CONFIG = "torch._inductor.config"


def matmul_precision(flags: TorchFlags) -> str | None:
    """The float32 matmul precision torch keeps for its legacy API ("highest", "high" or
    "medium"), also where its getter raises; None where the state cannot tell."""
    if flags.float32_matmul_precision is not None:
        return flags.float32_matmul_precision
    node = flags.cuda_matmul_fp32_precision
    if node is None:
        return None
    # The legacy TF32 switch reads "not highest", and raises where that disagrees with the
    # cuda matmul node.
    allowed = flags.cuda_matmul_allow_tf32
    if (node == "tf32") if allowed is None else not allowed:
        return "highest"
    # Not "highest": the precision getter raised because the mkldnn matmul node disagrees.
    return _PRECISION_BY_MKLDNN.get(flags.mkldnn_matmul_fp32_precision or "")


def cudnn_tf32(flags: TorchFlags) -> bool | None:
    """The legacy cuDNN TF32 switch torch keeps, also where its getter raises; None where the
    state cannot tell (the conv and rnn nodes disagree: the getter raises whatever it is)."""
    if flags.cudnn_allow_tf32 is not None:
        return flags.cudnn_allow_tf32
    conv, rnn = flags.cudnn_conv_fp32_precision, flags.cudnn_rnn_fp32_precision
    if conv is None or rnn is None or (conv == "tf32") != (rnn == "tf32"):
        return None
    # Both nodes agree, so the getter raised because the switch disagrees with them.
    return conv != "tf32"


def set_flags(flags: TorchFlags, now: TorchFlags) -> None:
    """Make every getter read ``flags`` again, from ``now`` (what they read now), setting only
    what differs; a None in ``flags`` is left as it is."""
    import torch

    c: Any = torch._C
    _set_determinism(torch, flags, now)
    precision = matmul_precision(flags)
    legacy = precision is not None and precision != matmul_precision(now)
    if legacy:  # also writes the cuda and mkldnn matmul nodes: set again below
        c._set_float32_matmul_precision(precision)
    cudnn = cudnn_tf32(flags)
    if cudnn is not None and cudnn != cudnn_tf32(now):  # also writes the cudnn conv and rnn nodes
        c._set_cudnn_allow_tf32(cudnn)
        legacy = True
    wanted: tuple[Any, ...] = flags
    found: tuple[Any, ...] = now
    if legacy or wanted[PRECISIONS] != found[PRECISIONS]:
        _set_nodes(c, wanted[PRECISIONS])
    if wanted[REDUCTIONS] != found[REDUCTIONS]:
        _set_reductions(c, wanted[REDUCTIONS])
    if flags.default_dtype is not None and flags.default_dtype != now.default_dtype:
        c._set_default_dtype(flags.default_dtype)


def _set_determinism(torch: Any, flags: TorchFlags, now: TorchFlags) -> None:
    mode, warn_only = flags.deterministic_algorithms, flags.deterministic_algorithms_warn_only
    if (now.deterministic_algorithms, now.deterministic_algorithms_warn_only) != (mode, warn_only):
        setter = getattr(torch._C, "_set_deterministic_algorithms", None)
        if INDUCTOR_CONFIG in sys.modules or setter is None:
            torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        else:
            setter(mode, warn_only=warn_only)
    # The C setters: the attributes refuse after torch.backends.disable_global_flags().
    if now.cudnn_deterministic != flags.cudnn_deterministic:
        torch._C._set_cudnn_deterministic(flags.cudnn_deterministic)
    if now.cudnn_benchmark != flags.cudnn_benchmark:
        torch._C._set_cudnn_benchmark(flags.cudnn_benchmark)


def _set_nodes(c: Any, wanted: tuple[str | None, ...]) -> None:
    """Set the ``fp32_precision`` tree from the top.  A node whose parent gives the wanted
    value inherits it ("none"), as torch's own nodes do until someone sets them; a node below
    one that was just set is read again (it may inherit)."""
    get, put = c._get_fp32_precision_getter, c._set_fp32_precision_setter
    values = [get(backend, op) for backend, op in NODES]
    changed: set[int] = set()
    for index, ((backend, op), want) in enumerate(zip(NODES, wanted, strict=True)):
        if want is None:
            continue
        ancestors = _ANCESTORS[index]
        if changed and not changed.isdisjoint(ancestors):
            values[index] = get(backend, op)
        if values[index] == want:
            continue
        inherited = values[ancestors[-1]] if ancestors else "none"
        put(backend, op, "none" if inherited == want else want)
        values[index] = want
        changed.add(index)


def _set_reductions(c: Any, wanted: tuple[bool | None, ...]) -> None:
    half, half_split, brain, brain_split = wanted
    for setter, allow, split_k in (
        (c._set_cublas_allow_fp16_reduced_precision_reduction, half, half_split),
        (c._set_cublas_allow_bf16_reduced_precision_reduction, brain, brain_split),
    ):
        if allow is None:
            continue
        # torch before 2.10 takes the switch alone.
        setter(allow) if split_k is None else setter(allow, split_k)


def _public_getters(torch: Any) -> tuple[Callable[[], Any], ...]:
    """Each setting's public getter, in field order."""
    backends = torch.backends
    matmul, cudnn, mkldnn = backends.cuda.matmul, backends.cudnn, backends.mkldnn
    return (
        torch.are_deterministic_algorithms_enabled,
        torch.is_deterministic_algorithms_warn_only_enabled,
        lambda: bool(cudnn.deterministic),
        lambda: bool(cudnn.benchmark),
        torch.get_float32_matmul_precision,
        lambda: matmul.allow_tf32,
        lambda: cudnn.allow_tf32,
        lambda: matmul.allow_fp16_reduced_precision_reduction,
        lambda: matmul.allow_fp16_reduced_precision_reduction_split_k,
        lambda: matmul.allow_bf16_reduced_precision_reduction,
        lambda: matmul.allow_bf16_reduced_precision_reduction_split_k,
        lambda: backends.fp32_precision,
        lambda: cudnn.fp32_precision,
        lambda: matmul.fp32_precision,
        lambda: cudnn.conv.fp32_precision,
        lambda: cudnn.rnn.fp32_precision,
        lambda: mkldnn.fp32_precision,
        lambda: mkldnn.matmul.fp32_precision,
        lambda: mkldnn.conv.fp32_precision,
        lambda: mkldnn.rnn.fp32_precision,
        torch.get_default_dtype,
    )


def _read_public(getters: Sequence[Callable[[], Any]]) -> tuple[Any, ...]:
    values = []
    for get in getters:
        try:
            values.append(get())
        except (RuntimeError, AttributeError):  # the APIs mixed; a setting this torch lacks
            values.append(None)
    return tuple(values)


def _c_reader(c: Any) -> Callable[[], tuple[Any, ...]]:
    """The settings read through the C getters behind the public ones, in one function (a
    fifth of the cost: no Python getter, no per-setting call of a helper)."""
    algorithms = c._get_deterministic_algorithms
    warn_only = c._get_deterministic_algorithms_warn_only
    cudnn_deterministic, benchmark = c._get_cudnn_deterministic, c._get_cudnn_benchmark
    precision, cublas_tf32, cudnn_tf32 = (
        c._get_float32_matmul_precision,
        c._get_cublas_allow_tf32,
        c._get_cudnn_allow_tf32,
    )
    fp16 = c._get_cublas_allow_fp16_reduced_precision_reduction
    bf16 = c._get_cublas_allow_bf16_reduced_precision_reduction
    node, dtype = c._get_fp32_precision_getter, c.get_default_dtype

    def read() -> tuple[Any, ...]:
        # The three legacy getters raise once the legacy and fine-grained APIs disagree.
        try:
            matmul = precision()
        except RuntimeError:
            matmul = None
        try:
            allow_cublas = cublas_tf32()
        except RuntimeError:
            allow_cublas = None
        try:
            allow_cudnn = cudnn_tf32()
        except RuntimeError:
            allow_cudnn = None
        half, brain = fp16(), bf16()
        return (
            algorithms(),
            warn_only(),
            cudnn_deterministic(),
            benchmark(),
            matmul,
            allow_cublas,
            allow_cudnn,
            half[0],
            half[1],
            brain[0],
            brain[1],
            node("generic", "all"),
            node("cuda", "all"),
            node("cuda", "matmul"),
            node("cuda", "conv"),
            node("cuda", "rnn"),
            node("mkldnn", "all"),
            node("mkldnn", "matmul"),
            node("mkldnn", "conv"),
            node("mkldnn", "rnn"),
            dtype(),
        )

    return read


@functools.cache
def _reader() -> Callable[[], tuple[Any, ...]]:
    """The C reader where this torch has every C getter and they read what the public ones
    do; the public getters otherwise (an older torch: what it lacks reads None)."""
    import torch

    public = functools.partial(_read_public, _public_getters(torch))
    with warnings.catch_warnings():
        # torch 2.9.0 warns once per process, at the first legacy getter or setter, that the
        # legacy API is to be deprecated: here, never at a later read or restore.
        warnings.simplefilter("ignore")
        expected = public()
        try:
            fast = _c_reader(torch._C)
            if fast() == expected:
                return fast
        except Exception:  # a torch without them, or that changed its internals
            pass
    return public


def current_flags() -> TorchFlags:
    """The settings now; torch must be loaded."""
    return TorchFlags(*_reader()())


class TorchFlagsSource(ModuleSource):
    name = "torch.flags"
    module = "torch.backends.cudnn"
    seedable = False

    def __init__(self) -> None:
        self._read: Callable[[], tuple[Any, ...]] | None = None

    def available(self) -> bool:
        return "torch" in sys.modules and self.module in sys.modules

    def capture(self) -> tuple[Any, ...]:
        """The settings as a plain tuple (equal to the ``TorchFlags`` of the same values)."""
        read = self._read
        if read is None:
            read = self._read = _reader()
        return read()

    def restore(self, state: tuple[Any, ...]) -> None:
        now = self.capture()
        if now != tuple(state):
            set_flags(TorchFlags(*state), TorchFlags(*now))

    def seed(self, seed: int) -> None:
        pass

    def classify(self, before: Any, after: tuple[Any, ...]) -> list[Difference]:
        if before is None:
            return []
        return [
            Difference(CHANGED, detail, f"{_describe(old)} -> {_describe(new)}")
            for detail, old, new in zip(DETAILS, before, after, strict=True)
            if old != new
        ]

    def seeders(self) -> Sequence[Seeder]:
        # The calls that set several of these; the attributes (cuDNN's, TF32's, the
        # fp32_precision tree) are plain assignments that only the states show, so a call is
        # never blamed for them.
        return (
            Seeder("torch", "use_deterministic_algorithms", CHANGED, _algorithm_flags),
            Seeder("torch", "set_float32_matmul_precision", CHANGED, _precision_flags),
            Seeder("torch", "set_default_dtype", CHANGED, _dtype_flag),
        )


def _describe(value: Any) -> str:
    if value is None:
        return "unreadable (legacy and fp32_precision settings mixed)"
    return repr(value) if isinstance(value, str) else str(value)


def _algorithm_flags(*args: Any, **kwargs: Any) -> tuple[str, ...]:
    return DETAILS[:2]


def _precision_flags(*args: Any, **kwargs: Any) -> tuple[str, ...]:
    return (
        "float32_matmul_precision",
        "cuda.matmul.allow_tf32",
        "cuda.matmul.fp32_precision",
        "mkldnn.matmul.fp32_precision",
    )


def _dtype_flag(*args: Any, **kwargs: Any) -> tuple[str, ...]:
    return ("default_dtype",)
