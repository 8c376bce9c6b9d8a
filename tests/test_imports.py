"""No import cycles among the project's packages, and the benchmarks' layers kept apart.

The import graph is read from the source with ``ast``: every ``import`` and ``from ... import``
of ``tasc_vllm``, ``tools`` and ``benchmarks`` modules, at module level and inside functions
alike (a function-level import still runs, only later), except under ``if TYPE_CHECKING:``,
which never runs.  ``from pkg import name`` imports the module ``pkg.name`` when there is
one, else ``pkg``; ``import a.b.c`` imports the longest known module of ``a.b.c``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("tasc_vllm", "tools", "benchmarks")
SCRIPTS_EXEMPT = {"benchmarks", "benchmarks.report"}  # benchmarks' top-level modules that are not scripts


def find_modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of ``packages`` under ``root``."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _known(name: str, modules) -> str | None:
    """The longest prefix of dotted ``name`` that is a known module."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the known modules it imports (itself left out)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [_known(a.name, modules) for a in node.names]
            else:
                if node.level:
                    base = mod.split(".") if is_package else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for a in node.names:
                    sub = f"{source}.{a.name}"
                    targets.append(sub if sub in modules else _known(source, modules))
            graph[mod].update(t for t in targets if t and t != mod)
    return graph


def find_cycle(graph: dict[str, set[str]], among=None) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``) through a module of ``among`` (default: any), or None."""
    among = set(graph) if among is None else set(among)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                if among & set(cycle):
                    return cycle
            elif nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def cycles_through(graph, among) -> list[list[str]]:
    """Cycles through modules of ``among``: one per cycle found, until none is left (each found
    cycle's last edge is removed before looking again)."""
    graph = {k: set(v) for k, v in graph.items()}
    out = []
    while (cycle := find_cycle(graph, among)) is not None:
        out.append(cycle)
        graph[cycle[-2]].discard(cycle[-1])
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph(find_modules(REPO))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(graph, package):
    mine = [m for m in graph if m == package or m.startswith(package + ".")]
    assert mine, f"no modules found for {package}"
    cycles = cycles_through(graph, mine)
    assert not cycles, f"import cycle(s) through {package}:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_benchmarks_layers(graph):
    """Scripts import the harness, the report and the runtime, never another script; the report
    imports sections and harness; sections import the harness; the harness imports neither."""
    bench = {m for m in graph if m.startswith("benchmarks.")}
    scripts = {m for m in bench if m.count(".") == 1 and m not in SCRIPTS_EXEMPT}
    assert {"benchmarks.run", "benchmarks.online", "benchmarks.headroom"} <= scripts
    for m in sorted(bench):
        deps = {d for d in graph[m] if d.startswith("benchmarks")}
        if m in scripts:
            assert not deps & scripts, f"{m} imports the script(s) {sorted(deps & scripts)}"
        elif m.startswith("benchmarks.harness"):
            assert all(d.startswith("benchmarks.harness") for d in deps), f"{m} imports {sorted(deps)}"
        elif m.startswith("benchmarks.sections"):
            assert all(d.startswith(("benchmarks.harness", "benchmarks.sections")) for d in deps), \
                f"{m} imports {sorted(deps)}"
    assert "benchmarks.report" in graph["benchmarks.run"]
    assert not {d for d in graph["benchmarks.report"] if d in scripts}


def test_the_graph_sees_function_level_and_relative_imports_and_finds_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import c\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.c\n"
                              "def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from .sub.c import thing\nimport pkg.sub\n")
    (pkg / "c.py").write_text("X = 1\n")
    (pkg / "sub" / "c.py").write_text("from ..a import f\n")
    modules = find_modules(tmp_path, ("pkg",))
    g = import_graph(modules)
    assert g["pkg.a"] == {"pkg.b"}  # the function-level import counts, TYPE_CHECKING does not
    assert g["pkg.b"] == {"pkg.sub.c", "pkg.sub"}
    assert g["pkg.sub"] == {"pkg.sub.c"}
    assert g["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(g) == ["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.a"]
    assert find_cycle(g, ["pkg.c"]) is None
    (pkg / "sub" / "c.py").write_text("from pkg.c import X\n")  # not a module: imports pkg.c itself
    assert find_cycle(import_graph(find_modules(tmp_path, ("pkg",)))) is None
