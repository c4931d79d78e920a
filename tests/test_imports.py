"""The architecture, read from the imports: the store builds without knowing what it builds,
torch stays in the trainer, and no two modules import each other (no import circle)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("xaug", "trainer")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = modules()


def imports_of(name: str, top_level_only: bool = False) -> set[str]:
    """Every module `name` imports (at the top, or anywhere: lazy imports in functions count)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    is_pkg = MODULES[name].name == "__init__.py"
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES}
        elif top_level_only and isinstance(node, ast.If):  # `if TYPE_CHECKING:` is not an import
            continue
    return found


def internal(found: set[str]) -> set[str]:
    return {m for m in found if m in MODULES}


def test_the_store_imports_none_of_what_it_builds():
    for name in MODULES:
        if name == "xaug.store" or name.startswith("xaug.store."):
            bad = {m for m in imports_of(name) if m.split(".")[:2] in (["xaug", "ops"], ["xaug", "pipeline"],
                                                                        ["xaug", "synth"], ["xaug", "cli"])}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_only_the_trainer_and_xaug_torch_import_torch():
    for name in MODULES:
        if name.startswith("trainer") or name == "xaug.torch" or name.startswith("xaug.torch_"):
            continue
        bad = {m for m in imports_of(name) if m == "torch" or m.startswith("torch.")}
        assert not bad, f"{name} imports torch"


def test_nothing_imports_the_cli():
    for name in MODULES:
        if name.startswith("xaug.cli") or name == "xaug.__main__":
            continue
        bad = {m for m in imports_of(name) if m == "xaug.cli" or m.startswith("xaug.cli.")}
        assert not bad, f"{name} imports the CLI: {sorted(bad)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    graph = {}
    for name in MODULES:
        deps = internal(imports_of(name, top_level_only))
        # a package's __init__ importing its own submodules is how packages are built, not a circle
        graph[name] = {d for d in deps if d != name and not d.startswith(name + ".")}
    return graph


def test_no_import_circle_at_module_level():
    assert _cycles(_graph(top_level_only=True)) == []


@pytest.mark.parametrize("pair", [("xaug.model", "xaug.layout")])
def test_known_circles_stay_broken(pair):
    a, b = pair
    assert not (b in internal(imports_of(a)) and a in internal(imports_of(b)))
