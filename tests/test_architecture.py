"""The layout docs/architecture.md describes holds: hooks in the plugin, private APIs in
``compat.py`` alone, and a library that knows nothing of the plugin."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_rngguard"
MODULES = sorted(PACKAGE.rglob("*.py"))

#: The plugin half: what the library half must not import.
PLUGIN_SIDE = {"plugin", "session", "markers", "policy", "scopes", "watch", "lifecycle"}
PLUGIN_SIDE |= {"gate", "xdist"}
#: Private names of pytest, Hypothesis and importlib.metadata that the plugin relies on.
PRIVATE = re.compile(
    r"\b(?:from|import) _pytest\b|[\"']_pytest\.|_setupstate|_hypothesis_internal|"
    r"_normalized_name|get_direct_param_fixture_func|runtestprotocol|_initrequest"
)


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").as_posix()


def _runtime_imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports other than for type annotations."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            skipped.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level and id(node) not in skipped:
            package = _name(path).split("/")[: -node.level]
            target = [*package, *(node.module.split(".") if node.module else [])]
            if not node.module:
                found.update("/".join([*target, alias.name]) for alias in node.names)
            else:
                found.add("/".join(target))
    return found


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_only_compat_uses_private_apis(path: Path) -> None:
    if _name(path) == "compat":
        return
    text = path.read_text(encoding="utf-8")
    assert PRIVATE.findall(text) == []


@pytest.mark.parametrize("path", [p for p in MODULES if _name(p) not in PLUGIN_SIDE], ids=_name)
def test_the_library_imports_nothing_of_the_plugin(path: Path) -> None:
    assert _runtime_imports(path) & PLUGIN_SIDE == set()


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_hooks_are_defined_by_the_plugin_and_the_xdist_controller_only(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hooks = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("pytest_")
    }
    if _name(path) not in ("plugin", "xdist"):
        assert hooks == set()


def test_the_plugin_loads_no_guard_module_when_imported() -> None:
    # Everything but the options loads in pytest_configure: importing the plugin stays cheap.
    tree = ast.parse((PACKAGE / "plugin.py").read_text(encoding="utf-8"))
    top = {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.level}
    assert top == {"settings"}
