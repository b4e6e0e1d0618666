"""The package's shape: no import circle, config-only modules without TensorFlow, no side effects at import,
every public name loads."""

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keras_makemore"


def _imports(path: Path) -> set[str]:
    """The keras_makemore modules `path` imports anywhere in it, function-level imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_makemore"):
            if node.module == "keras_makemore":
                found |= {f"keras_makemore.{a.name}" for a in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("keras_makemore.")}
    return found


def test_the_import_graph_has_no_cycle():
    modules = {f"keras_makemore.{p.stem}": p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    modules |= {f"keras_makemore.{p.parent.name}.{p.stem}": p for p in PACKAGE.glob("*/*.py")}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    done, path = set(), []

    def visit(name):
        if name in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert graph["keras_makemore.training"] >= {"keras_makemore.engine", "keras_makemore.config"}


@pytest.mark.slow  # a new Python process: the fast selection leaves processes out
def test_importing_plots_leaves_the_matplotlib_backend_alone():
    code = textwrap.dedent("""
        import matplotlib
        matplotlib.use("svg")
        from keras_makemore import plots
        print(matplotlib.get_backend())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["svg"], out.stderr


def test_config_rundir_and_the_cli_parser_load_without_tensorflow():
    bare = subprocess.run([sys.executable, "-c", "import sys; from keras_makemore import config, rundir; "
                           "from keras_makemore.cli import build_parser; build_parser(); "
                           "print('tensorflow' in sys.modules)"], capture_output=True, text=True)
    assert bare.stdout.strip() == "False", bare.stderr


def test_every_public_name_resolves():
    package = importlib.import_module("keras_makemore")
    for name in package.__all__:
        value = getattr(package, name)
        assert getattr(value, "__name__", name) == name or not callable(value), name
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        package.nothing  # noqa: B018
