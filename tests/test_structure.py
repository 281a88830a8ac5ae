"""The package's shape: no import circle among lift_det's files (imports inside functions
included), no file over 250 lines, every file in tools/ an executable script."""

import ast
import os

from conftest import REPO

PACKAGE = os.path.join(REPO, "lift_det")


def _modules():
    """{dotted name: path} of lift_det's files (a package by its name, not ``__init__``)."""
    mods = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                mods[name.removesuffix(".__init__")] = path
    return mods


def import_graph():
    """{module: modules of lift_det it imports, anywhere in the file}; ``from a import b`` counts
    as importing ``a`` and, where ``a.b`` is a file, ``a.b``."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod.split(".") if path.endswith("__init__.py") else mod.split(".")[:-1]
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                targets = [source] + [f"{source}.{a.name}" for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t in mods and t != mod}
    return graph


def find_circle(graph):
    """One import circle as a list of modules (first == last), or None."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_import_graph_has_no_circle():
    graph = import_graph()
    # the graph is read right: known edges, relative and absolute, and imports inside functions
    assert "lift_det.checkpoint.file_io" in graph["lift_det.engine.run_dir"]
    assert "lift_det.modeling.lift" in graph["lift_det.modeling.upsample"]
    assert "lift_det.data" in graph["lift_det.engine.predictor"]  # inside a method
    assert "lift_det.modeling" in graph["lift_det.config"]  # inside a function
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))


def test_a_planted_circle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_circle(graph) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_no_package_file_over_250_lines():
    long = {}
    for mod, path in _modules().items():
        with open(path) as f:
            n = sum(1 for _ in f)
        if n > 250:
            long[mod] = n
    assert not long, f"split these files (at most 250 lines each): {long}"


def test_every_tool_is_an_executable_script():
    tools = os.path.join(REPO, "tools")
    for name in sorted(os.listdir(tools)):
        path = os.path.join(tools, name)
        if not name.endswith(".py"):
            continue
        with open(path) as f:
            text = f.read()
        assert text.startswith("#!/usr/bin/env python"), f"{name}: no shebang"
        assert 'if __name__ == "__main__":' in text, f"{name}: not a script"
        assert os.access(path, os.X_OK), f"{name}: not executable"
