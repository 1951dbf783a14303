"""Import hygiene, read from the source with ``ast`` (nothing is imported):

- only ``npdeq/backend/`` and the tool packages (``testing``, ``interop``, ``examples``,
  ``cli.py``) may import NumPy: everything else takes its array functions from the
  namespace of its inputs;
- no module imports CuPy at module level (lazy imports inside functions are fine);
- each layer imports only the layers below it, as the table in the design notes says.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import npdeq

PACKAGE = Path(npdeq.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))

# Layers that may import NumPy, and layers that may import anything.
NUMPY_ALLOWED = {"backend", "testing", "interop", "examples", "cli"}
# The package root, the command line (``cli.py``, ``__main__.py``) and the examples.
UNRESTRICTED = {"npdeq", "cli", "__main__", "examples"}

# The design's layer table: the other npdeq layers each layer may import (its own always).
ALLOWED_LAYERS = {
    "exceptions": set(),
    "backend": {"exceptions"},
    "autodiff": {"backend", "exceptions"},
    "solver": {"backend", "exceptions"},
    "grad": {"autodiff", "solver", "backend", "exceptions"},
    "nn": {"autodiff", "backend", "exceptions"},
    "core": {"grad", "solver", "nn", "autodiff", "backend", "exceptions"},
    "optim": {"nn", "autodiff", "backend", "exceptions"},
    # Above the cores: they register reset_deq hooks (norm, dropout) and share the power
    # method (loss) with npdeq.core.sradius.
    "norm": {"core", "nn", "autodiff", "backend", "exceptions"},
    "dropout": {"core", "nn", "autodiff", "backend", "exceptions"},
    "loss": {"core", "grad", "nn", "autodiff", "backend", "exceptions"},
    # utils re-exports the cores' add_deq_args, where TorchDEQ's users import it from.
    "utils": {"core", "grad", "nn", "autodiff", "backend", "exceptions"},
    "models": {"core", "grad", "solver", "norm", "dropout", "loss", "utils", "nn", "autodiff",
               "backend", "exceptions"},
    "testing": {"autodiff", "backend", "exceptions"},
    # numpy.linalg's and torch.sparse's functions, re-exported from the tape's ops.
    "linalg": {"autodiff"},
    "sparse": {"autodiff"},
    "interop": {"solver", "backend", "exceptions"},
    # Data-parallel training over MPI: wraps the optimisers, broadcasts modules' state.
    "distributed": {"core", "optim", "nn", "autodiff", "backend", "exceptions", "solver"},
    # Batch solving and gradients on Dask arrays: the solvers and the IFT rule per chunk.
    "dask": {"grad", "core", "solver", "nn", "autodiff", "backend", "exceptions"},
}

# Imports the table does not list, each with its reason; "lazy" ones must stay inside
# functions (so importing the lower layer never loads the higher one).
DEVIATIONS = {
    ("testing", "grad"): ("lazy", "check_fixed_point_grads checks the DEQ gradient rules"),
    ("testing", "core"): ("lazy", "the config strategy reads the DEQ defaults when present"),
    ("interop", "grad"): ("any", "fixed_point shares the IFT adjoint solve of grad.adjoint"),
}


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name of what is imported
    line: int
    lazy: bool   # inside a function (runs on call, not on import)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(dotted: str) -> str:
    """``npdeq.autodiff.ops.shape`` -> ``autodiff``; names of the package root (``npdeq``,
    ``npdeq.__version__``) -> ``npdeq``. Layers of the table count even before they exist
    (a lazy import of a future layer)."""
    parts = dotted.split(".")
    if len(parts) > 1 and (parts[1] in ALLOWED_LAYERS or parts[1] in UNRESTRICTED
                           or (PACKAGE / parts[1]).is_dir()
                           or (PACKAGE / f"{parts[1]}.py").exists()):
        return parts[1]
    return "npdeq"


def _absolute(path: Path, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _dynamic_import(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("x")`` or ``__import__("x")``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in ("import_module", "__import__") and node.args and isinstance(
            node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                               ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, child.lineno, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(path, child.module, child.level)
                # ``from npdeq import backend`` imports npdeq.backend; names that are not
                # modules map to their package in layer_of.
                found.extend(Import(f"{base}.{a.name}", child.lineno, lazy)
                             for a in child.names)
            elif isinstance(child, ast.Call) and _dynamic_import(child):
                found.append(Import(_dynamic_import(child), child.lineno, lazy))
            visit(child, inner)

    visit(tree, False)
    return found


def _top(dotted: str) -> str:
    return dotted.split(".")[0]


def _ids(paths):
    return [p.relative_to(PACKAGE.parent).as_posix() for p in paths]


def test_the_scan_sees_the_package():
    names = {module_name(p) for p in SOURCES}
    assert {"npdeq", "npdeq.backend", "npdeq.autodiff.tensor",
            "npdeq.autodiff.ops.elementwise"} <= names
    backend_imports = {i.module for i in imports_of(PACKAGE / "backend" / "namespace.py")}
    assert "numpy" in backend_imports and "cupy" in backend_imports  # the lazy lookup


@pytest.mark.parametrize("path", SOURCES, ids=_ids(SOURCES))
def test_numpy_only_in_the_backend_and_tools(path):
    layer = layer_of(module_name(path))
    if layer in NUMPY_ALLOWED:
        return
    offending = [f"line {i.line}: {i.module}" for i in imports_of(path)
                 if _top(i.module) == "numpy"]
    assert not offending, (
        f"{module_name(path)} imports numpy ({', '.join(offending)}); take array functions "
        "from the inputs' namespace (npdeq.backend.array_namespace) instead")


@pytest.mark.parametrize("path", SOURCES, ids=_ids(SOURCES))
def test_no_module_level_cupy(path):
    offending = [f"line {i.line}: {i.module}" for i in imports_of(path)
                 if _top(i.module) in ("cupy", "cupyx") and not i.lazy]
    assert not offending, (
        f"{module_name(path)} imports CuPy at module level ({', '.join(offending)}); import "
        "it inside the function that needs it")


@pytest.mark.parametrize("path", SOURCES, ids=_ids(SOURCES))
def test_layers_import_only_layers_below(path):
    layer = layer_of(module_name(path))
    if layer in UNRESTRICTED:
        return
    assert layer in ALLOWED_LAYERS, (
        f"{module_name(path)} is in layer {layer!r}, which the layer table does not know: "
        "add it to ALLOWED_LAYERS (and to the design notes)")
    allowed = ALLOWED_LAYERS[layer] | {layer}
    offending = []
    for imp in imports_of(path):
        if _top(imp.module) != "npdeq":
            continue
        target = layer_of(imp.module)
        if target in allowed:
            continue
        kind, _ = DEVIATIONS.get((layer, target), (None, None))
        if kind == "any" or (kind == "lazy" and imp.lazy):
            continue
        offending.append(f"line {imp.line}: {imp.module} (layer {target!r}"
                         f"{', at module level' if kind == 'lazy' else ''})")
    assert not offending, (
        f"{module_name(path)} (layer {layer!r}) may import only "
        f"{sorted(ALLOWED_LAYERS[layer])}, but imports {'; '.join(offending)}")


def test_the_checks_catch_violations(tmp_path, monkeypatch):
    # A fake package with one module breaking each rule.
    fake = tmp_path / "npdeq"
    (fake / "autodiff").mkdir(parents=True)
    (fake / "solver").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "autodiff" / "__init__.py").write_text("")
    (fake / "solver" / "__init__.py").write_text("")
    bad = fake / "autodiff" / "bad.py"
    bad.write_text("import numpy as np\nimport cupy\nfrom npdeq.solver import x\n"
                   "from ..solver import y\n\ndef f():\n    import cupyx\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    found = {(i.module, i.lazy) for i in imports_of(bad)}
    assert found == {("numpy", False), ("cupy", False), ("npdeq.solver.x", False),
                     ("npdeq.solver.y", False), ("cupyx", True)}
    for check in (test_numpy_only_in_the_backend_and_tools, test_no_module_level_cupy,
                  test_layers_import_only_layers_below):
        with pytest.raises(AssertionError):
            check(bad)
