"""``torch.cuda`` on a real GPU: per-device generators read once CUDA has started, reseeds and
draws told apart, seeds queued before CUDA starts, CUDA never started by the plugin, and the
seeding helpers of transformers, accelerate and lightning reported with their origins."""

from __future__ import annotations

import re
import timeit
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from conftest import NO_RANDOMLY, run_with_report

from pytest_rngguard.sources.torch_cuda import TorchCudaSource


def leaks_by_test(report: dict[str, Any], *fields: str) -> list[tuple[Any, ...]]:
    """The report's leaks as (test function, *fields), sorted."""
    return sorted(
        (leak["nodeid"].rpartition("::")[2], *(leak[f] for f in fields)) for leak in report["leaks"]
    )


@pytest.fixture
def cuda(torch: ModuleType) -> ModuleType:
    """torch with CUDA started in this process (in-process inner runs share it)."""
    torch.zeros(1, device="cuda")
    return torch


def generators(torch: ModuleType) -> list[tuple[int, int]]:
    return [(g.initial_seed(), g.get_offset()) for g in torch.cuda.default_generators]


# -- reseeds, draws and replacements, per device ---------------------------------------------


def test_cuda_reseeds_draws_and_foreign_states_are_reported_per_device_and_put_back(
    pytester: pytest.Pytester, cuda: ModuleType, observe: Callable[[str, Any], None]
) -> None:
    before = generators(cuda)
    pytester.makepyfile(
        f"""
        import torch

        def test_reseeds_the_current_device():
            torch.cuda.manual_seed(123)

        def test_draws_on_the_gpu():
            torch.rand(1000, device="cuda")

        def test_reseeds_every_device():
            torch.cuda.manual_seed_all(7)

        def test_reseeds_cpu_and_cuda_at_once():
            torch.manual_seed(11)

        def test_sets_a_foreign_state():
            other = torch.Generator(device="cuda")
            other.manual_seed(99)
            torch.rand(100, device="cuda", generator=other)
            torch.cuda.set_rng_state(other.get_state())

        def test_zz_every_generator_was_put_back():
            assert [(g.initial_seed(), g.get_offset())
                    for g in torch.cuda.default_generators] == {before!r}
        """
    )
    result, report = run_with_report(pytester, "--rngguard-strict")
    result.assert_outcomes(passed=6, warnings=5)
    devices = [f"cuda:{i}" for i in range(cuda.cuda.device_count())]
    rows = leaks_by_test(report, "source", "kind", "detail", "restored")
    observe("torch.cuda leaks (strict)", [list(r) for r in rows])
    assert rows == sorted(
        [
            ("test_draws_on_the_gpu", "torch.cuda", "advanced", "cuda:0", True),
            ("test_reseeds_cpu_and_cuda_at_once", "torch", "reseeded", "", True),
            *(
                ("test_reseeds_cpu_and_cuda_at_once", "torch.cuda", "reseeded", d, True)
                for d in devices
            ),
            *(("test_reseeds_every_device", "torch.cuda", "reseeded", d, True) for d in devices),
            ("test_reseeds_the_current_device", "torch.cuda", "reseeded", "cuda:0", True),
            ("test_sets_a_foreign_state", "torch.cuda", "replaced", "cuda:0", True),
        ]
    )
    origins = {
        leak["nodeid"].rpartition("::")[2]: leak["origin"]["line"]
        for leak in report["leaks"]
        if leak["source"] == "torch.cuda" and leak["kind"] != "advanced"
    }
    assert origins == {
        "test_reseeds_the_current_device": 4,
        "test_reseeds_every_device": 10,
        "test_reseeds_cpu_and_cuda_at_once": 13,
        "test_sets_a_foreign_state": 19,
    }
    assert generators(cuda) == before
    capture = TorchCudaSource().capture
    observe("torch.cuda capture with CUDA started, µs", microseconds(capture))


def microseconds(function: Callable[[], object], number: int = 2000) -> float:
    """The mean time of one call, for the observations (never asserted on)."""
    return round(timeit.timeit(function, number=number) / number * 1e6, 2)


def test_a_reseed_of_the_second_device_names_only_that_device(
    pytester: pytest.Pytester, cuda: ModuleType
) -> None:
    if cuda.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    pytester.makepyfile(
        """
        import torch

        def test_reseeds_device_one():
            with torch.cuda.device(1):
                torch.cuda.manual_seed(5)
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=1, warnings=1)
    assert leaks_by_test(report, "source", "kind", "detail") == [
        ("test_reseeds_device_one", "torch.cuda", "reseeded", "cuda:1")
    ]


# -- before CUDA starts (a fresh process each) -----------------------------------------------


def test_a_seed_queued_before_cuda_starts_is_attributed_and_undone(
    pytester: pytest.Pytester, observe: Callable[[str, Any], None]
) -> None:
    pytester.makeconftest(
        """
        import torch

        torch.manual_seed(0)  # CUDA has not started: torch queues the seed for it
        """
    )
    pytester.makepyfile(
        """
        import torch

        def test_queues_a_cuda_seed():
            torch.manual_seed(3)

        def test_starts_cuda_with_the_seed_queued_before_the_session():
            torch.zeros(1, device="cuda")
            assert torch.cuda.initial_seed() == 0
        """
    )
    result, report = run_with_report(pytester, subprocess=True)
    rows = leaks_by_test(report, "source", "kind", "detail")
    observe("seed queued before CUDA starts", [list(r) for r in rows])
    result.assert_outcomes(passed=2, warnings=1)
    assert rows == [
        ("test_queues_a_cuda_seed", "torch", "reseeded", ""),
        ("test_queues_a_cuda_seed", "torch.cuda", "reseeded", "queued until CUDA initialises"),
    ]
    assert {leak["origin"]["line"] for leak in report["leaks"]} == {4}


def test_a_test_that_seeds_and_then_starts_cuda_is_reported_and_undone(
    pytester: pytest.Pytester, observe: Callable[[str, Any], None]
) -> None:
    pytester.makepyfile(
        """
        import torch

        def test_seeds_then_starts_cuda():
            torch.cuda.manual_seed_all(9)
            torch.zeros(1, device="cuda")

        def test_sees_a_fresh_seed_not_the_one_put_back():
            # What CUDA starts a device with when nothing is queued: 64 random bits.
            assert torch.cuda.initial_seed() != 9
            assert torch.cuda.initial_seed() >= 2**32
        """
    )
    result, report = run_with_report(pytester, subprocess=True)
    rows = leaks_by_test(report, "source", "kind", "detail", "restored")
    observe("seeded then started CUDA in one test", [list(r) for r in rows])
    observe("outcomes after a test seeds and starts CUDA", result.parseoutcomes())
    assert rows == [("test_seeds_then_starts_cuda", "torch.cuda", "reseeded", "cuda:0", True)]
    assert report["leaks"][0]["origin"]["line"] == 4
    result.assert_outcomes(passed=2, warnings=1)


NEVER_STARTS_CUDA = """
    import pytest
    import torch

    import pytest_rngguard

    def test_plain():
        torch.rand(3)
        torch.manual_seed(1)

    @pytest.mark.deterministic
    def test_deterministic(rngguard):
        rngguard.record("draws", torch.rand(3))

    def test_library_api():
        with pytest_rngguard.isolated():
            torch.manual_seed(2)
        with pytest_rngguard.deterministic(3):
            torch.rand(2)
        pytest_rngguard.snapshot()
        with pytest_rngguard.guard():
            pass
        pytest_rngguard.assert_reproducible(torch.rand, 2)

    def test_zz_cuda_never_started():
        assert not torch.cuda.is_initialized()
"""

#: Printed by the inner process at exit, after the plugin has cleaned up.
AT_EXIT = """
    import atexit

    import torch

    atexit.register(lambda: print(f"CUDA_INITIALIZED={torch.cuda.is_initialized()}"))
"""


def never_starts_cuda(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(AT_EXIT)
    pytester.makepyfile(NEVER_STARTS_CUDA)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param((), id="warn"),
        pytest.param(
            ("--rngguard-repeat=2", "--rngguard-restore=all", "--rngguard-trace"),
            id="repeat-restore-all-trace",
        ),
        pytest.param(("--rngguard=fail", "--rngguard-strict"), id="fail-strict"),
    ],
)
def test_the_plugin_never_starts_cuda_in_any_mode(
    pytester: pytest.Pytester, options: tuple[str, ...], observe: Callable[[str, Any], None]
) -> None:
    never_starts_cuda(pytester)
    result = pytester.runpytest_subprocess(*NO_RANDOMLY, "-rA", *options)
    observe(f"CUDA never started, options {' '.join(options) or '(none)'}", result.parseoutcomes())
    result.stdout.fnmatch_lines(
        ["PASSED *::test_library_api", "PASSED *::test_zz_cuda_never_started"]
    )
    assert "CUDA_INITIALIZED=False" in result.stdout.lines


def test_a_deterministic_test_repeats_alike_before_cuda_starts(
    pytester: pytest.Pytester, observe: Callable[[str, Any], None]
) -> None:
    never_starts_cuda(pytester)
    result = pytester.runpytest_subprocess(*NO_RANDOMLY, "-rA", "--rngguard-repeat=2")
    observe("torch.cuda state before CUDA starts, repeated", result.parseoutcomes())
    result.stdout.fnmatch_lines(["PASSED *::test_deterministic"])
    assert "CUDA_INITIALIZED=False" in result.stdout.lines


def test_fingerprints_match_across_processes_before_cuda_starts(
    pytester: pytest.Pytester, observe: Callable[[str, Any], None]
) -> None:
    never_starts_cuda(pytester)
    path = pytester.path / "fingerprints.json"
    options = (*NO_RANDOMLY, "-rA", f"--rngguard-fingerprints={path}")
    pytester.runpytest_subprocess(*options).stdout.fnmatch_lines(["PASSED *::test_deterministic"])
    assert "test_deterministic" in path.read_text()
    result = pytester.runpytest_subprocess(*options)
    observe("torch.cuda state before CUDA starts, fingerprint", result.parseoutcomes())
    result.stdout.fnmatch_lines(["PASSED *::test_deterministic"])
    assert "CUDA_INITIALIZED=False" in result.stdout.lines


# -- seeding helpers of the libraries users train with ---------------------------------------


def test_library_seeding_helpers_reseed_cuda_and_are_reported_with_their_origins(
    pytester: pytest.Pytester, cuda: ModuleType, observe: Callable[[str, Any], None]
) -> None:
    transformers = pytest.importorskip("transformers")
    accelerate_utils = pytest.importorskip("accelerate.utils")
    lightning = pytest.importorskip("lightning")
    # Loaded before the inner run, like a conftest would: pytester drops modules it imports.
    for helper in (transformers.set_seed, accelerate_utils.set_seed, lightning.seed_everything):
        assert callable(helper)
    before = generators(cuda)
    pytester.makepyfile(
        f"""
        import accelerate.utils
        import lightning
        import torch
        import transformers

        def test_transformers_set_seed():
            transformers.set_seed(1)

        def test_transformers_enable_full_determinism():
            transformers.enable_full_determinism(2)

        def test_accelerate_set_seed():
            accelerate.utils.set_seed(3)

        def test_lightning_seed_everything():
            lightning.seed_everything(4)

        def test_zz_cuda_was_put_back():
            assert [(g.initial_seed(), g.get_offset())
                    for g in torch.cuda.default_generators] == {before!r}
            assert not torch.are_deterministic_algorithms_enabled()
        """
    )
    result, report = run_with_report(pytester)
    result.assert_outcomes(passed=5, warnings=4)
    cuda_leaks = {
        leak["nodeid"].rpartition("::")[2]: (
            leak["kind"],
            re.sub(r".*site-packages/", "", leak["origin"]["file"]),
            leak["origin"]["function"],
            leak["origin"]["stack"][0].rpartition(" in ")[2],
        )
        for leak in report["leaks"]
        if leak["source"] == "torch.cuda" and leak["detail"] == "cuda:0"
    }
    observe("library seeders on CUDA", cuda_leaks)
    observe(
        "library seeders, every leak",
        [list(r) for r in leaks_by_test(report, "source", "kind", "detail")],
    )
    assert {test: (kind, function) for test, (kind, _, function, _) in cuda_leaks.items()} == {
        "test_transformers_set_seed": ("reseeded", "set_seed"),
        "test_transformers_enable_full_determinism": ("reseeded", "set_seed"),
        "test_accelerate_set_seed": ("reseeded", "set_seed"),
        "test_lightning_seed_everything": ("reseeded", "seed_everything"),
    }
    assert {test: stack_top for test, (_, _, _, stack_top) in cuda_leaks.items()} == {
        test: test for test in cuda_leaks
    }
    assert generators(cuda) == before
