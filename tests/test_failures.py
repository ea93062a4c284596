"""Whatever goes wrong, the user's session survives: nothing the plugin changed is left behind,
no result is lost, and the error names what was wrong.

Each case is observed from outside the inner run (the process's environment, generators,
flags and import hooks before and after it), never read from the plugin's report.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any

import pytest
from conftest import NO_RANDOMLY

import pytest_rngguard
from pytest_rngguard import sources as registry

RECIPE_VARIABLES = ("VLLM_ENABLE_V1_MULTIPROCESSING", "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED")


def _process_state() -> dict[str, Any]:
    """What a deterministic recipe changes, read through the libraries' public APIs."""
    state: dict[str, Any] = {
        "env": {name: os.environ.get(name) for name in RECIPE_VARIABLES},
        "random": random.getstate(),
        "meta_path": [type(finder).__name__ for finder in sys.meta_path],
    }
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        legacy: Any = np_random.get_state()
        state["numpy"] = (legacy[1].tobytes(), legacy[2:])
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = bytes(torch.get_rng_state().numpy().tobytes())
        state["torch_flags"] = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        )
    return state


@pytest.fixture
def unchanged() -> Any:
    """Asserts, after the test, that the process is as it was before it."""
    for name in RECIPE_VARIABLES:
        assert name not in os.environ or name == "PYTHONHASHSEED"
    before = _process_state()
    yield
    assert _process_state() == before


# -- interrupts -------------------------------------------------------------------------------

INTERRUPTED = {
    "keyboard-interrupt": "raise KeyboardInterrupt",
    "pytest-exit": "pytest.exit('stopping here')",
}


def _interrupted(pytester: pytest.Pytester, stop: str, imports: str) -> None:
    pytester.makepyfile(
        test_stopped=f"""
        import random

        import pytest
        {imports}

        @pytest.mark.deterministic
        def test_first():
            random.random()
            {stop}

        def test_never_runs():
            pass
        """
    )
    result = pytester.runpytest_inprocess(*NO_RANDOMLY, no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str()


@pytest.mark.parametrize("stop", INTERRUPTED.values(), ids=INTERRUPTED.keys())
def test_an_interrupted_deterministic_test_leaves_nothing_behind(
    numpy: Any, pytester: pytest.Pytester, unchanged: None, stop: str
) -> None:
    _interrupted(pytester, stop, "import numpy")


@pytest.mark.parametrize("stop", INTERRUPTED.values(), ids=INTERRUPTED.keys())
def test_an_interrupted_deterministic_test_with_torch_leaves_nothing_behind(
    torch: Any, pytester: pytest.Pytester, unchanged: None, stop: str
) -> None:
    _interrupted(pytester, stop, "import torch")


def test_an_interrupt_in_a_fixture_of_a_deterministic_test_leaves_nothing_behind(
    pytester: pytest.Pytester, unchanged: None
) -> None:
    pytester.makepyfile(
        test_stopped="""
        import pytest

        @pytest.fixture
        def stops():
            yield
            raise KeyboardInterrupt

        @pytest.mark.deterministic
        def test_first(stops):
            pass
        """
    )
    result = pytester.runpytest_inprocess(*NO_RANDOMLY, no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str()


# -- the recipe is all or nothing -------------------------------------------------------------

BAD_ENV = {
    "empty name": ({"": "1"}, "'' is not a valid environment variable name"),
    "= in the name": ({"A=B": "1"}, "'A=B' is not a valid environment variable name"),
    "NUL in the name": ({"A\0B": "1"}, "is not a valid environment variable name"),
    "NUL in the value": ({"MY_VAR": "a\0b"}, "the value of MY_VAR contains a NUL byte"),
}


@pytest.mark.parametrize(("env", "message"), BAD_ENV.values(), ids=BAD_ENV.keys())
def test_a_bad_env_entry_is_an_error_and_changes_nothing(
    pytester: pytest.Pytester, unchanged: None, env: dict[str, str], message: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import os
        import random

        import pytest

        @pytest.mark.deterministic(env={env!r})
        def test_marked():
            pass

        def test_after():
            assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ
        """
    )
    result = pytester.runpytest_inprocess(*NO_RANDOMLY, "--rngguard=fail")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*deterministic: env: *{message}*"])
    assert "leak" not in result.stdout.str().lower()


@pytest.mark.parametrize(("env", "message"), BAD_ENV.values(), ids=BAD_ENV.keys())
def test_the_context_manager_refuses_a_bad_env_entry_before_changing_anything(
    unchanged: None, env: dict[str, str], message: str
) -> None:
    with (
        pytest.raises(ValueError, match=message.replace("(", r"\(")),
        pytest_rngguard.deterministic(0, env=env),
    ):
        pass  # pragma: no cover


def test_a_seed_out_of_range_is_refused_before_changing_anything(unchanged: None) -> None:
    with (
        pytest.raises(ValueError, match=r"seed must be an integer from 0 to 2\*\*64 - 1"),
        pytest_rngguard.deterministic(2**70),
    ):
        pass  # pragma: no cover


def test_a_large_seed_leaves_child_pythons_a_hash_seed_they_accept() -> None:
    import subprocess

    with pytest_rngguard.deterministic(2**32 + 5):
        assert os.environ["PYTHONHASHSEED"] == "5"
        child = subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=False)
    assert child.returncode == 0, child.stderr


def test_distinct_large_seeds_give_distinct_streams(numpy: Any) -> None:
    draws = {}
    for seed in (0, 1, 2**32, 2**32 + 1, 2**63, 2**64 - 1):
        with pytest_rngguard.deterministic(seed):
            draws[seed] = (random.random(), float(numpy.random.random()))
    assert len({d[0] for d in draws.values()}) == len(draws)
    assert len({d[1] for d in draws.values()}) == len(draws)


# -- third-party sources that misbehave -------------------------------------------------------

FAULTY_SOURCE = """
import random

from pytest_rngguard import Difference, ModuleSource, register_source

_rng = random.Random(0)


class Faulty(ModuleSource):
    name = "faulty"
    module = "random"
    fault = ""

    def capture(self):
        if self.fault == "capture":
            raise RuntimeError("capture broke")
        if self.fault == "array":
            import numpy
            return numpy.frombuffer(repr(_rng.getstate()).encode()[:64], dtype="uint8").copy()
        if self.fault == "eq":
            return Uncomparable(_rng.getstate())
        return _rng.getstate()

    def restore(self, state):
        if self.fault == "restore":
            raise RuntimeError("restore broke")
        if isinstance(state, tuple):
            _rng.setstate(state)

    def seed(self, seed):
        if self.fault == "seed":
            raise RuntimeError("seed broke")
        _rng.seed(seed)

    def classify(self, before, after):
        return [Difference("reseeded")]


class Uncomparable:
    def __init__(self, state):
        self.state = state

    def __eq__(self, other):
        raise RuntimeError("eq broke")

    __hash__ = None


source = Faulty()
source.fault = {fault!r}
register_source(source)
"""


@pytest.mark.parametrize("fault", ["capture", "array", "eq", "restore", "seed"])
def test_a_faulty_source_is_disabled_with_one_warning_and_the_tests_run(
    pytester: pytest.Pytester,
    unchanged: None,
    fault: str,
    numpy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # register_source is process-wide: the faulty source must not outlive this test.
    monkeypatch.setattr(registry, "_registered", [])
    pytester.makeconftest(FAULTY_SOURCE.format(fault=fault))
    pytester.makepyfile(
        test_uses=r"""
        import random

        import pytest

        @pytest.mark.deterministic(seed=3)
        def test_marked():
            assert random.random() == random.Random(3).random()

        def test_leaks():
            random.seed(1)

        @pytest.mark.deterministic(seed=4)
        def test_marked_again():
            assert random.random() == random.Random(4).random()
        """
    )
    result = pytester.runpytest_inprocess(*NO_RANDOMLY)
    output = result.stdout.str()
    assert "INTERNALERROR" not in output, output
    assert "Traceback" not in output, output
    result.assert_outcomes(passed=3, warnings=2)
    assert output.count("source 'faulty'") == 1, output
    result.stdout.fnmatch_lines(["*random reseeded during call*"])
    assert "faulty reseeded" not in output


# -- any option, ini or marker value: a working run, a usage error or a clean test error --------

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None  # type: ignore[assignment]

ODD_TEXT = st.sampled_from(["", " ", "0", "-1", "1", "2", "yes", "maybe", "all", "x=y", "\t"]) | (
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
    if given is not None
    else None
)
OPTIONS = ("--rngguard", "--rngguard-restore", "--rngguard-seed", "--rngguard-repeat")
INI_KEYS = (
    "rngguard_mode",
    "rngguard_strict",
    "rngguard_restore",
    "rngguard_seed",
    "rngguard_sources",
    "rngguard_env",
    "rngguard_ignore",
    "rngguard_trace",
)
MARKER_ARGS = st.sampled_from(
    [
        "",
        "1",
        "-1",
        "2**64",
        "'1'",
        "None",
        "seed=1.5",
        "env={'A': 1}",
        "env={'': 'x'}",
        "env=['A']",
        "torch_flags='yes'",
        "warn_only=None",
        "repeat=0",
        "repeat='2'",
        "1, 2",
        "unknown=1",
        "seed=True",
        "env={'OK_VAR': 'v'}",
    ]
)


@pytest.mark.skipif(given is None, reason="needs hypothesis")
@settings(
    max_examples=int(os.environ.get("RNGGUARD_FUZZ_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck) if given is not None else [],
)
@given(
    option=st.sampled_from(OPTIONS),
    value=ODD_TEXT,
    ini=st.sampled_from(INI_KEYS),
    ini_value=ODD_TEXT,
    marker=MARKER_ARGS,
)
def test_any_value_gives_a_run_a_usage_error_or_a_clean_test_error(
    pytester: pytest.Pytester,
    unchanged: None,
    option: str,
    value: str,
    ini: str,
    ini_value: str,
    marker: str,
) -> None:
    """``RNGGUARD_FUZZ_EXAMPLES=500`` for a long run."""
    if "\n" in ini_value or "\r" in ini_value:
        ini_value = ini_value.replace("\n", " ").replace("\r", " ")
    pytester.makeini(f"[pytest]\n{ini} = {ini_value}\n")
    pytester.makepyfile(
        test_fuzzed=f"""
        import random

        import pytest

        @pytest.mark.deterministic({marker})
        def test_marked():
            random.random()

        def test_plain():
            random.seed(3)
        """
    )
    result = pytester.runpytest_inprocess(*NO_RANDOMLY, f"{option}={value}")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output, output
    assert result.ret in (0, 1, pytest.ExitCode.USAGE_ERROR), output
    if result.ret == pytest.ExitCode.USAGE_ERROR:
        assert option in output or ini in output, output  # the error names what was wrong
    for line in output.splitlines():
        assert not (line.startswith("  File ") and "pytest_rngguard" in line), output
