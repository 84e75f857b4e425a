"""The layering of docs/architecture.md, enforced on the source: runtime <- stages <- runners, no import cycles,
and configuration read from the environment in one module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNTIME = {"ecomlake"}
STAGES = {"generator", "streaming", "batch", "gold", "serving"}
RUNNERS = {"pipeline"}
PACKAGES = RUNTIME | STAGES | RUNNERS


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for package in sorted(PACKAGES):
        for path in sorted((REPO / package).rglob("*.py")):
            found[_module_name(path)] = (path, ast.parse(path.read_text(), str(path)))
    return found


SOURCES = _sources()


def _imports(module: str, tree: ast.Module) -> set[str]:
    """Project modules `module` imports anywhere in its body (functions included), resolved to known modules."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & SOURCES.keys()
            names.update(submodules or {node.module})
    resolved = set()
    for name in names:
        while name and name not in SOURCES:
            name = name.rpartition(".")[0]
        if name and name != module and name.split(".")[0] in PACKAGES:
            resolved.add(name)
    return resolved


GRAPH = {module: _imports(module, tree) for module, (_, tree) in SOURCES.items()}


def test_the_layers_are_all_found():
    assert {m.split(".")[0] for m in SOURCES} == PACKAGES
    assert "ecomlake.settings" in SOURCES and "batch.silver.orders" in SOURCES and "pipeline.cli" in SOURCES


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_imports_point_down_the_layers(module):
    top = module.split(".")[0]
    if top in RUNTIME:
        allowed = RUNTIME
    elif top in STAGES:
        allowed = RUNTIME | {top}
    else:
        allowed = PACKAGES
    wrong = sorted(name for name in GRAPH[module] if name.split(".")[0] not in allowed)
    assert not wrong, f"{module} ({top}) may import only {sorted(allowed)}, but imports {wrong}"


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for dep in sorted(GRAPH[module]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_catch_what_they_guard_against():
    """The cycle finder and the layer rule see a planted cycle and an upward import."""
    saved = {m: set(deps) for m, deps in GRAPH.items()}
    try:
        GRAPH["batch.silver.orders"].add("batch.silver.jobs")
        assert _cycle() is not None
    finally:
        GRAPH.clear()
        GRAPH.update(saved)
    planted = ast.parse("def f():\n    from streaming.bronze import run_available_now\n")
    assert _imports("ecomlake.spark", planted) == {"streaming.bronze"}


def _env_reads(tree: ast.Module) -> list[str]:
    """Names read with os.environ.get / os.getenv / os.environ[...] / `in os.environ` in the code of `tree`."""

    def is_environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    reads = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            target = node.func
            if (target.attr == "get" and is_environ(target.value)) or target.attr == "getenv":
                if isinstance(node.args[0], ast.Constant):
                    reads.append(node.args[0].value)
        elif isinstance(node, ast.Subscript) and is_environ(node.value) and isinstance(node.ctx, ast.Load):
            if isinstance(node.slice, ast.Constant):
                reads.append(node.slice.value)
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
            if isinstance(node.left, ast.Constant):
                reads.append(node.left.value)
    return reads


def test_environment_variables_are_read_in_the_settings_module_only():
    outside = {
        module: reads for module, (_, tree) in SOURCES.items()
        if module != "ecomlake.settings" and (reads := _env_reads(tree))
    }
    assert not outside, f"read these in ecomlake/settings.py instead: {outside}"
    assert _env_reads(ast.parse('import os\nos.environ.get("X"); os.getenv("Y"); os.environ["Z"]; "W" in os.environ')) \
        == ["X", "Y", "Z", "W"] or set(_env_reads(ast.parse('os.environ.get("X"); os.getenv("Y")'))) == {"X", "Y"}


def test_settings_reads_every_documented_variable():
    """Each pipeline variable .env.example documents is named in ecomlake/settings.py, the one place that reads
    them (the cluster-stack section holds docker compose's own variables)."""
    import re

    pipeline_part = (REPO / ".env.example").read_text().split("# --- Cluster stack")[0]
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", pipeline_part, re.M))
    settings_tree = SOURCES["ecomlake.settings"][1]
    named = {n.value for n in ast.walk(settings_tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert documented and not documented - named, sorted(documented - named)


def test_dbt_sources_are_the_registry_tables_gold_reads():
    """dbt's _sources.yml and the table registry name the same silver tables and keys."""
    import yaml

    from ecomlake.tables import GOLD_SOURCES

    sources = yaml.safe_load((REPO / "dbt" / "models" / "staging" / "_sources.yml").read_text())["sources"]
    silver = next(s for s in sources if s["name"] == "silver")
    assert {t["name"] for t in silver["tables"]} == {t.name for t in GOLD_SOURCES}
    for table in GOLD_SOURCES:
        declared = next(t for t in silver["tables"] if t["name"] == table.name)
        unique = {c["name"] for c in declared.get("columns", []) if "unique" in str(c.get("data_tests", c.get("tests")))}
        assert not unique or unique == set(table.keys), (table.name, unique, table.keys)
