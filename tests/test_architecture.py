"""The package's architecture, checked from its source: imports run one way, no cycles, a torch-free core.

Layers, lowest first: io < model < inference < {measurements, training} < batch < cli < _napari.
A module may import its own subpackage and lower layers (imports inside functions count too);
measurements and training do not import each other; nothing imports ``_napari``; only ``_napari``
imports Qt, napari or magicgui; io, measurements, batch and cli import without loading torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = "napari_nevus_seg"
SRC = Path(__file__).resolve().parents[1] / "src" / PKG
LAYER = {"io": 0, "model": 1, "inference": 2, "measurements": 3, "training": 3, "batch": 4, "cli": 5, "_napari": 6}
GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt")
TORCH_FREE = ("io", "measurements", "batch", "cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def public_api() -> dict[str, str]:
    """The lazy public API of the package's ``__init__``: name -> defining module."""
    tree = ast.parse((SRC / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "_API":
            return {k: f"{PKG}.{v}" for k, v in ast.literal_eval(node.value).items()}
    raise AssertionError("no _API table in __init__.py")


def imports_of(name: str, path: Path) -> set[str]:
    """Every module of this package and every external top-level package that ``name`` imports,
    at module level or inside functions; ``from napari_nevus_seg import x`` is resolved through the API."""
    is_pkg = path.name == "__init__.py"
    api = public_api()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == PKG:
                for a in node.names:
                    found.add(api.get(a.name, f"{PKG}.{a.name}"))
            else:
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules())
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYER) else None


def internal_graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {i for i in imports_of(m, p) if i in mods and i != m} for m, p in mods.items()}


def test_imports_run_one_way():
    wrong = []
    for mod, deps in internal_graph().items():
        src = layer_of(mod)
        if src is None:      # the package's __init__ (lazy API) and __main__
            continue
        for dep in deps:
            dst = layer_of(dep)
            if dst is None:
                if dep == PKG:
                    wrong.append(f"{mod} imports the package's __init__ (import the defining module)")
                continue
            if dst == src:
                continue
            if LAYER[dst] >= LAYER[src]:
                wrong.append(f"{mod} ({src}) imports {dep} ({dst})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = internal_graph()
    # a subpackage's __init__ is imported with each of its modules: count it as a node of its own
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_core_never_imports_gui_toolkits():
    bad = []
    for mod, path in modules().items():
        if layer_of(mod) == "_napari":
            continue
        for i in imports_of(mod, path):
            if i.split(".")[0] in GUI_MODULES:
                bad.append(f"{mod} imports {i}")
    assert not bad, "\n".join(bad)


def test_no_private_names_imported_across_modules():
    bad = []
    for mod, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PKG):
                bad += [f"{mod} imports {a.name} from {node.module}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_modules_stay_small():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


@pytest.mark.parametrize("subpackage", TORCH_FREE)
def test_subpackage_imports_without_torch(subpackage):
    names = sorted(m for m in modules() if layer_of(m) == subpackage)
    code = ("import sys\n" + "".join(f"import {m}\n" for m in names)
            + "loaded = [m for m in ('torch', 'qtpy', 'napari') if m in sys.modules]\n"
            + "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_layer_table_names_every_subpackage():
    subpackages = {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert subpackages == set(LAYER), subpackages ^ set(LAYER)
