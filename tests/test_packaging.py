"""The distributions: the sdist is the repository, whose test suite collects from it; the wheel
is the package alone; the metadata says where the project lives, with links that work on an
index page.

Both are built the way a release would be, from the tracked files of this checkout (or, in an
unpacked sdist, from its files), with the installed setuptools and no build isolation.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAME = "pytest_rngguard"
SOURCE_URL = "https://github.com/pytest-rngguard/pytest-rngguard"
#: Tracked files that are no part of the project's sources.
NOT_SHIPPED = {".gitignore"}
#: What every sdist of this project must hold for its test suite to run.
SUITE = (
    "tests/conftest.py",
    "tests/gpu/conftest.py",
    "tests/rng_observer.py",
    "docs/conf.py",
    "docs/index.md",
    "examples/README.md",
    "examples/vllm_like/pytest.ini",
    "CHANGELOG.md",
    "README.md",
    "LICENSE",
    "tox.ini",
    ".ci/constraints.txt",
)
#: What the build adds to the sources.
GENERATED = re.compile(r"^(PKG-INFO|setup\.cfg|pytest_rngguard\.egg-info/.*)$")
#: Build outputs and caches a working tree may hold, never sources.
NOT_SOURCES: tuple[str, ...] = (
    *(".git", ".venv", ".ci-venv", ".tox", "*.egg-info", "__pycache__", "dist", "build"),
    *(".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache", "_out", "_build"),
)


def setuptools_version() -> tuple[int, ...]:
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


pytestmark = pytest.mark.skipif(
    setuptools_version() < (77,),
    reason="building needs setuptools 77 or newer (pip install -e '.[test]')",
)


def tracked_files() -> set[str] | None:
    """The files git tracks here, or None outside a git checkout (in an unpacked sdist)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return None
    done = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return {name for name in done.stdout.split("\0") if name and (ROOT / name).is_file()}


def copy_sources(destination: Path) -> None:
    """The project as a fresh clone has it: its tracked files, as they are in the tree."""
    tracked = tracked_files()
    if tracked is None:
        shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(*NOT_SOURCES))
        return
    for name in tracked:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def build(kind: str, source: Path, output: Path) -> Path:
    """``build_sdist`` or ``build_wheel`` of the setuptools backend, in ``source``."""
    script = (
        "import sys\nfrom setuptools import build_meta\n"
        f"print(build_meta.build_{kind}(sys.argv[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(output)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return output / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    copy_sources(source)
    return build("sdist", source, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def unpacked(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("unpacked")
    # The "data" filter where this Python has it (3.10.12 and later): members stay inside.
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(folder, filter="data")
        else:  # pragma: no cover - older 3.10 patch releases
            archive.extractall(folder)
    (top,) = folder.iterdir()
    return top


def sdist_files(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        names = [member.name for member in archive.getmembers() if member.isfile()]
    tops = {name.split("/", 1)[0] for name in names}
    assert len(tops) == 1, tops
    return {name.split("/", 1)[1] for name in names}


def metadata(unpacked: Path) -> Message:
    return email.parser.Parser().parsestr((unpacked / "PKG-INFO").read_text(encoding="utf-8"))


def test_the_sdist_ships_the_whole_test_suite(sdist: Path) -> None:
    shipped = sdist_files(sdist)
    assert set(SUITE) <= shipped
    tracked = tracked_files()
    if tracked is not None:  # in a checkout: every tracked file, nothing but the build's own
        assert {name for name in shipped if not GENERATED.match(name)} == tracked - NOT_SHIPPED


def test_the_sdist_test_suite_collects_without_errors(unpacked: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=unpacked,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.OK, output
    last = output.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ tests collected in [\d.]+s", last), last
    # The package those tests import there is the sdist's, not this checkout's.
    done = subprocess.run(
        [sys.executable, "-c", f"import {NAME}; print({NAME}.__file__)"],
        cwd=unpacked,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()) == unpacked / NAME / "__init__.py"


def test_the_wheel_built_from_the_sdist_is_the_package_alone(
    unpacked: Path, tmp_path: Path
) -> None:
    wheel = build("wheel", unpacked, tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"{NAME}-0.1.0.dist-info/entry_points.txt").decode()
    package = {
        path.relative_to(unpacked).as_posix()
        for path in (unpacked / NAME).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {name for name in names if name.startswith(f"{NAME}/")} == package
    assert f"{NAME}/py.typed" in package
    assert {name.split("/", 1)[0] for name in names} == {NAME, f"{NAME}-0.1.0.dist-info"}
    assert "[pytest11]\nrngguard = pytest_rngguard.plugin" in entry_points


def test_the_metadata_says_where_the_project_lives(unpacked: Path) -> None:
    info = metadata(unpacked)
    urls = dict(url.split(", ", 1) for url in info.get_all("Project-URL", []))
    assert urls["Source"] == SOURCE_URL
    assert urls["Issues"] == f"{SOURCE_URL}/issues"
    assert urls["Documentation"].startswith("https://")
    assert info["License-Expression"] == "MIT"
    assert info["Requires-Python"] == ">=3.10"


def test_the_long_description_links_only_absolute_addresses(unpacked: Path) -> None:
    """An index page shows README.md without the repository: a relative link goes nowhere."""
    description = metadata(unpacked).get_payload()
    assert isinstance(description, str)
    assert description.startswith("# pytest-rngguard")
    targets = re.findall(r"\]\(([^)\s]+)\)", description)
    targets += re.findall(r"^\[[^\]]+\]:\s*(\S+)", description, re.MULTILINE)
    assert targets
    relative = [target for target in targets if not target.startswith(("https://", "http://"))]
    assert relative == []


def test_the_build_backend_floor_understands_the_license_expression() -> None:
    """``license = "MIT"`` (PEP 639) needs setuptools 77: an older floor fails to build."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license = "MIT"$', text, re.MULTILINE)
    floor = re.search(r'^requires = \["setuptools>=(\d+)"\]', text, re.MULTILINE)
    assert floor
    assert int(floor.group(1)) >= 77
