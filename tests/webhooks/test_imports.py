"""The webhooks package has no import cycle (the handler registry breaks the old one)."""

from __future__ import annotations

import ast
from pathlib import Path

import django_pg_resilience.webhooks as package

PACKAGE = "django_pg_resilience.webhooks"


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports, at module level or in a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                found |= {f"{PACKAGE}.{alias.name}" for alias in node.names}
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(PACKAGE + ".")}
    return found


def test_no_webhooks_module_imports_one_that_imports_it_back() -> None:
    folder = Path(package.__file__).parent
    graph = {
        f"{PACKAGE}.{path.stem}": _imports(path)
        for path in folder.glob("*.py")
        if path.stem != "__init__"
    }
    graph = {name: {dep for dep in deps if dep in graph} for name, deps in graph.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for dep in graph[start]:
            if dep == goal or (dep not in seen and reaches(dep, goal, seen | {dep})):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert cycles == []


def test_the_worker_finds_a_view_by_its_handler_path_without_importing_views() -> None:
    from django_pg_resilience.webhooks import registry
    from tests.webhooks.views import ShopifyOrders

    view = registry.load_view(registry.handler_path(ShopifyOrders))
    assert type(view) is ShopifyOrders
