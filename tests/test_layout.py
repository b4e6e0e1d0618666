"""The package's shape: no import circle, no private name reached across modules, model types named only by the
registry, the TensorFlow-free modules free of it, no side effects at import, every public name loads."""

import ast
import importlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keras_makemore"


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its `__init__.py`)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.Import, ast.ImportFrom))]


def _imported_modules(path: Path, modules: dict) -> set[str]:
    """The package's modules `path` imports anywhere in it, function-level imports included."""
    found = set()
    for node in _imports(path):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_makemore"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("keras_makemore.")}
    return found


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    graph = {name: {m for m in _imported_modules(path, modules) if m in modules and m != name}
             for name, path in modules.items()}
    done, stack = set(), []

    def visit(name):
        if name in stack:
            pytest.fail("import cycle: " + " -> ".join(stack[stack.index(name):] + [name]))
        if name in done:
            return
        stack.append(name)
        for target in sorted(graph[name]):
            visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert graph["keras_makemore.training.recipe"] >= {"keras_makemore.engine", "keras_makemore.training.config"}


def test_no_module_imports_a_private_name_of_another():
    crossings = []
    for name, path in _modules().items():
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_makemore"):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                if private or any(part.startswith("_") for part in node.module.split(".")):
                    crossings.append(f"{name}:{node.lineno} imports {node.module}.{', '.join(private) or ''}")
    assert not crossings, crossings


def test_engine_fit_is_called_from_the_recipe_alone():
    callers = {name for name, path in _modules().items()
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"
               and isinstance(node.func.value, ast.Name) and node.func.value.id == "engine"}
    assert callers == {"keras_makemore.training.recipe"}


def _texts(path: Path) -> list[tuple[int, str]]:
    """The string literals of a module that are not docstrings: messages, help texts, f-string parts."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_model_types_are_listed_by_the_registry_alone():
    """No message or help text of the package names two model types in a row: every list comes from `REGISTRY`."""
    from keras_makemore.models import MODEL_NAMES

    names = "|".join(MODEL_NAMES)
    listed = re.compile(rf"\b({names})\b(, | and | or )\b({names})\b")
    found = [f"{path.relative_to(PACKAGE)}:{line}: {text}" for path in PACKAGE.rglob("*.py")
             for line, text in _texts(path) if listed.search(text)]
    assert not found, found


@pytest.mark.slow  # a new Python process: the fast selection leaves processes out
def test_importing_plots_leaves_the_matplotlib_backend_alone():
    code = textwrap.dedent("""
        import matplotlib
        matplotlib.use("svg")
        from keras_makemore.analysis import plots
        print(matplotlib.get_backend())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["svg"], out.stderr


def test_the_config_presets_run_directory_registry_and_cli_parser_load_without_tensorflow():
    code = ("import sys; from keras_makemore.training import config, presets, rundir; "
            "from keras_makemore.search import space; from keras_makemore.models import MODEL_NAMES, get_model_type; "
            "[get_model_type(name) for name in MODEL_NAMES]; "
            "from keras_makemore.cli import build_parser; build_parser(); print('tensorflow' in sys.modules)")
    bare = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert bare.stdout.strip() == "False", bare.stderr


def test_every_public_name_resolves():
    package = importlib.import_module("keras_makemore")
    for name in package.__all__:
        value = getattr(package, name)
        assert getattr(value, "__name__", name) == name or not callable(value), name
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        package.nothing  # noqa: B018
