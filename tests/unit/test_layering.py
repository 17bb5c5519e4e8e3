"""Layering: the core (``include/loopline``), the Airflow layer (``plugins/``) and ``dags/`` never import the dev
tooling (``loopline_dev``), which is not shipped in the provider wheel. Checked on the source (the AST of every
module), so an import inside a function or under ``if TYPE_CHECKING:`` counts as much as one at the top. And every
import of Loopline's own modules, anywhere in the repository, names a module that exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
LAYERS = ("include/loopline", "plugins", "dags")
DEV = "loopline_dev"


def _is_dev(module: str) -> bool:
    return module == DEV or module.startswith(f"{DEV}.")


def dev_imports(path: Path) -> list[str]:
    """``file:line module`` for every import of ``loopline_dev`` in one module: absolute ``import`` and
    ``from ... import`` statements anywhere in the file, and ``importlib.import_module`` / ``__import__`` calls
    with a literal name (a relative import names a sibling module, not the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if _is_dev(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _is_dev(node.module):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            target = node.args[0].value
            if name in {"import_module", "__import__"} and isinstance(target, str) and _is_dev(target):
                found.append((node.lineno, target))
    return [f"{path}:{line} {module}" for line, module in found]


def _modules() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (REPO / layer).rglob("*.py"))


def test_the_core_the_plugin_and_the_dags_never_import_the_dev_tooling():
    modules = _modules()
    assert any(p.parts[-2:] == ("loopline", "steps.py") for p in modules)  # the walk really covers the core
    assert any("loopline_airflow" in p.parts for p in modules)
    offenders = [hit for path in modules for hit in dev_imports(path)]
    assert offenders == [], "the dev tooling is imported by:\n" + "\n".join(offenders)


@pytest.mark.parametrize("source", [
    "import loopline_dev\n",
    "import os, loopline_dev.stack as s\n",
    "from loopline_dev.rest import AirflowClient\n",
    "from loopline_dev import demo\n",
    "def f():\n    from loopline_dev.stack import free_port\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from loopline_dev.rest import AirflowClient\n",
    "import importlib\nimportlib.import_module('loopline_dev.demo')\n",
    "__import__('loopline_dev')\n",
])
def test_every_spelling_of_the_import_is_caught(tmp_path: Path, source: str):
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    assert len(dev_imports(path)) == 1


@pytest.mark.parametrize("source", [
    "import loopline\nfrom loopline.store import PartitionStore\n",  # the core itself
    "from loopline_devices import x\n",
    "from . import loopline_dev\n",  # relative: a sibling module of that name, not the package
    "NAME = 'loopline_dev.stack'\n",
])
def test_names_that_only_look_alike_are_not_flagged(tmp_path: Path, source: str):
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    assert dev_imports(path) == []


def _own_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every absolute import of Loopline's own packages in one file (``name`` is the
    imported attribute of a ``from`` import, which may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = ("loopline", "loopline_dev", "loopline_airflow")
    out: list[tuple[int, str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] in own]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in own:
                out += [(node.lineno, node.module, a.name) for a in node.names]
    return out


def test_every_import_of_our_own_modules_resolves():
    # Lazy imports inside functions are invisible to mypy when a module is missing (ignore_missing_imports) and
    # to tests that never reach that function: a moved or deleted module must not leave one behind.
    import importlib.util

    tops = ("include", "plugins", "dags", "tests", "benchmarks")
    files = sorted(p for top in tops for p in (REPO / top).rglob("*.py"))
    missing = []
    for path in files:
        for line, module, name in _own_imports(path):
            if importlib.util.find_spec(module) is None:
                missing.append(f"{path.relative_to(REPO)}:{line} {module}")
            elif name is not None and name != "*":
                found = hasattr(importlib.import_module(module), name)
                if not found and importlib.util.find_spec(f"{module}.{name}") is None:
                    missing.append(f"{path.relative_to(REPO)}:{line} {module}.{name}")
    assert missing == [], "imports that do not resolve:\n" + "\n".join(missing)
