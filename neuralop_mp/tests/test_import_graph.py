"""No import cycle inside the package, not even one hidden by an import deferred into a
function; the vocabulary is a leaf; every module imports in any order in a fresh interpreter."""
import ast
import importlib.util
import pkgutil
import random
import subprocess
import sys
from pathlib import Path

import pytest

import neuralop_mp
import neuralop_mp.configs

LEAVES = ("neuralop_mp.vocabulary",)


def package_modules():
    """``{module name: source path}`` of every module of the package (tests excluded)."""
    found = {}
    for package in (neuralop_mp, neuralop_mp.configs):
        found[package.__name__] = Path(package.__file__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".tests" in info.name or info.name.endswith(".tests"):
                continue
            spec = importlib.util.find_spec(info.name)
            found[info.name] = Path(spec.origin)
    return found


def _resolve(module, is_package, node):
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def package_imports(name, path, known):
    """Package modules that ``name`` imports, at module level or inside a function.

    An import of a parent package is left out: a module needs its parent anyway, and
    a package's ``__init__`` importing its children is no cycle.
    """
    tree = ast.parse(path.read_text())
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in known and t != name and not name.startswith(t + ".")}


def find_cycle(graph):
    """One cycle of ``graph`` as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_even_through_deferred_imports():
    modules = package_modules()
    assert "neuralop_mp.layers.spectral_conv" in modules and "neuralop_mp.configs.validation" in modules
    graph = {name: package_imports(name, path, modules) for name, path in modules.items()}
    assert "neuralop_mp.vocabulary" in graph["neuralop_mp.layers.spectral_conv"]  # the graph sees imports
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_vocabulary_is_a_leaf():
    modules = package_modules()
    for leaf in LEAVES:
        assert package_imports(leaf, modules[leaf], modules) == set()
        tree = ast.parse(modules[leaf].read_text())
        nested = [n for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and (n.level or "neuralop_mp" in (n.module or ""))]
        assert not nested, f"{leaf} imports from the package"


def test_public_precision_is_the_context_manager_not_a_module():
    import neuralop_mp.layers.precision_switch  # noqa: F401  (importing every module must not shadow it)

    assert callable(neuralop_mp.precision) and not isinstance(neuralop_mp.precision, type(neuralop_mp))
    assert importlib.util.find_spec("neuralop_mp.precision") is None


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_every_module_imports_alone_in_random_order():
    """One fresh interpreter imports every module, in a shuffled order (seed printed on failure)."""
    names = sorted(package_modules())
    seed = random.randrange(2**16)
    random.Random(seed).shuffle(names)
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"seed {seed}, order {names}:\n{result.stderr[-3000:]}"
