"""Packaging and CI: every subpackage is listed in pyproject.toml; the layers import one way; .ci/run runs the README's tests."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_with_init_is_a_listed_package():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = setuptools["package-dir"]
    listed = set(setuptools["packages"])
    assert {"core", "plugins", "search", "simulate", "cli"} <= set(package_dir.values())
    missing = []
    for package, folder in package_dir.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder)
            if "__pycache__" in relative.parts:
                continue
            name = ".".join([package, *relative.parts])
            if name not in listed:
                missing.append(f"{name} ({init.parent.relative_to(ROOT)})")
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {', '.join(missing)}"


def test_listed_packages_exist():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = sorted(setuptools["package-dir"].items(), key=lambda kv: -len(kv[0]))
    for package in setuptools["packages"]:
        prefix, folder = next((p, f) for p, f in roots if package == p or package.startswith(p + "."))
        path = ROOT / folder / Path(*package[len(prefix) :].strip(".").split(".")) if package != prefix else ROOT / folder
        assert (path / "__init__.py").is_file(), f"{package} is listed but {path} has no __init__.py"


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of what a file imports, relative imports resolved through package-dir, and
    the constant names it passes to ``importlib.import_module`` or ``__import__``. ``source`` is
    the file's text (default: read from ``path``, which need not exist when it is given)."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    relative = path.relative_to(ROOT)
    prefix = next(name for name, folder in package_dir.items() if relative.parts[0] == folder)
    package = [*prefix.split("."), *relative.parent.parts[1:]]
    names = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] if node.level else [])
            module = ".".join(filter(None, [base, node.module or ""]))
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _called_name(node.func) in ("import_module", "__import__"):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def _called_name(func: ast.expr) -> str | None:
    """``f`` of a call ``f(...)`` or ``module.f(...)``."""
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


# What each layer may import of pesmith (ARCHITECTURE: cli -> search -> simulate -> core,
# plugins -> core); a layer is a folder mapped in pyproject's package-dir. cli is the composition
# root: the one layer above search, so the only one (besides search itself) that may import it.
# No layer but plugins imports a plugin: everything concrete is reached through the registry.
# plugins -> simulate is allowed on purpose: the built-in references relax with pesmith.simulate
# (imported lazily, inside the method). simulate is a library layer that imports only core, so this
# opens no path from plugins to search or cli. analysis takes trajectories and returns arrays: of
# pesmith it needs only pesmith.errors (ALLOWED_MODULES), and never torch (test below).
ALLOWED_IMPORTS = {
    "cli": {"cli", "search", "simulate", "analysis", "core"},
    "search": {"search", "simulate", "core"},
    "simulate": {"simulate", "core"},
    "plugins": {"plugins", "simulate", "core"},
    "core": {"core"},
    "analysis": {"analysis"},
}
# Single modules a layer may import from a layer it may not: analysis raises pesmith's errors.
ALLOWED_MODULES = {"analysis": {"pesmith.errors"}}
# ``python -m pesmith`` runs core/__main__.py, which can only start the command line by importing it.
ALLOWED_EXTRA = {Path("core") / "__main__.py": {"cli"}}


def layer_of(module: str) -> str | None:
    """The folder (layer) a pesmith module lives in, by the longest package-dir prefix; ``None``
    for a module outside pesmith."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    matches = [package for package in package_dir if module == package or module.startswith(package + ".")]
    return package_dir[max(matches, key=len)] if matches else None


def source_files(layer: str) -> list[Path]:
    return sorted(p for p in (ROOT / layer).rglob("*.py") if "__pycache__" not in p.parts)


def test_every_layer_is_in_the_table():
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert set(package_dir.values()) == set(ALLOWED_IMPORTS)


def test_only_the_cli_imports_search_and_search_no_plugin():
    """The table itself: search is imported by the cli package alone (no part of core, package
    pesmith, does), and search reaches plugins only through the registry."""
    assert {layer for layer, allowed in ALLOWED_IMPORTS.items() if "search" in allowed} == {"cli", "search"}
    assert "plugins" not in ALLOWED_IMPORTS["search"]
    assert not any("cli" in allowed for layer, allowed in ALLOWED_IMPORTS.items() if layer != "cli")


def layer_offences(path: Path, source: str | None = None) -> list[str]:
    """``"<file> imports <module>"`` for each pesmith module the file at ``path`` (``source``: its
    text, as in :func:`imported_modules`) imports against ALLOWED_IMPORTS."""
    relative = path.relative_to(ROOT)
    layer = relative.parts[0]
    permitted = ALLOWED_IMPORTS[layer] | ALLOWED_EXTRA.get(relative, set())
    single = ALLOWED_MODULES.get(layer, set())
    return [
        f"{relative} imports {module}"
        for module in sorted(imported_modules(path, source))
        if layer_of(module) not in (None, *permitted) and not any(module == m or module.startswith(m + ".") for m in single)
    ]


def test_layers_depend_one_way():
    offenders = [offence for layer in ALLOWED_IMPORTS for path in source_files(layer) for offence in layer_offences(path)]
    assert not offenders, "; ".join(offenders)


@pytest.mark.parametrize(
    "where,source",
    [
        ("core/probe.py", "from pesmith.search.loop import Search"),
        ("core/probe.py", "from .search import loop"),
        ("core/probe.py", "def build():\n    from pesmith.plugins.models.nn import BehlerParrinello"),
        ("core/probe.py", "import importlib\napp = importlib.import_module('pesmith.cli.app')"),
        ("core/probe.py", "from pesmith import simulate"),
        ("simulate/probe.py", "from pesmith.search import labels"),
        ("simulate/probe.py", "from ..plugins.references import morse"),
        ("search/phases/probe.py", "from ...plugins.references import morse"),
        ("search/probe.py", "import pesmith.cli"),
        ("plugins/models/probe.py", "from pesmith.search.hull import HullEntry"),
        ("analysis/probe.py", "from pesmith.data import Dataset"),
        ("analysis/probe.py", "import pesmith"),
    ],
)
def test_the_layer_check_finds_a_forbidden_import(where, source):
    """The checker on a module that is not in the tree: each import breaks the picture."""
    (offence,) = layer_offences(ROOT / where, source)
    assert offence.startswith(f"{where} imports pesmith")


@pytest.mark.parametrize(
    "where,source",
    [
        ("cli/probe.py", "from pesmith.search.loop import Search\nfrom pesmith.analysis import rdf"),
        ("search/phases/probe.py", "from ..labels import reference_relax\nfrom pesmith.simulate.relax import relax"),
        ("plugins/references/probe.py", "from pesmith.simulate.relax import optimize\nfrom pesmith.reference import Reference"),
        ("analysis/probe.py", "from pesmith.errors import DataError\nfrom .diffusion import diffusion_coefficients"),
        ("core/__main__.py", "from pesmith.cli import main"),
        ("core/probe.py", "import numpy\nimport importlib\nmodule = importlib.import_module(name)"),
    ],
)
def test_the_layer_check_lets_the_picture_through(where, source):
    assert layer_offences(ROOT / where, source) == []


def test_analysis_imports_no_torch():
    offenders = [f"{p.relative_to(ROOT)} imports {m}" for p in source_files("analysis") for m in sorted(imported_modules(p)) if m == "torch" or m.startswith("torch.")]
    assert not offenders, "; ".join(offenders)


def test_no_layer_duck_types_the_reference_calculator():
    """``Reference.make_calculator`` is part of the contract (``Reference.has_calculator()`` says
    whether a reference has one): nothing asks for it with ``getattr`` / ``hasattr``."""
    offenders = []
    for layer in ALLOWED_IMPORTS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
                    if any(isinstance(a, ast.Constant) and a.value == "make_calculator" for a in node.args):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}")
    assert not offenders, "use Reference.has_calculator(): " + "; ".join(offenders)


def module_name(path: Path) -> str:
    """The dotted name a source file is imported as, through package-dir."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    relative = path.relative_to(ROOT)
    prefix = next(name for name, folder in package_dir.items() if relative.parts[0] == folder)
    parts = [*relative.parts[1:-1], *([] if path.name == "__init__.py" else [path.stem])]
    return ".".join([prefix, *parts])


def test_no_two_core_modules_import_each_other():
    """An import circle (A imports B, B imports A, at module level or inside a function) means
    what both need belongs in one of them or in a third module. Packages' ``__init__`` files,
    which re-export, are not counted as imported."""
    paths = sorted(p for p in (ROOT / "core").rglob("*.py") if "__pycache__" not in p.parts)
    names = {path: module_name(path) for path in paths}
    targets = {names[p] for p in paths if p.name != "__init__.py"}
    imports = {
        names[path]: {t for t in targets if t != names[path] and any(m == t or m.startswith(t + ".") for m in imported_modules(path))}
        for path in paths
    }
    circles = sorted({tuple(sorted((a, b))) for a, found in imports.items() for b in found if a in imports.get(b, set())})
    assert not circles, "modules importing each other: " + "; ".join(f"{a} <-> {b}" for a, b in circles)


def readme_bash_blocks() -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)


def test_ci_runs_exactly_the_readme_test_command():
    blocks = readme_bash_blocks()
    assert len(blocks) >= 2, "README.md should have the train command and the test command as bash blocks"
    command = blocks[1].strip()
    assert "\n" not in command and "pytest" in command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in ci if line.strip() and not line.lstrip().startswith("#")]
    assert command in commands, f".ci/run does not contain the README test command:\n{command}"
    assert commands[-1] == command, "the README test command should be the last thing .ci/run does"


def test_ci_also_runs_the_slow_tests():
    """The README command deselects the slow tests (pyproject's addopts); .ci/run runs them before it."""
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert any(line.endswith("/python -m pytest -m slow") for line in ci[:-1]), "\n".join(ci)


BROADCASTING_ASE_CALLS = {"ase.db.connect", "ase.io.read", "ase.io.iread", "ase.io.write"}


def ase_calls(path: Path) -> list[str]:
    """``ase.db.connect``/``ase.io.read``/``iread``/``write`` that a file calls or imports by name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Name):
            name = f"{node.value.value.id}.{node.value.attr}.{node.attr}"
            if name in BROADCASTING_ASE_CALLS:
                found.append(f"{name} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom) and node.module in ("ase.db", "ase.io"):
            found += [f"from {node.module} import {a.name} (line {node.lineno})" for a in node.names if f"{node.module}.{a.name}" in BROADCASTING_ASE_CALLS]
    return found


def test_ase_files_are_opened_only_through_the_mpi_safe_wrappers():
    """Under MPI, ase.db and ase.io broadcast from rank 0 unless told not to (pesmith.ase_files)."""
    offenders = []
    for layer in ALLOWED_IMPORTS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            if path != ROOT / "core" / "ase_files.py":
                offenders += [f"{path.relative_to(ROOT)}: {call}" for call in ase_calls(path)]
    assert not offenders, "use pesmith.ase_files.connect/read/write instead: " + "; ".join(offenders)


# ASE's MD and velocity initialisers broadcast random numbers over MPI's world unless given a communicator
COMM_BROADCASTING_CALLS = {"Langevin", "thermalize_momenta", "MaxwellBoltzmannDistribution"}


def test_md_in_workers_does_not_broadcast_over_mpi():
    """Called in a worker rank, a broadcast over COMM_WORLD waits for ranks that never come."""
    offenders = []
    for layer in ALLOWED_IMPORTS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in COMM_BROADCASTING_CALLS:
                    if "comm" not in {k.arg for k in node.keywords}:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}")
    assert not offenders, "pass comm=DummyMPI(): " + "; ".join(offenders)


def test_ci_installs_mpi_and_requires_the_mpi_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/pip install mpi4py mpich" in ci and "PESMITH_REQUIRE_MPI=1" in ci
