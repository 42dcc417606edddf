"""archspace's import graph, read from the source with ``ast`` (nothing is imported): no cycles, no upward imports.

Layers, bottom to top: spec, blocks and nn (one layer; presets is their data), measure, evaluate, export,
search, report, jobs (a search run or a report as one library call), analysis (statistics over runs), cli. A module imports only from its
own layer or below. Every import counts: module-level and inside functions, ``import a.b``, ``from ..a
import b`` (relative imports resolved; ``b`` counts as the submodule ``a.b`` when it is one, else as the
package ``a``), string ``importlib.import_module`` calls, and the ``_LAZY`` table a package passes to
``lazy_attributes``; imports under ``if TYPE_CHECKING:`` do not. Measure below evaluate means measure never
imports evaluate; search below report means no package cycle between them (report reads search).
``archspace.vocab``, ``archspace.files``, ``archspace._lazy`` and ``archspace._version`` are utilities: any
module may import them, and they import no other archspace module. ``archspace/__init__.py`` (the lazy public
API) sits above every layer and may name anything; no module of the package imports it (``from . import
__version__`` would: take the version from ``archspace._version``).
"""
from __future__ import annotations

import ast
from collections import deque
from pathlib import Path
from typing import NamedTuple

PACKAGE = Path(__file__).resolve().parents[1] / "archspace"
ROOT = "archspace"
UTILITIES = {"archspace.vocab", "archspace.files", "archspace._lazy", "archspace._version"}
LAYERS: dict[str, int] = {"spec": 0, "blocks": 0, "nn": 0, "presets": 0, "measure": 1, "evaluate": 2, "export": 3,
                          "search": 4, "report": 5, "jobs": 6, "analysis": 7, "cli": 8}
LAYER_NAMES = ("spec/blocks/nn", "measure", "evaluate", "export", "search", "report", "jobs", "analysis", "cli")


class Import(NamedTuple):
    """One import: the importing module, the imported archspace module, and where it is written."""

    source: str
    target: str
    where: str  # "archspace/x/y.py:12"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (``archspace/x/__init__.py`` is ``archspace.x``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    """The archspace modules one file imports, with their line numbers."""

    def __init__(self, name: str, is_package: bool, where: str, modules: set[str]) -> None:
        self.name, self.modules, self.where = name, modules, where
        self.package = name if is_package else name.rpartition(".")[0]
        self.found: list[Import] = []
        self.tables: dict[str, ast.Dict] = {}  # module-level dict literals, for lazy tables

    def add(self, target: str, node: ast.AST) -> None:
        found = Import(self.name, target, f"{self.where}:{node.lineno}")
        if (target == ROOT or target.startswith(ROOT + ".")) and target != self.name and found not in self.found:
            self.found.append(found)

    def visit_Module(self, node: ast.Module) -> None:
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Dict):
                for t in stmt.targets:
                    if isinstance(t, ast.Name):
                        self.tables[t.id] = stmt.value
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for stmt in node.orelse:
                self.visit(stmt)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            base = ".".join(base + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self.add(sub if sub in self.modules else base, node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if fname == "import_module" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self.add(node.args[0].value, node)
        if fname == "lazy_attributes" and len(node.args) >= 2 and isinstance(node.args[1], ast.Name) \
                and node.args[1].id in self.tables:
            for value in self.tables[node.args[1].id].values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    self.add(f"{self.name}.{value.value}", value)
        self.generic_visit(node)


def imports_of(name: str, source: str, *, is_package: bool, where: str, modules: set[str]) -> list[Import]:
    """The archspace modules that module ``name`` (its ``source``) imports, once per module and line."""
    collector = _Collector(name, is_package, where, modules)
    collector.visit(ast.parse(source, filename=where))
    return collector.found


def import_graph() -> tuple[dict[str, Path], list[Import]]:
    """The package's modules and every import between them."""
    modules = module_files()
    imports: list[Import] = []
    for name, path in modules.items():
        imports += imports_of(name, path.read_text(), is_package=path.name == "__init__.py",
                              where=path.relative_to(PACKAGE.parent).as_posix(), modules=set(modules))
    return modules, imports


def layer(module: str) -> int | None:
    """The layer index of a module (None for the root, the utilities and modules no layer holds)."""
    if module == ROOT or module in UTILITIES:
        return None
    return LAYERS.get(module.split(".")[1])


def cycles(modules: list[str], imports: list[Import]) -> list[str]:
    """Every group of modules that import each other (a strongly connected component): one shortest cycle through its
    first module, then the group's other imports, each with its file and line."""
    edges: dict[str, dict[str, Import]] = {m: {} for m in modules}
    for i in imports:
        if i.source in edges and i.target in edges:
            edges[i.source].setdefault(i.target, i)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the package has ~80 modules, so recursion depth is no concern
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    for m in modules:
        if m not in index:
            connect(m)
    lines = []
    for component in sorted(components):
        start, members = component[0], set(component)
        previous: dict[str, Import] = {}
        queue = deque([start])
        while queue and start not in previous:  # breadth-first from start back to start, inside the component
            v = queue.popleft()
            for w, edge in sorted(edges[v].items()):
                if w in members and w not in previous:
                    previous[w] = edge
                    queue.append(w)
        path, v = [], start
        while not path or v != start:
            path.append(previous[v])
            v = previous[v].source
        line = " -> ".join([start] + [f"{i.target} ({i.where})" for i in reversed(path)])
        rest = sorted(f"{e.source} -> {e.target} ({e.where})" for v in component for w, e in edges[v].items()
                      if w in members and e not in path)
        lines.append(line + (f"; the group's other imports: {', '.join(rest)}" if rest else ""))
    return lines


def layer_violations(modules: set[str], imports: list[Import]) -> list[str]:
    """One line per module in no layer and per import that goes up a layer, into the root, or out of a utility."""
    problems = [f"{name}: in no layer; add its package to LAYERS in tests/test_layers.py" for name in sorted(modules)
                if name != ROOT and name not in UTILITIES and layer(name) is None]
    for i in imports:
        if i.target not in modules:
            problems.append(f"{i.where}: {i.source} imports {i.target}, which does not exist")
        elif i.source == ROOT:
            continue  # the public API re-exports from every layer
        elif i.target == ROOT:
            problems.append(f"{i.where}: {i.source} imports the package root archspace (the public API sits above "
                            "every layer; take the version from archspace._version, names from their modules)")
        elif i.source in UTILITIES:
            if i.target not in UTILITIES:
                problems.append(f"{i.where}: utility {i.source} imports {i.target} (utilities import only utilities)")
        elif i.target not in UTILITIES:
            low, high = layer(i.source), layer(i.target)
            if low is not None and high is not None and high > low:
                rule = {("measure", "evaluate"): "measure never imports evaluate",
                        ("search", "report"): "search never imports report (report reads search)"}.get(
                    (LAYER_NAMES[low], LAYER_NAMES[high]), f"{LAYER_NAMES[low]} sits below {LAYER_NAMES[high]}")
                problems.append(f"{i.where}: {i.source} imports {i.target}: {rule}")
    return problems


def test_no_import_cycles():
    modules, imports = import_graph()
    found = cycles(sorted(modules), imports)
    assert not found, "import cycles (function-level and lazy imports count):\n  " + "\n  ".join(found)


def test_no_upward_imports():
    modules, imports = import_graph()
    problems = layer_violations(set(modules), imports)
    assert not problems, f"{len(problems)} layer violations (bottom to top: {', '.join(LAYER_NAMES)}):\n  " + \
        "\n  ".join(problems)


def test_the_checks_name_each_cycle_and_each_upward_import():
    """The two checks on a made-up graph: a cycle of three inside one of four, and one import of each wrong kind."""
    imp = Import
    graph = [imp("archspace.a", "archspace.b", "a.py:1"), imp("archspace.b", "archspace.c", "b.py:2"),
             imp("archspace.c", "archspace.a", "c.py:3"), imp("archspace.c", "archspace.d", "c.py:4"),
             imp("archspace.d", "archspace.c", "d.py:5"), imp("archspace.e", "archspace.a", "e.py:6")]
    assert cycles([f"archspace.{m}" for m in "abcde"], graph) == [
        "archspace.a -> archspace.b (a.py:1) -> archspace.c (b.py:2) -> archspace.a (c.py:3); the group's other "
        "imports: archspace.c -> archspace.d (c.py:4), archspace.d -> archspace.c (d.py:5)"]
    modules = {"archspace", "archspace.vocab", "archspace.measure.flops", "archspace.evaluate.train",
               "archspace.search.space", "archspace.report.run", "archspace.nn.build", "archspace.extra"}
    wrong = [imp("archspace.measure.flops", "archspace.evaluate.train", "m.py:1"),
             imp("archspace.search.space", "archspace.report.run", "s.py:2"),
             imp("archspace.nn.build", "archspace.search.space", "n.py:3"),
             imp("archspace.nn.build", "archspace", "n.py:4"),
             imp("archspace.vocab", "archspace.nn.build", "v.py:5"),
             imp("archspace.nn.build", "archspace.nn.gone", "n.py:6")]
    fine = [imp("archspace", "archspace.report.run", "i.py:1"), imp("archspace.report.run", "archspace.search.space", "r.py:1"),
            imp("archspace.nn.build", "archspace.vocab", "n.py:7"), imp("archspace.evaluate.train", "archspace.measure.flops", "e.py:1")]
    assert layer_violations(modules, wrong + fine) == [
        "archspace.extra: in no layer; add its package to LAYERS in tests/test_layers.py",
        "m.py:1: archspace.measure.flops imports archspace.evaluate.train: measure never imports evaluate",
        "s.py:2: archspace.search.space imports archspace.report.run: search never imports report (report reads search)",
        "n.py:3: archspace.nn.build imports archspace.search.space: spec/blocks/nn sits below search",
        "n.py:4: archspace.nn.build imports the package root archspace (the public API sits above every layer; take "
        "the version from archspace._version, names from their modules)",
        "v.py:5: utility archspace.vocab imports archspace.nn.build (utilities import only utilities)",
        "n.py:6: archspace.nn.build imports archspace.nn.gone, which does not exist"]


def test_the_walker_sees_every_kind_of_import():
    """Relative and absolute, submodule or name, function-level, lazy tables, import_module; not TYPE_CHECKING."""
    source = """
from typing import TYPE_CHECKING
import archspace.spec.io
from . import stems, helper
from .layers import DropPath
from ..spec import net
from ..measure.flops import count_flops
from archspace._lazy import lazy_attributes
if TYPE_CHECKING:
    from ..evaluate.train import TrainBudget
else:
    from ..vocab import METRICS
_LAZY = {"convert": "convert"}
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())

def build():
    import importlib
    from ..search import space
    importlib.import_module("archspace.report.run")
"""
    modules = {"archspace", "archspace._lazy", "archspace.vocab", "archspace.nn", "archspace.nn.stems",
               "archspace.nn.layers", "archspace.nn.convert", "archspace.spec", "archspace.spec.io",
               "archspace.spec.net", "archspace.measure.flops", "archspace.search", "archspace.search.space",
               "archspace.evaluate.train", "archspace.report.run"}
    found = imports_of("archspace.nn", source, is_package=True, where="archspace/nn/__init__.py", modules=modules)
    assert [(i.target, int(i.where.rpartition(":")[2])) for i in found] == [
        ("archspace.spec.io", 3), ("archspace.nn.stems", 4), ("archspace.nn.layers", 5),  # helper: itself
        ("archspace.spec.net", 6), ("archspace.measure.flops", 7), ("archspace._lazy", 8), ("archspace.vocab", 12),
        ("archspace.nn.convert", 13), ("archspace.search.space", 18), ("archspace.report.run", 19)]
    leaf = imports_of("archspace.nn.build", "from . import helper\nfrom .. import spec\n", is_package=False,
                      where="archspace/nn/build.py", modules=modules)
    assert [i.target for i in leaf] == ["archspace.nn", "archspace.spec"]  # a name of the package, a subpackage
