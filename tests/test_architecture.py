"""The import graph of genlab has no cycles.

Two graphs are checked, both built from the source with ``ast`` (nothing is imported):

* **module-level imports** (including those inside module-level ``if``/``try``): a cycle here
  can break at import time (a partially initialised module) depending on which module a
  user imports first, so there must be none;
* **all imports, function-level ones included**: deferred imports hide a dependency from the
  import machinery but not from the design, so they must not form cycles either — with two
  declared exceptions, the lookups of a class by its registered name: the model registry
  (``registry._ensure_loaded`` imports every family so that ``make_model`` and
  ``GenerativeModel.load`` find a model by name; the families necessarily import the base
  class) and the latent-sampler registry (``samplers.base._registry``, likewise for
  ``sampler_from_state``). Any other cycle fails the test.

``from package import name`` counts as an import of ``package.name`` when that is a module,
else of ``package``; importing a submodule is not counted as importing its parent
package's ``__init__`` (Python runs it, but it is a namespace, not a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import genlab

ROOT = Path(genlab.__file__).resolve().parent
#: (module, function) whose imports are the declared late-binding points
PLUGIN_LOOKUPS = {("genlab.models.registry", "_ensure_loaded"), ("genlab.samplers.base", "_registry")}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _targets(module: str, is_package: bool, node: ast.AST, modules) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return {n for n in names if n in modules}
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        package = ".".join(base + ([node.module] if node.module else []))
    else:
        package = node.module or ""
    found = set()
    for alias in node.names:
        sub = f"{package}.{alias.name}"
        found.add(sub if sub in modules else package)
    return {t for t in found if t in modules}


def _graph(include_functions: bool) -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack: list[tuple[ast.AST, str | None]] = [(n, None) for n in tree.body]
        while stack:
            node, function = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not include_functions:
                    continue
                function = node.name if function is None else function
            if isinstance(node, (ast.Import, ast.ImportFrom)) and (module, function) not in PLUGIN_LOOKUPS:
                edges[module] |= _targets(module, is_package, node, modules) - {module}
            stack.extend((child, function) for child in ast.iter_child_nodes(node))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycle():
    assert _cycles(_graph(include_functions=False)) == []


def test_no_import_cycle_even_counting_function_level_imports():
    assert _cycles(_graph(include_functions=True)) == []


def test_the_graph_sees_real_edges():
    graph = _graph(include_functions=True)
    assert "genlab.mixture" in graph["genlab.samplers.gmm"] and "genlab.mixture" in graph["genlab.models.gmm"]
    assert "genlab.models.gmm" not in graph["genlab.samplers.gmm"]
    assert "genlab.compare" not in graph["genlab.report.html"]
    assert "genlab.models.registry" in graph["genlab.models.base"]  # load() looks models up by name
