"""The oracle: generated suites, run for real, checked against an independent model.

Hypothesis writes small suites -- seeds, draws, foreign ``setstate`` calls, local generators,
an environment variable set and unset, a torch flag, the first import of ``numpy.random`` or
of torch -- placed at module import, in session, module and function fixtures (setup and
teardown) and in test bodies.  Each suite runs in a fresh pytest process with the plugin and
``rng_observer``, which records what every test's body starts from by reading the states
itself.  ``oracle_model`` (pure Python, written from the scoping rules, not from the plugin)
says what each test must see and which leaks must be reported; both are compared: the
observations with the model's states, the JSON report's leaks with the model's.

Serially (with every ``--rngguard-restore`` and ``--rngguard-strict``), under pytest-randomly
(which reshuffles and reseeds: the order run comes from the observations, and only what it
does not reseed is compared with what was seen) and under pytest-xdist ``-n 2`` (each worker
is modelled on its own, with the order it ran its tests in).  With ``--rngguard-trace`` the
suites set the states through what no wrapper sees (seeding functions bound before the
session, a Cython one for NumPy; the global ``Random``'s own ``setstate``), and every leak's
origin must be a line that operates on its source.

CI runs a bounded, derandomised set of examples (about a minute on two cores).  For a long
run set ``RNGGUARD_ORACLE_EXAMPLES`` (say 500): every test then draws that many examples and
is randomised, e.g.
``RNGGUARD_ORACLE_EXAMPLES=500 pytest tests/test_oracle.py -n 2 -p no:randomly``.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from typing import Any

import pytest
from conftest import require
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from oracle_model import ENV, INITIAL_SEEDS, RNGS, UNLOADED, Case, Fixture, Module, Run, Suite
from rng_observer import numpy_print, random_print, torch_print
from test_scopes import OBSERVER

LONG = int(os.environ.get("RNGGUARD_ORACLE_EXAMPLES", "0"))


def examples(ci: int) -> settings:
    return settings(
        max_examples=LONG or ci,
        derandomize=not LONG,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# -- generating suites -----------------------------------------------------------------------


def operations(sources: tuple[str, ...], torch: bool) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    source = st.sampled_from(sources)
    op = st.one_of(
        st.tuples(st.just("seed"), source, st.integers(0, 2)),
        st.tuples(st.just("draw"), source),
        st.tuples(st.just("foreign"), source, st.integers(0, 2)),
        st.tuples(st.just("local"), source),
        st.tuples(st.just("fork"), source, st.integers(0, 2)),
        st.tuples(st.just("setenv"), st.sampled_from(["1", "2"])),
        st.tuples(st.just("unsetenv")),
        *([st.tuples(st.just("flag"), st.booleans())] if torch else []),
    )
    return st.lists(op, max_size=3)


@st.composite
def suites(draw: Any, torch: str | None = None) -> Suite:
    sources: tuple[str, ...] = ("random", "numpy", *(("torch",) if torch else ()))
    ops = operations(sources, torch is not None)
    session = [
        Fixture(f"s{i}", "session", draw(ops), draw(ops)) for i in range(draw(st.integers(0, 2)))
    ]
    modules = []
    for m in range(draw(st.integers(1, 3))):
        fixtures = [
            Fixture(f"m{m}_{i}", "module", draw(ops), draw(ops))
            for i in range(draw(st.integers(0, 2)))
        ] + [
            Fixture(f"f{m}_{i}", "function", draw(ops), draw(ops))
            for i in range(draw(st.integers(0, 2)))
        ]
        tests = []
        for t in range(draw(st.integers(1, 3))):
            available = {f.name: f for f in (*session, *fixtures)}
            names = draw(
                st.lists(st.sampled_from(sorted(available)), unique=True)
                if available
                else st.just([])
            )
            wanted = [available[name] for name in names]
            order = {"session": 0, "module": 1, "function": 2}
            # pytest sets wider scopes up first; within a scope, in the order requested
            requested = sorted(wanted, key=lambda f: order[f.scope])
            tests.append(
                Case(f"test_t{t}", [f.name for f in requested], draw(ops), draw(st.booleans()))
            )
        modules.append(Module(f"test_m{m}", draw(ops), fixtures, tests))
    return Suite(session, modules, numpy_lazy=draw(st.booleans()), torch=torch)


# -- writing them ----------------------------------------------------------------------------


#: Bound in the conftest, before the session wraps the seeding functions (``early`` suites).
EARLY = {
    "random": "from random import seed as _early_random_seed",
    "numpy": "from numpy.random import seed as _early_np_seed",
}


def early_code(op: tuple[Any, ...], suite: Suite) -> str | None:
    """The operation done through what no wrapper sees, where it can be: an early-bound
    seeding function (a Cython one for NumPy), a method of the global instance.

    Not NumPy's state set as an attribute (``tests/test_trace.py`` has that): with no call,
    only the states tell, and a foreign state one draw past the current one (``seed(2)``
    then ``foreign(2)``) is a draw to them, where the model knows it was set."""
    what, source = op[0], op[1] if len(op) > 1 else None
    if what == "seed" and source == "random":
        return f"_early_random_seed({op[-1]})"
    if what == "seed" and source == "numpy" and not suite.numpy_lazy:
        return f"_early_np_seed({op[-1]})"
    if what == "foreign" and source == "random":
        return f"_r = random.Random({op[-1]}); _r.random(); random._inst.setstate(_r.getstate())"
    return None


def code(op: tuple[Any, ...], suite: Suite, early: bool = False) -> str:
    if early:
        done = early_code(op, suite)
        if done is not None:
            return done
    what = op[0]
    if what == "setenv":
        return f"os.environ[{ENV!r}] = {op[1]!r}"
    if what == "unsetenv":
        return f"os.environ.pop({ENV!r}, None)"
    if what == "flag":
        return f"import torch; torch.backends.cudnn.benchmark = {op[1]}"
    source = op[1]
    if source == "random":
        return {
            "seed": f"random.seed({op[-1]})",
            "draw": "random.random()",
            "foreign": f"_r = random.Random({op[-1]}); _r.random(); random.setstate(_r.getstate())",
            "local": "random.Random(9).random()",
            "fork": (
                f"_st = random.getstate(); random.seed({op[-1]}); random.random(); "
                "random.setstate(_st)"
            ),
        }[what]
    if source == "numpy":
        return {
            "seed": f"np.random.seed({op[-1]})",
            "draw": "np.random.rand()",
            "foreign": (
                f"_s = np.random.RandomState({op[-1]}); _s.rand(); "
                "np.random.set_state(_s.get_state())"
            ),
            "local": "np.random.default_rng(9).random()",
            "fork": (
                f"_st = np.random.get_state(); np.random.seed({op[-1]}); np.random.rand(); "
                "np.random.set_state(_st)"
            ),
        }[what]
    return (
        "import torch; "
        + {
            "seed": f"torch.manual_seed({op[-1]})",
            "draw": "torch.rand(1)",
            "foreign": (
                f"_g = torch.Generator(); _g.manual_seed({op[-1]}); torch.rand(1, generator=_g); "
                "torch.set_rng_state(_g.get_state())"
            ),
            "local": "torch.rand(1, generator=torch.Generator().manual_seed(9))",
            "fork": (
                f"_st = torch.get_rng_state(); torch.manual_seed({op[-1]}); torch.rand(1); "
                "torch.set_rng_state(_st)"
            ),
        }[what]
    )


def block(ops: list[tuple[Any, ...]], suite: Suite, indent: str, early: bool = False) -> str:
    return "\n".join(indent + code(op, suite, early) for op in ops) or indent + "pass"


HEADER = "import os\nimport random\n\nimport numpy as np\nimport pytest\n"


def fixture_code(fixture: Fixture, suite: Suite, early: bool = False) -> str:
    setup = block(fixture.setup, suite, "    ", early)
    teardown = block(fixture.teardown, suite, "    ", early)
    return (
        f"@pytest.fixture(scope={fixture.scope!r})\ndef {fixture.name}():\n"
        f"{setup}\n    yield\n{teardown}\n"
    )


def write(pytester: pytest.Pytester, suite: Suite, early: bool = False) -> None:
    # One pytester folder serves every example: nothing of the last suite may stay.
    for old in pytester.path.glob("*.py"):
        old.unlink()
    for cache in pytester.path.glob("__pycache__"):
        for pyc in cache.iterdir():
            pyc.unlink()
    conftest = [
        HEADER,
        "import numpy" if suite.numpy_lazy else "import numpy.random",
        f"random.seed({INITIAL_SEEDS['random']})",
        f"os.environ.pop({ENV!r}, None)",
    ]
    if not suite.numpy_lazy:
        conftest.append(f"np.random.seed({INITIAL_SEEDS['numpy']})")
    bound = [EARLY["random"], *([] if suite.numpy_lazy else [EARLY["numpy"]])] if early else []
    conftest += bound
    if suite.torch == "loaded":
        conftest += [
            "import torch",
            f"torch.manual_seed({INITIAL_SEEDS['torch']})",
            "torch.backends.cudnn.benchmark = False",
        ]
    conftest += [fixture_code(f, suite, early) for f in suite.session_fixtures]
    files = {"conftest": "\n".join(conftest) + "\n", "rng_observer": OBSERVER}
    for module in suite.modules:
        names = ", ".join(line.rpartition(" ")[2] for line in bound)
        header = HEADER + (f"from conftest import {names}\n" if names else "")
        parts = [header, block(module.imports, suite, "", early)]
        parts += [fixture_code(f, suite, early) for f in module.fixtures]
        for test in module.tests:
            mark = "@pytest.mark.allow_rng_leak\n" if test.allow else ""
            body = block(test.body, suite, "    ", early)
            parts.append(f"{mark}def {test.name}({', '.join(test.fixtures)}):\n{body}\n")
        files[module.name] = "\n\n".join(parts)
    for name, text in files.items():
        pytester.makepyfile(**{name: text})


def run(
    pytester: pytest.Pytester,
    suite: Suite,
    *args: str,
    plugins: tuple[str, ...] = (),
    early: bool = False,
) -> tuple[pytest.RunResult, dict[str, Any], list[dict[str, Any]]]:
    write(pytester, suite, early)
    report, seen = pytester.path / "report.json", pytester.path / "seen.jsonl"
    for path in (report, seen):
        path.unlink(missing_ok=True)
    loaded = [a for name in ("rngguard", "rng_observer", *plugins) for a in ("-p", name)]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        env.setenv("RNG_OBSERVATIONS", str(seen))
        env.delenv(ENV, raising=False)
        result = pytester.runpytest_subprocess(
            *loaded, "-p", "no:cacheprovider", f"--rngguard-report={report}", *args
        )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert result.ret == 0, result.stdout.str()[-3000:]
    lines = [json.loads(line) for line in seen.read_text().splitlines()]
    return result, json.loads(report.read_text()), lines


# -- comparing -------------------------------------------------------------------------------


def concrete(source: str, value: Any) -> str | None:
    """The observer's fingerprint of a model state with a known seed; None for a state
    nobody chose (compared by consistency instead)."""
    seed, draws = value
    if not isinstance(seed, int):
        return None
    if source == "random":
        generator = random.Random(seed)
        for _ in range(draws):
            generator.random()
        return random_print(generator.getstate())
    if source == "numpy":
        import numpy

        state = numpy.random.RandomState(seed)
        for _ in range(draws):
            state.rand()
        return numpy_print(state.get_state())
    import torch

    torch_generator = torch.Generator()
    torch_generator.manual_seed(seed)
    for _ in range(draws):
        torch.rand(1, generator=torch_generator)
    return torch_print(torch_generator.get_state())


def check_seen(model: Run, lines: list[dict[str, Any]], sources: tuple[str, ...]) -> None:
    """Every observation as the model says, a state nobody chose included: the same one is
    seen the same everywhere in the process, and never as another."""
    named: dict[Any, str] = {}
    for line in lines:
        nodeid, seen = line["nodeid"], line["seen"]
        want = model.seen[nodeid]
        assert seen["env"][ENV] == want["env"], (nodeid, "env")
        for source in sources:
            value = want.get(source)
            if value is None or value == UNLOADED:
                assert source not in seen, (nodeid, source, "loaded")
                continue
            got = seen[source]
            expected = concrete(source, value)
            if expected is None:
                expected = named.setdefault((source, value), got)
            assert got == expected, (nodeid, source, value)
            if source == "torch" and isinstance(value[0], int):
                assert seen["torch_seed"] == value[0], nodeid
        if "flags" in want and want["flags"] != UNLOADED:
            assert seen["flags"][1] == want["flags"], (nodeid, "flags")
    # Distinct model states are distinct observations.
    assert len(set(named.values())) == len(named)


def leak_rows(leaks: list[Any]) -> Counter[tuple[Any, ...]]:
    return Counter(
        (
            leak["nodeid"],
            leak["phase"],
            leak["fixture"],
            leak["source"],
            leak["detail"],
            leak["kind"],
        )
        if isinstance(leak, dict)
        else (leak.nodeid, leak.phase, leak.fixture, leak.source, leak.detail, leak.kind)
        for leak in leaks
    )


def order_of(suite: Suite, lines: list[dict[str, Any]], worker: str) -> list[tuple[Module, Case]]:
    by_id = {f"{m.name}.py::{t.name}": (m, t) for m, t in suite.tests()}
    return [by_id[line["nodeid"]] for line in lines if line["worker"] == worker]


def describe(suite: Suite) -> str:
    return json.dumps(
        {
            "session": [vars(f) for f in suite.session_fixtures],
            "modules": [
                {
                    "name": m.name,
                    "imports": m.imports,
                    "fixtures": [vars(f) for f in m.fixtures],
                    "tests": [vars(t) for t in m.tests],
                }
                for m in suite.modules
            ],
            "numpy_lazy": suite.numpy_lazy,
            "torch": suite.torch,
        },
        indent=1,
    )


def check(
    pytester: pytest.Pytester,
    suite: Suite,
    *args: str,
    restore: str = "leaked",
    strict: bool = False,
    plugins: tuple[str, ...] = (),
    randomly: bool = False,
    early: bool = False,
) -> dict[str, Any]:
    options = [f"--rngguard-restore={restore}", *(["--rngguard-strict"] if strict else []), *args]
    _, report, lines = run(pytester, suite, *options, plugins=plugins, early=early)
    workers = sorted({line["worker"] for line in lines})
    expected: Counter[tuple[Any, ...]] = Counter()
    for number, worker in enumerate(workers):
        model = Run(suite, restore=restore, strict=strict, randomly=randomly)
        model.collect()
        if number == 0:
            expected.update(leak_rows([leak for leak in model.leaks if leak.phase == "collection"]))
        model.leaks = [leak for leak in model.leaks if leak.phase != "collection"]
        model.run(order_of(suite, lines, worker))
        expected.update(leak_rows(model.leaks))
        compared = tuple(s for s in RNGS if not (randomly and s in ("random", "numpy")))
        mine = [line for line in lines if line["worker"] == worker]
        try:
            check_seen(model, mine, compared)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nsuite: {describe(suite)}\nseen: {mine}") from None
    got = leak_rows(report["leaks"])
    assert got == expected, (
        f"reported but not modelled: {dict(got - expected)}\n"
        f"modelled but not reported: {dict(expected - got)}\nsuite: {describe(suite)}"
    )
    assert all(leak["restored"] is (restore != "none") for leak in report["leaks"]), report
    return report


#: What a line that operates on each source reads like.
OPERATES_ON = {
    "random": re.compile(r"(?<!np\.)random\.(seed|random|setstate|Random|_inst)|_early_random"),
    "numpy": re.compile(r"np\.random|_early_np_seed"),
    "torch": re.compile(r"torch\."),
    "env": re.compile(ENV),
    "torch.flags": re.compile(r"cudnn"),
}


def check_origins(pytester: pytest.Pytester, report: dict[str, Any]) -> None:
    """Every leak that is not draws alone has an origin, and every origin is a line of the
    suite that operates on the leak's source."""
    texts = {path.name: path.read_text().splitlines() for path in pytester.path.glob("*.py")}
    for leak in report["leaks"]:
        origin = leak["origin"]
        if origin is None:
            assert leak["kind"] == "advanced", leak
            continue
        line = texts[origin["file"]][origin["line"] - 1]
        assert OPERATES_ON[leak["source"]].search(line), (leak, line)


# -- the runs --------------------------------------------------------------------------------


def one_test(*body: tuple[Any, ...]) -> Suite:
    return Suite([], [Module("test_m0", [], [], [Case("test_t0", [], list(body))])])


@examples(ci=30)
@given(
    suite=suites(),
    restore=st.sampled_from(["leaked", "leaked", "all", "none"]),
    strict=st.booleans(),
)
# A put-back of the state an earlier call made, and of the state from before a call.
@example(one_test(("seed", "random", 1), ("fork", "random", 2)), "leaked", False)
@example(one_test(("seed", "numpy", 1), ("draw", "numpy"), ("fork", "numpy", 2)), "leaked", False)
def test_serial_runs_match_the_model(
    pytester: pytest.Pytester, numpy: Any, suite: Suite, restore: str, strict: bool
) -> None:
    check(pytester, suite, restore=restore, strict=strict)


@examples(ci=8)
@given(suite=suites(), restore=st.sampled_from(["leaked", "all"]))
def test_runs_under_pytest_randomly_match_the_model(
    pytester: pytest.Pytester, numpy: Any, suite: Suite, restore: str
) -> None:
    require("pytest_randomly")
    check(
        pytester,
        suite,
        "--randomly-seed=12345",
        restore=restore,
        plugins=("randomly",),
        randomly=True,
    )


@examples(ci=6)
@given(suite=suites(), restore=st.sampled_from(["leaked", "all"]))
def test_runs_under_xdist_match_the_model_per_worker(
    pytester: pytest.Pytester, numpy: Any, suite: Suite, restore: str
) -> None:
    require("xdist")
    check(pytester, suite, "-n", "2", restore=restore, plugins=("xdist.plugin",))


@examples(ci=5)
@given(
    suite=suites(torch="lazy") | suites(torch="loaded"),
    restore=st.sampled_from(["leaked", "all"]),
    strict=st.booleans(),
)
def test_runs_with_torch_match_the_model(
    pytester: pytest.Pytester, numpy: Any, torch: Any, suite: Suite, restore: str, strict: bool
) -> None:
    check(pytester, suite, restore=restore, strict=strict)


@examples(ci=8)
@given(
    suite=suites(),
    restore=st.sampled_from(["leaked", "all", "none"]),
    strict=st.booleans(),
)
# Early-bound reseeds and a foreign state set through the global instance: no wrapper sees
# any of them.
@example(
    Suite(
        [],
        [
            Module(
                "test_m0",
                [("seed", "numpy", 1)],
                [Fixture("f0_0", "function", [("foreign", "random", 2)], [("seed", "random", 2)])],
                [Case("test_t0", ["f0_0"], [("seed", "numpy", 2), ("draw", "numpy")])],
            )
        ],
    ),
    "leaked",
    False,
)
@example(one_test(("seed", "numpy", 1), ("fork", "numpy", 2)), "leaked", True)
def test_traced_runs_match_the_model_and_name_a_line_of_each_leak(
    pytester: pytest.Pytester, numpy: Any, suite: Suite, restore: str, strict: bool
) -> None:
    report = check(pytester, suite, "--rngguard-trace", restore=restore, strict=strict, early=True)
    check_origins(pytester, report)
