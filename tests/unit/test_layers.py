"""Layers point down only (DESIGN.md's map): every `import zdt…` in src/zdt is checked
against the layer of the module that makes it. Imports made for type checking only are
left out (they run no code)."""

from __future__ import annotations

import ast
from pathlib import Path

import zdt

ROOT = Path(zdt.__file__).parent

# lowest first; a module may import its own layer and those below
LAYERS: list[tuple[str, ...]] = [
    ("zdt.errors", "zdt.result"),
    ("zdt.atomic", "zdt.template", "zdt.nodepath", "zdt.terminal", "zdt.procfs",
     "zdt.waiting", "zdt.http", "zdt.lock", "zdt.sqlitedb",
     "zdt.changes"),
    ("zdt.domain", "zdt.archive", "zdt.appspec"),
    ("zdt.adapters", "zdt.staging", "zdt.stale", "zdt.capacity", "zdt.analysis"),
    ("zdt.steps",),
    ("zdt.workflow.plan", "zdt.workflow.batches", "zdt.workflow.request",
     "zdt.workflow.journal",
     "zdt.workflow.engine", "zdt.witness", "zdt.report",
     "zdt.preview", "zdt.display", "zdt.live", "zdt.inventory", "zdt.stale_fleet"),
    ("zdt.workflow.kinds", "zdt.workflow.admission", "zdt.workflow.runner"),
    ("zdt.previewed",),
    ("zdt.app",),
    ("zdt.cli", "zdt.lab", "zdt.console"),
]


def layer(module: str) -> int:
    best = (-1, -1)
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                best = max(best, (len(prefix), number))
    assert best[1] >= 0, f"{module} is on no layer of the map"
    return best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def runtime_imports(tree: ast.Module, package: str) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("zdt"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{package}: a relative import ({node.module})"
            base = node.module
            if base.startswith("zdt"):
                modules = {f"{base}.{a.name}" for a in node.names
                           if _is_module(f"{base}.{a.name}")}
                found.update(modules or {base})
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        if name == "zdt":
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in runtime_imports(ast.parse(path.read_text()), package):
            if target == "zdt" or target.startswith(name + ".") or name.startswith(target):
                continue
            if layer(target) > layer(name):
                upward.append(f"{name} (layer {layer(name)}) imports {target} "
                              f"(layer {layer(target)})")
    assert upward == []


def test_the_product_never_imports_the_lab() -> None:
    """Only the `zdt sandbox` and `zdt demo` commands reach it, when they run."""
    reaching = []
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        if name.startswith("zdt.lab"):
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:                     # a module-level import runs on import
            text = ast.unparse(node) if isinstance(node, ast.Import | ast.ImportFrom) else ""
            if "zdt.lab" in text or "from zdt import lab" in text:
                reaching.append(f"{name}: {text}")
    assert reaching == []


def test_no_module_is_over_400_lines() -> None:
    long = {module_name(p): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
