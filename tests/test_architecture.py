"""The import graph keeps the floors of docs/ARCHITECTURE.md: core, then AWS adapters, then local tools.

Every import counts, also those inside functions (a lazy import is still a dependency) and those under
``TYPE_CHECKING`` (mypy follows them). A module may import its own floor and the floors below it, never
one above; no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "layers" / "vidsnap" / "vidsnap"
FLOORS = {"core": 0, "aws": 1, "local": 2}
#: Third-party packages the pure core must not touch: AWS SDKs, Lambda tooling, web frameworks.
NOT_IN_CORE = ("boto3", "botocore", "aws_lambda_powertools", "mangum", "starlette", "uvicorn", "moto")
#: Imports that would drag in a heavy or unrelated part although the importer needs a small piece.
FORBIDDEN = {
    "vidsnap.aws.notify": ("vidsnap.core.engine", "vidsnap.core.decode", "av", "numpy", "PIL"),
    "vidsnap.aws.settings": ("vidsnap.core.lang", "vidsnap.core.engine", "vidsnap.core.decode"),
    "vidsnap.aws.httpapp": ("vidsnap.aws.worker",),
    "vidsnap.aws.taskstore": ("vidsnap.aws.s3io",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports are resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # ``from vidsnap.core import lang`` imports the module vidsnap.core.lang
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 else None


def _all_imports() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_the_package_has_three_floors() -> None:
    top = {p.name for p in PACKAGE.iterdir() if not p.name.startswith("__pycache__")}
    assert {"core", "aws", "local"} <= top
    assert not {p for p in top if p.endswith(".py")} - {"__init__.py", "__main__.py"}


def test_no_import_runs_upwards() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if (low := _floor(module)) is not None and (high := _floor(target)) is not None and high > low
    ]
    assert not upward, upward


def test_the_core_never_imports_aws_or_web_code() -> None:
    bad = [
        f"{module} -> {target}"
        for module, targets in _all_imports().items()
        if module.startswith("vidsnap.core")
        for target in targets
        if target.split(".")[0] in NOT_IN_CORE
    ]
    assert not bad, bad


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_no_import_drags_in_more_than_it_needs(module: str) -> None:
    imported = _all_imports()[module]
    bad = sorted(t for t in imported for f in FORBIDDEN[module] if (t == f or t.startswith(f + ".")))
    assert not bad, bad


def test_no_import_cycles() -> None:
    graph = _graph()
    # A package's __init__ importing its own submodules is how it re-exports them, not a cycle.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, [" -> ".join(c) for c in cycles]
