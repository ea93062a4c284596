"""pytest-xdist: what a worker hands its controller, and the controller's side of it.

A test's results travel on its reports, which xdist serialises with every attribute: each
``put_*`` function here writes one and its ``*_on`` twin reads it back, so these names are
written and read in this module only (the one channel: the plugin reads a leak back from
nothing else).  What no report carries (the leaks of test
modules' imports, and what became of changes whose scope ended after their test's report)
travels in ``workeroutput`` at the end of the session.  The controller's hooks are
registered only on the controller.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .baseline import Baseline
    from .report import Leak
    from .reproducibility import RepeatOutcome
    from .session import Results

# The attributes on test reports.
_LEAKS = "rngguard_leaks"  # the test's leaks, on its teardown report
_SEED = "rngguard_seed"  # a deterministic test's seed, on each of its reports
_COMPARED = "rngguard_compared"  # set where a deterministic run was compared
_FINGERPRINT = "rngguard_fingerprint"  # a passing deterministic test's, on its call report
_NOT_REPRODUCIBLE = "rngguard_not_reproducible"  # on the call report of one that is not
# The keys of ``workeroutput``.
_COLLECTION_LEAKS = "rngguard_collection_leaks"
_SETTLED = "rngguard_settled"
_RAN = "rngguard_ran"  # what ran, for the baseline: collectors and wider fixtures


def is_controller(config: pytest.Config) -> bool:
    """Whether this process is an xdist controller: its tests run in its workers."""
    return getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")


def put_leaks(report: pytest.TestReport, leaks: Sequence[Leak]) -> None:
    """The test's leaks, each settled as far as it is, on its last report."""
    setattr(report, _LEAKS, [leak.to_json() for leak in leaks])


def put_seed(report: pytest.TestReport, seed: int, compared: bool) -> None:
    setattr(report, _SEED, seed)
    if compared:
        setattr(report, _COMPARED, True)


def put_fingerprint(report: pytest.TestReport, printed: dict[str, Any]) -> None:
    setattr(report, _FINGERPRINT, printed)


def put_not_reproducible(report: pytest.TestReport, outcome: RepeatOutcome) -> None:
    setattr(report, _NOT_REPRODUCIBLE, outcome.to_json())


def leaks_on(report: pytest.TestReport) -> list[Leak]:
    found = getattr(report, _LEAKS, None)
    if not found:
        return []
    from .report import Leak

    return [Leak.from_json(data) for data in found]


def not_reproducible_on(report: pytest.TestReport) -> RepeatOutcome | None:
    found = getattr(report, _NOT_REPRODUCIBLE, None)
    if not found:
        return None
    from .reproducibility import RepeatOutcome

    return RepeatOutcome.from_json(found)


def fingerprint_on(report: pytest.TestReport) -> dict[str, Any] | None:
    printed: dict[str, Any] | None = getattr(report, _FINGERPRINT, None)
    return printed


def compared_on(report: pytest.TestReport) -> bool:
    return bool(getattr(report, _COMPARED, False))


def hand_over(config: pytest.Config, results: Results, baseline: Baseline | None = None) -> bool:
    """On a worker, at the end of the session: hand the controller what no test report
    carried.  False elsewhere."""
    output = getattr(config, "workeroutput", None)
    if output is None:
        return False
    if baseline is not None:
        output[_RAN] = baseline.ran.to_json()
    output[_COLLECTION_LEAKS] = [leak.to_json() for leak in results.collection_leaks]
    output[_SETTLED] = [
        [list(leak.key()), leak.putback.done is True, leak.putback.why]
        for leak in results.unsettled
    ]
    return True


class Controller:
    """The xdist controller's hooks: gather every test's results from its workers' reports
    as they are logged, and each worker's hand-over as it goes down.  Registered per
    session, since ``pytest_runtest_logreport`` is not given the config."""

    def __init__(self, results: Results, baseline: Baseline | None = None) -> None:
        self._results = results
        self._baseline = baseline

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        results = self._results
        results.leaks.extend(leaks_on(report))
        problem = not_reproducible_on(report)
        if problem is not None:
            results.not_reproducible.append(problem)
        printed = fingerprint_on(report)
        if printed is not None:
            results.fingerprints[report.nodeid] = printed
        if compared_on(report):
            results.compared = True
        if report.when == "teardown":
            results.tests += 1

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Every worker collects every module: merge their collection leaks once each;
        and settle the leaks of wider scopes, which ended after their report was sent."""
        from .report import Leak

        results = self._results
        output = getattr(node, "workeroutput", {})
        if self._baseline is not None:
            self._baseline.ran.merge(output.get(_RAN, {}))
        seen = {json.dumps(leak.to_json(), sort_keys=True) for leak in results.collection_leaks}
        for data in output.get(_COLLECTION_LEAKS, []):
            key = json.dumps(data, sort_keys=True)
            if key not in seen:
                seen.add(key)
                results.collection_leaks.append(Leak.from_json(data))
        settled = {tuple(key): (done, why) for key, done, why in output.get(_SETTLED, [])}
        if settled:
            for leak in results.leaks:
                found = settled.get(leak.key())
                if found is not None and leak.putback.done is None:
                    leak.putback.settle(*found)
