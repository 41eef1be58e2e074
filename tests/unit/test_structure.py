"""The layering DESIGN.md asks for, checked on the source: a leaf model package, policies and
drivers on it alone, a controller that does not import the simulator, and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ems", "policies", "drivers", "plant", "sim_devices")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _imports(tree: ast.Module, module: str, top_level_only: bool) -> set[str]:
    """Our modules imported by `module`: at its top level only (what runs on import, outside
    `if TYPE_CHECKING:`), or anywhere."""
    out: set[str] = set()
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if _ours(a.name)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _ours(node.module):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        found = _imports(ast.parse(path.read_text()), mod, top_level_only)
        graph[mod] = {m for m in found if m in files and m != mod}
    return graph


ANYWHERE = _graph(top_level_only=False)
ON_IMPORT = _graph(top_level_only=True)


def _importers(prefix: str, of: str) -> dict[str, set[str]]:
    return {m: {d for d in deps if d.startswith(of)} for m, deps in ANYWHERE.items()
            if m.startswith(prefix) and any(d.startswith(of) for d in deps)}


def test_the_model_is_a_leaf() -> None:
    assert {m: deps for m, deps in ANYWHERE.items() if m.startswith("ems.model")
            and any(not d.startswith("ems.model") for d in deps)} == {}


def test_policies_drivers_and_plant_import_only_the_model_and_themselves() -> None:
    for pkg in ("policies", "drivers", "plant"):
        wrong = {m: {d for d in deps if not d.startswith(("ems.model", pkg))}
                 for m, deps in ANYWHERE.items() if m.startswith(pkg)}
        assert {m: d for m, d in wrong.items() if d} == {}, pkg


def test_the_controller_does_not_import_the_simulator() -> None:
    # the demo runs the simulator in its own process and reads its section; `ems sim` serves it
    assert set(_importers("ems", "sim_devices")) <= {"ems.demo", "ems.cli"}
    assert _importers("ems.config", "sim_devices") == {} and _importers("ems.config", "ems.operator") == {}
    assert _importers("sim_devices", "ems.config") == {}


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over what each module imports when loaded."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in ON_IMPORT[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in ON_IMPORT:
        if v not in index:
            visit(v)
    assert cycles == []
