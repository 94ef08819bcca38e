"""The engine's layout: packages import one way, modules import no cycle, ``core`` stays torch-free.

Every ``.py`` file under ``CTSliceSynthesisLib`` is parsed with :mod:`ast`; all its imports count, those at module
level and those inside functions (and under ``if TYPE_CHECKING``), relative and absolute. The order is

    core → nets → io → training → inference → evaluation → cli

A module may import from its own package and from packages to its left; ``slicer_support`` only from ``core``.
Any module may import the top-level package itself (``from .. import __version__``). The completeness of the
Slicer CMake lists is checked in ``test_slicer_packaging.py``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "CTSliceSynthesis" / "CTSliceSynthesisLib"
ORDER = ("core", "nets", "io", "training", "inference", "evaluation", "cli")
ALLOWED: Dict[str, Set[str]] = {package: set(ORDER[: index + 1]) for index, package in enumerate(ORDER)}
ALLOWED["slicer_support"] = {"core", "slicer_support"}
# What core may import besides the standard library and itself.
CORE_THIRD_PARTY = {"numpy"}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen from the module that contains it."""

    source: str  # dotted module name of the importer, e.g. CTSliceSynthesisLib.nets.views
    where: str  # file and line, e.g. CTSliceSynthesisLib/nets/views.py:15
    target: str  # dotted name imported: a library module, the library's root, or a third-party module
    text: str  # the statement, for messages


def module_name(path: Path, root: Path) -> str:
    """``root/nets/views.py`` → ``<root name>.nets.views``; a package's ``__init__.py`` names the package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules(root: Path) -> Dict[str, Path]:
    """Dotted name → file of every module of the library under ``root``."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py")) if "__pycache__" not in path.parts}


def imports_of(path: Path, root: Path, modules: Dict[str, Path]) -> List[Import]:
    """Every import in ``path`` (module level and inside functions), resolved to dotted targets.

    ``from package import name`` targets ``package.name`` when that is a module of the library, else ``package``.
    """
    source = module_name(path, root)
    where = str(path.relative_to(root.parent).as_posix())
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: List[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(source, f"{where}:{node.lineno}", alias.name, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = source.split(".") if is_package else source.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                target = candidate if candidate in modules else module
                found.append(Import(source, f"{where}:{node.lineno}", target, ast.unparse(node)))
    return found


def package_of(module: str, root_name: str) -> Optional[str]:
    """The library package of a dotted name (``core``, ``nets`` …), ``""`` for the root itself, ``None`` outside."""
    parts = module.split(".")
    if parts[0] != root_name:
        return None
    return parts[1] if len(parts) > 1 else ""


def direction_violations(root: Path) -> List[str]:
    """One message per import that goes to the right in :data:`ORDER` (or out of ``slicer_support``'s bounds)."""
    modules = library_modules(root)
    problems = []
    for path in modules.values():
        for found in imports_of(path, root, modules):
            own, target = package_of(found.source, root.name), package_of(found.target, root.name)
            if target is None or target == "" or own == "":
                continue
            allowed = ALLOWED.get(own)
            if allowed is None:
                problems.append(f"{found.where}: package {own!r} is not in the layout {ORDER}")
            elif target not in allowed:
                rule = "may import only from core" if own == "slicer_support" else (
                    f"may import only from {', '.join(sorted(allowed, key=_rank))}")
                problems.append(f"{found.where}: `{found.text}` imports {target} into {own}, which {rule}")
    return list(dict.fromkeys(problems))  # one message per statement


def _rank(package: str) -> int:
    return ORDER.index(package) if package in ORDER else len(ORDER)


def module_graph(root: Path) -> Dict[str, Set[str]]:
    """Module → library modules it imports, including the ``__init__`` of another package it imports from
    (Python runs it first); the importer's own enclosing packages are already being imported, so they are left out."""
    modules = library_modules(root)
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        enclosing = {".".join(name.split(".")[:k]) for k in range(1, len(name.split(".")) + 1)}
        for found in imports_of(path, root, modules):
            if found.target not in modules:
                continue
            parts = found.target.split(".")
            for k in range(2, len(parts) + 1):  # the root package itself imports nothing
                target = ".".join(parts[:k])
                if target in modules and target != name and target not in enclosing - {name}:
                    graph[name].add(target)
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """A list ``[a, b, …, a]`` of modules that import each other in a circle, or ``None``."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def core_violations(root: Path) -> List[str]:
    """Imports of ``core`` modules that are neither the standard library, numpy, nor ``core`` itself."""
    modules = library_modules(root)
    problems = []
    for name, path in modules.items():
        if package_of(name, root.name) != "core":
            continue
        for found in imports_of(path, root, modules):
            top = found.target.split(".")[0]
            package = package_of(found.target, root.name)
            if top == "torch":
                problems.append(f"{found.where}: `{found.text}`: core must not import torch")
            elif package is not None and package != "core":
                problems.append(f"{found.where}: `{found.text}`: core imports only from core")
            elif package is None and top not in sys.stdlib_module_names and top not in CORE_THIRD_PARTY | {"__future__"}:
                problems.append(f"{found.where}: `{found.text}`: core imports only numpy and the standard library")
        if path.name == "__init__.py" and imports_of(path, root, modules):
            problems.append(f"{path.relative_to(root.parent)}: core/__init__.py must import nothing")
    return problems


# --------------------------------------------------------------------------------------------------------------
# The library


def test_every_package_is_in_the_layout() -> None:
    packages = {p.name for p in LIBRARY.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ORDER) | {"slicer_support"}
    assert sorted(p.name for p in LIBRARY.glob("*.py")) == ["__init__.py"], "modules belong in a package"


def test_packages_import_only_to_their_left() -> None:
    problems = direction_violations(LIBRARY)
    assert not problems, "imports against the layout (core → nets → io → training → inference → evaluation → cli):\n" \
        + "\n".join(problems)


def test_no_import_cycle_between_modules() -> None:
    cycle = find_cycle(module_graph(LIBRARY))
    assert cycle is None, "modules import each other in a circle: " + " → ".join(cycle or [])


def test_core_is_torch_free_and_self_contained() -> None:
    problems = core_violations(LIBRARY)
    assert not problems, "\n".join(problems)


def test_core_and_slicer_support_import_without_torch() -> None:
    """In a fresh interpreter, importing every core and slicer_support module loads no torch."""
    import subprocess

    names = [name for name in library_modules(LIBRARY) if package_of(name, LIBRARY.name) in ("core", "slicer_support")]
    code = "import sys\n" + "".join(f"import {name}\n" for name in names) + "print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=str(LIBRARY.parent), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------------------
# The checks themselves catch what they are for


def write_tree(root: Path, files: Dict[str, str]) -> Path:
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for folder in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return root


@pytest.fixture
def fake_library(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "CTSliceSynthesisLib", {
        "core/config.py": "import numpy as np\nimport os\n",
        "nets/blocks.py": "from ..core import config\n",
        "inference/synthesis.py": "from ..nets.blocks import x\nfrom .. import __version__\n",
        "training/trainer.py": "def f():\n    from ..inference.synthesis import synthesize\n",
        "slicer_support/naming.py": "from ..core.config import A\nfrom ..io import nifti\n",
        "io/nifti.py": "import CTSliceSynthesisLib.core.config\n",
    })


def test_direction_check_finds_imports_to_the_right_even_inside_functions(fake_library: Path) -> None:
    problems = direction_violations(fake_library)
    assert len(problems) == 2, problems
    assert "training/trainer.py:2" in problems[0] or "training/trainer.py:2" in problems[1]
    assert any("slicer_support/naming.py:2" in p and "only from core" in p for p in problems)


def test_cycle_check_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "CTSliceSynthesisLib", {
        "inference/synthesis.py": "def f():\n    from .calibration import calibrate\n",
        "inference/calibration.py": "from .synthesis import f\n",
    })
    cycle = find_cycle(module_graph(root))
    assert cycle is not None and set(cycle) == {"CTSliceSynthesisLib.inference.synthesis",
                                                "CTSliceSynthesisLib.inference.calibration"}


def test_cycle_check_counts_another_package_init(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "CTSliceSynthesisLib", {
        "nets/__init__.py": "from .views import v\n",
        "nets/views.py": "from ..io.checkpoint import c\n",
        "io/checkpoint.py": "from ..nets import SynthesisNetworks\n",
    })
    assert find_cycle(module_graph(root)) is not None


def test_core_check_finds_torch_and_other_packages(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "CTSliceSynthesisLib", {
        "core/intensity.py": "import numpy as np\ndef f():\n    import torch\n",
        "core/geometry.py": "from ..io import nifti\nimport nibabel\n",
        "core/__init__.py": "from .geometry import g\n",
    })
    problems = "\n".join(core_violations(root))
    assert "must not import torch" in problems and "core imports only from core" in problems
    assert "nibabel" in problems and "must import nothing" in problems
