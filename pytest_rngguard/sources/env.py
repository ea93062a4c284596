"""Watched environment variables (``rngguard_env``): seeds and determinism switches."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .base import CHANGED, Difference, ModuleSource, Seeder

DEFAULT_VARIABLES = (
    "VLLM_ENABLE_V1_MULTIPROCESSING",
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_LAUNCH_BLOCKING",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "PL_GLOBAL_SEED",
    "PL_SEED_WORKERS",
    "FLASH_ATTENTION_DETERMINISTIC",
    "HCCL_DETERMINISTIC",
    # Set by transformers' enable_full_determinism() for Ascend NPUs, beside the two above.
    "ASCEND_LAUNCH_BLOCKING",
)


def _describe(value: str | None) -> str:
    return "unset" if value is None else repr(value)


class EnvSource(ModuleSource):
    name = "env"
    module = "os"
    seedable = False

    def __init__(self, variables: Iterable[str] = DEFAULT_VARIABLES) -> None:
        self.variables = tuple(dict.fromkeys(variables))
        # os.environ keeps the encoded values in ``_data``: reading it directly skips the
        # per-key encode/decode of ``os.environ.get`` (checked, else the public API is used).
        store = _environ_store()
        self._keys: tuple[Any, ...] = tuple(self.variables)
        self._data: Any = os.environ
        # Every spelling ``os.putenv`` may be given a watched name in, to its name.
        self._names: dict[Any, str] = {name: name for name in self.variables}
        self._names.update((os.fsencode(name), name) for name in self.variables)
        if store is not None:
            data, encode, _ = store
            keys = tuple(encode(name) for name in self.variables)
            pairs = zip(keys, self.variables, strict=True)
            if all(data.get(k) == _encoded(os.environ.get(n)) for k, n in pairs):
                self._keys, self._data = keys, data

    def capture(self) -> tuple[Any, ...]:
        return tuple(map(self._data.get, self._keys))

    def _values(self, state: tuple[Any, ...]) -> list[str | None]:
        return [os.fsdecode(v) if isinstance(v, bytes) else v for v in state]

    def restore(self, state: tuple[Any, ...]) -> None:
        now = self.capture()
        if now == state:
            return  # the common case (``--rngguard-restore=all`` after a test that set none)
        # Only the variables that differ: ``os.environ.pop`` or ``.get`` of an unset one
        # raises and catches a KeyError inside, about 1 µs each.
        values = zip(self.variables, self._values(state), self._values(now), strict=True)
        for name, value, current in values:
            if value == current:
                continue
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value

    def seed(self, seed: int) -> None:
        pass

    def classify(self, before: tuple[Any, ...] | None, after: tuple[Any, ...]) -> list[Difference]:
        old_values = self._values(before) if before is not None else [None] * len(after)
        return [
            Difference(CHANGED, name, f"{_describe(old)} -> {_describe(new)}")
            for name, old, new in zip(self.variables, old_values, self._values(after), strict=True)
            if old != new
        ]

    def _detail(self, key: Any, *_: Any) -> str | None:
        if type(key) is str or type(key) is bytes:
            return self._names.get(key)  # one lookup: this runs on every putenv
        name = os.fsdecode(key)
        return name if name in self.variables else None

    def seeders(self) -> Sequence[Seeder]:
        return (
            Seeder("os", "putenv", CHANGED, self._detail),
            Seeder("os", "unsetenv", CHANGED, self._detail),
        )


def _environ_store() -> tuple[dict[Any, Any], Callable[[str], Any], Callable[[Any], str]] | None:
    """``os.environ``'s own store of encoded values, with its key encoder and value
    decoder; None where it keeps them otherwise."""
    data = getattr(os.environ, "_data", None)
    encode = getattr(os.environ, "encodekey", None)
    decode = getattr(os.environ, "decodevalue", None)
    if type(data) is not dict or encode is None or decode is None:
        return None
    return data, encode, decode


def read_environ(names: Iterable[str]) -> dict[str, str | None]:
    """``os.environ.get`` of each name.  That raises and catches a KeyError for every unset
    name (most of the deterministic marker's, before it sets them), which costs more than
    the rest of the lookup: this reads ``os.environ``'s own store the way its
    ``__getitem__`` does, and uses the public API where that store is not there."""
    store = _environ_store()
    if store is None:
        return {name: os.environ.get(name) for name in names}
    data, encode, decode = store
    values: dict[str, str | None] = {}
    for name in names:
        raw = data.get(encode(name))
        values[name] = None if raw is None else decode(raw)
    return values


def _encoded(value: str | None) -> Any:
    if value is None or os.name == "nt":
        return value
    return os.fsencode(value)
