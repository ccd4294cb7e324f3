"""The tree reads top-down: imports flow producer -> worker -> tasks -> weights.

Every import statement of the product packages is read from source (module level,
inside functions and under TYPE_CHECKING alike), so a lazy import cannot hide an
upward dependency. Leaf modules (errors, settings, CPU sizing, Redis keys, record types,
the wire contract) may be imported from anywhere, and import no other bulktag module
except leaves.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("producer", "worker", "tasks", "weights")  # top to bottom
LEAVES = {
    "tasks.env_values",
    "tasks.errors",
    "tasks.settings",
    "tasks.cpu",
    "tasks.keys",
    "tasks.records",
    "tasks.contract",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def bulktag_imports(path: Path) -> set[str]:
    """Every bulktag module ``path`` imports, however deep in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from tasks import process` imports the module tasks.process
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                found.add(name)
    return found


def resolve(name: str) -> str:
    """The module ``name`` refers to (``tasks.errors.ConfigError`` -> ``tasks.errors``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        path = REPO.joinpath(*parts)
        if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
            return candidate
        parts.pop()
    return name


def product_modules() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            graph[module_name(path)] = {resolve(n) for n in bulktag_imports(path)}
    return graph


def layer(module: str) -> int:
    return PACKAGES.index(module.split(".")[0])


def test_imports_flow_one_way() -> None:
    upward = [
        f"{module} imports {target}"
        for module, targets in product_modules().items()
        for target in sorted(targets)
        if target not in LEAVES and layer(target) < layer(module)
    ]
    assert upward == []


def test_leaf_modules_import_only_leaves() -> None:
    graph = product_modules()
    assert set(graph) >= LEAVES, "a leaf module was renamed: update LEAVES"
    tangled = [
        f"{leaf} imports {target}"
        for leaf in sorted(LEAVES)
        for target in sorted(graph[leaf])
        if target not in LEAVES and target != leaf
    ]
    assert tangled == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    # The scanner must see imports inside functions, not just at module level.
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from worker.app import create_app\n    import producer.cli\n")
    assert bulktag_imports(source) >= {"worker.app.create_app", "producer.cli"}
    assert resolve("worker.app.create_app") == "worker.app"


@pytest.mark.parametrize("module", ["producer", "producer.submit", "producer.job", "worker.app"])
def test_importing_the_python_api_ignores_a_broken_environment(module: str) -> None:
    # Given an environment another program set badly, importing the API must still work:
    # settings and the Celery app are built only when a caller asks for them.
    env = {"BULKTAG_CHUNK_SIZE": "x", "BULKTAG_PRECISION": "nope", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}; print('imported')"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"
