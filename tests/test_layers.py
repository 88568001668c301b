"""The package's shape: layers that import downward only, an acyclic import graph, documented
public names, library errors that speak of arguments (not command-line flags)."""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import invgan

PKG = Path(invgan.__file__).parent

#: docs/architecture.md: library (0) <- experiments (1) <- sweeps (2) <- plots (3) <- CLI (4)
LAYERS = {
    "experiment": 1, "cs": 1, "inpaint": 1,
    "sweep": 2,
    "plots": 3,
    "cli": 4, "__main__": 4,
}
TRAINING = "train"


def modules():
    return sorted(p.stem for p in PKG.glob("*.py"))


def imports_of(name: str) -> set[str]:
    """invgan modules that ``name`` imports anywhere (top level or inside functions)."""
    tree = ast.parse((PKG / f"{name}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("invgan"):
            if node.module == "invgan":
                out |= {a.name for a in node.names if (PKG / f"{a.name}.py").is_file()}
            else:
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("invgan.")}
    return out - {name}


def test_layers_import_downward_only():
    for name in modules():
        for dep in imports_of(name):
            assert LAYERS.get(dep, 0) <= LAYERS.get(name, 0), f"{name} (layer {LAYERS.get(name, 0)}) imports {dep}"


def test_plots_read_files_and_import_no_runner():
    assert not imports_of("plots") & {"experiment", "cs", "inpaint", "sweep", TRAINING}


def test_only_the_cli_imports_training():
    users = {name for name in modules() if TRAINING in imports_of(name)}
    assert users <= {"cli"}, users


def test_import_graph_is_acyclic():
    graph = {name: imports_of(name) for name in modules()}
    state = {}

    def visit(n, path):
        if state.get(n) == "done":
            return
        assert state.get(n) != "open", "import cycle: " + " -> ".join(path + [n])
        state[n] = "open"
        for d in graph.get(n, ()):
            visit(d, path + [n])
        state[n] = "done"

    for n in graph:
        visit(n, [])


def test_every_public_name_is_exported_and_documented():
    for name in invgan.__all__:
        obj = getattr(invgan, name)
        if name != "__version__":
            assert inspect.getdoc(obj), f"invgan.{name} has no docstring"


LIBRARY = [n for n in modules() if LAYERS.get(n, 0) == 0 and n not in ("__init__",)]


@pytest.mark.parametrize("name", LIBRARY + ["experiment", "cs", "inpaint", "sweep", "plots"])
def test_public_functions_and_classes_have_docstrings(name):
    mod = importlib.import_module(f"invgan.{name}")
    assert inspect.getdoc(mod), f"invgan.{name} has no module docstring"
    missing = []
    for attr, obj in vars(mod).items():
        if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            if not (obj.__doc__ or "").strip():
                missing.append(attr)
            if inspect.isclass(obj):
                for m, f in vars(obj).items():
                    if not m.startswith("_") and inspect.isfunction(f) and not (f.__doc__ or "").strip() \
                            and not any(getattr(b, m, None) is not None and (getattr(b, m).__doc__ or "").strip()
                                        for b in obj.__mro__[1:]):
                        missing.append(f"{attr}.{m}")
    assert not missing, f"invgan.{name}: no docstring for {missing}"


@pytest.mark.parametrize("name", LIBRARY)
def test_library_errors_name_arguments_not_flags(name):
    src = (PKG / f"{name}.py").read_text()
    calls = [ast.get_source_segment(src, n) for n in ast.walk(ast.parse(src))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "InvganError"]
    flags = [f for c in calls for f in re.findall(r"--[a-z][a-z-]+", c)]
    assert not flags, f"invgan.{name} errors name command-line flags {flags}"


def test_invgan_error_is_a_value_error():
    assert issubclass(invgan.InvganError, ValueError)
