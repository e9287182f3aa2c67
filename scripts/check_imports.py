"""Check the direction of imports between Mugle's packages, and that no import cycle exists.

Every ``.py`` file of the packages is parsed (nothing is imported or run), and every ``import`` statement
counts, including those inside functions (a lazy import is still a dependency). The rules:

- ``mugle_core`` imports only the standard library, numpy and itself;
- ``mugle_nets`` imports neither ``app`` nor ``training`` nor ``evaluation`` nor ``mugle_cli``;
- ``training`` imports neither ``app`` nor ``evaluation`` nor ``mugle_cli``;
- ``app`` imports neither ``training`` nor ``evaluation`` nor ``mugle_cli``, and no torch or gensim at
  module level (the slim serving image has neither);
- ``evaluation`` does not import ``mugle_cli``;
- no two modules of the project import each other, directly or through others.

Run ``python scripts/check_imports.py`` from the repository root: it prints each problem with its file and
line and exits 1 when there is one. ``tests/test_imports.py`` runs the same check.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES: tuple[str, ...] = ("mugle_core", "mugle_nets", "app", "training", "evaluation", "mugle_cli")
# Project packages each package must never import (mugle_core is checked against an allow-list instead).
FORBIDDEN: dict[str, frozenset[str]] = {
    "mugle_nets": frozenset({"app", "training", "evaluation", "mugle_cli"}),
    "training": frozenset({"app", "evaluation", "mugle_cli"}),
    "app": frozenset({"training", "evaluation", "mugle_cli"}),
    "evaluation": frozenset({"mugle_cli"}),
}
CORE_ALLOWED: frozenset[str] = frozenset({"numpy", "mugle_core"}) | frozenset(sys.stdlib_module_names)
# Heavy training libraries the service must not load when it starts.
NOT_AT_APP_IMPORT: frozenset[str] = frozenset({"torch", "gensim"})


@dataclass(frozen=True)
class Import:
    """One imported module name, where it is imported, and whether at module level."""

    module: str
    line: int
    top_level: bool


def module_name(root: Path, path: Path) -> str:
    """Dotted module name of ``path`` under ``root`` (a package's ``__init__.py`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``: dotted name -> file."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            modules[module_name(root, path)] = path
    return modules


def _top_level_nodes(tree: ast.Module) -> set[int]:
    """ids of import nodes that run at import time (module body, including inside if/try blocks)."""
    found: set[int] = set()
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.add(id(node))
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The modules ``path`` imports, resolved: ``from pkg import mod`` names ``pkg.mod`` when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top = _top_level_nodes(tree)
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".") if is_package else name.split(".")[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append(Import(sub if sub in modules else base, node.lineno, id(node) in top))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def check(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """All problems found under ``root``, as ``file:line: message`` lines; empty when the layout holds."""
    modules = find_modules(root, packages)
    problems: list[str] = []
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name.split(".")[0]
        where = path.relative_to(root)
        for imp in imports_of(name, path, modules):
            top = imp.module.split(".")[0]
            if package == "mugle_core" and top not in CORE_ALLOWED:
                problems.append(f"{where}:{imp.line}: mugle_core imports {imp.module} (numpy and stdlib only)")
            if top in FORBIDDEN.get(package, ()):
                problems.append(f"{where}:{imp.line}: {package} imports {imp.module}")
            if package == "app" and top in NOT_AT_APP_IMPORT and imp.top_level:
                problems.append(f"{where}:{imp.line}: app imports {imp.module} at module level")
            if imp.module in modules and imp.module != name:
                graph[name].add(imp.module)
    for component in _cycles(graph):
        problems.append(f"import cycle: {' <-> '.join(component)}")
    return problems


def main() -> int:
    problems = check()
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} import problem(s)", file=sys.stderr)
        return 1
    print(f"imports ok: {len(find_modules(REPO))} modules in {', '.join(PACKAGES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
