"""The package's layers import downwards only, and no module imports itself back through others: the import graph
is a tree from ``cli`` down to ``core`` (docs/architecture.md). Read from the source (every import statement, at
module level or in a function, except those only for type checkers), not from what happens to be loaded."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ecommerce_lake"

# Lower layers first; a module may import its own layer and the layers below it
LAYERS = [
    ("core", ["ecommerce_lake.core", "ecommerce_lake.data"]),
    ("schemas", ["ecommerce_lake.schemas"]),
    ("logic", ["ecommerce_lake.logic"]),
    ("platform", ["ecommerce_lake.platform", "ecommerce_lake.settings"]),
    ("defs", ["ecommerce_lake.defs"]),
    ("code location", ["ecommerce_lake.definitions", "ecommerce_lake.deployment"]),
    ("tools", ["ecommerce_lake.runner", "ecommerce_lake.generator", "ecommerce_lake.bench", "ecommerce_lake.privacy"]),
    ("cli", ["ecommerce_lake.cli"]),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer of test_architecture.LAYERS")


def _imports(path: Path) -> set[str]:
    """The project modules ``path`` imports at run time (``if TYPE_CHECKING:`` blocks left out)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    found = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ecommerce_lake")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("ecommerce_lake"):
                modules = {f"{base}.{a.name}" for a in node.names}
                found |= {m for m in modules if (PACKAGE.parent / (m.replace(".", "/") + ".py")).exists()
                          or (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists()} or {base}
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_import_goes_to_the_same_layer_or_below():
    upward = []
    for module, imports in _graph().items():
        for target in imports:
            if _layer(target) > _layer(module):
                upward.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {target} "
                              f"({LAYERS[_layer(target)][0]})")
    assert not upward, "\n".join(sorted(upward))


def test_logic_imports_neither_dagster_nor_the_platform():
    """Business logic is plain functions of DataFrames and dataclasses: testable without Dagster."""
    offenders = []
    for path in sorted((PACKAGE / "logic").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{_module_name(path)} imports {n}" for n in names
                          if n == "dagster" or n.startswith(("dagster.", "dagster_", "ecommerce_lake.platform",
                                                              "ecommerce_lake.defs"))]
    assert not offenders, "\n".join(offenders)


def test_no_import_cycles():
    graph = _graph()

    def packages_of(module: str) -> set[str]:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = module.split(".")
        return {".".join(parts[:i]) for i in range(2, len(parts))}

    edges = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if target in packages_of(module):  # a module importing its own package's __init__ is no cycle
                continue
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
