"""Find, load and check project files; resolve their ``module:function`` references.

Projects live in folders ``<root>/<name>/project.yaml``. The roots are ``include/projects/`` of this package
and every folder listed in ``LOOPLINE_PROJECTS_PATH`` (``os.pathsep``-separated). A broken project file never
hides the others: :func:`discover` returns each project or its error, and the caller (the DAG factory, the CLI)
decides what to do with an error.

Every error is a :class:`ProjectError` naming the file, the key path and what to write instead.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
import threading
import types
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.project.spec import Project

PROJECT_FILE = "project.yaml"
PROJECTS_PATH_ENV = "LOOPLINE_PROJECTS_PATH"
BUILTIN_ROOT = Path(__file__).resolve().parents[2] / "projects"


class ProjectError(ValueError):
    """A project file cannot be used. ``problems`` holds ``(key path, message)`` pairs."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = [f"{key}: {msg}" if key else msg for key, msg in problems]
        if len(lines) == 1:
            text = f"{self.path}: {lines[0]}"
        else:
            text = f"{self.path}: {len(lines)} problems:\n" + "\n".join(f"  - {line}" for line in lines)
        super().__init__(text)


@dataclass(frozen=True)
class Found:
    """One project folder found on the search path: its project, or the error that stops it."""

    path: Path
    project: Project | None = None
    error: ProjectError | None = None


def search_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """``include/projects/`` then every folder of ``LOOPLINE_PROJECTS_PATH``, each once."""
    env = os.environ if environ is None else environ
    roots = [BUILTIN_ROOT]
    for part in env.get(PROJECTS_PATH_ENV, "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser())
    out: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved not in out:
            out.append(resolved)
    return out


def project_files(roots: Iterable[Path]) -> list[Path]:
    """Every ``<root>/<folder>/project.yaml``, sorted within each root."""
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files.extend(sorted(p for p in root.glob(f"*/{PROJECT_FILE}") if p.is_file()))
    return files


def discover(roots: Iterable[Path] | None = None) -> list[Found]:
    """Load every project on the search path; a broken one is returned with its error, never raised.

    Two files declaring the same project name are both errors (neither is used): which one would win is not
    something a user should have to guess.
    """
    found = []
    for path in project_files(search_roots() if roots is None else roots):
        try:
            found.append(Found(path, project=load_file(path)))
        except ProjectError as exc:
            found.append(Found(path, error=exc))
    by_name: dict[str, list[Found]] = {}
    for f in found:
        if f.project is not None:
            by_name.setdefault(f.project.project, []).append(f)
    out = []
    for f in found:
        if f.project is not None and len(by_name[f.project.project]) > 1:
            others = ", ".join(str(o.path) for o in by_name[f.project.project] if o.path != f.path)
            problem = ("project", f"{f.project.project!r} is also declared by {others}; project names must be unique")
            out.append(Found(f.path, error=ProjectError(f.path, [problem])))
        else:
            out.append(f)
    return out


def load_project(name_or_path: str | Path, roots: Iterable[Path] | None = None) -> Project:
    """A project by name (searched on the path) or by the path of its folder or ``project.yaml``."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_dir() or os.sep in str(name_or_path):
        path = candidate / PROJECT_FILE if candidate.is_dir() else candidate
        return load_file(path)
    found = [f for f in discover(roots) if (f.project and f.project.project == str(name_or_path))
             or f.path.parent.name == str(name_or_path)]
    if not found:
        known = sorted(f.project.project for f in discover(roots) if f.project)
        raise LookupError(f"no project named {str(name_or_path)!r} in {[str(r) for r in (roots or search_roots())]}; "
                          f"known projects: {known}. Add its folder to {PROJECTS_PATH_ENV} or give its path")
    if found[0].error is not None:
        raise found[0].error
    assert found[0].project is not None
    return found[0].project


# Projects parsed in this process, by file and text: the DAG file parses every project again in each task
# process, which Airflow forks from a parent that already parsed them (``loopline_airflow.preload``). A project
# is frozen, so one object can be handed out again; a changed file is a new key and is parsed again.
_PARSED_SIZE = 32
_parsed: OrderedDict[tuple[Path, str], Project] = OrderedDict()
_parsed_lock = threading.Lock()


def load_file(path: Path | str) -> Project:
    """Parse and validate one ``project.yaml``; raise :class:`ProjectError` naming every problem."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(path, [("", "no such file; a project folder holds project.yaml")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(path, [("", f"cannot be read: {exc}")]) from exc
    with _parsed_lock:
        if (hit := _parsed.get((path, text))) is not None:
            _parsed.move_to_end((path, text))
            return hit
    project = _parse(path, text)
    with _parsed_lock:
        _parsed[(path, text)] = project
        while len(_parsed) > _PARSED_SIZE:
            _parsed.popitem(last=False)
    return project


def _parse(path: Path, text: str) -> Project:
    import yaml

    # libyaml's safe loader when PyYAML was built with it (the same safe subset, ~10x faster than pure Python).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # a safe loader, chosen above
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProjectError(path, [("", f"is not valid YAML ({where}{problem})")]) from exc
    if not isinstance(data, dict):
        raise ProjectError(path, [("", "must be a mapping of keys (project, start_date, sources, features, models)")])
    return validate(data, path)


def validate(data: Mapping[str, Any], path: Path) -> Project:
    """Validate a parsed project file; errors are translated to key paths and advice."""
    from pydantic import ValidationError

    try:
        project = Project.model_validate(dict(data))
    except ValidationError as exc:
        raise ProjectError(path, [_problem(err) for err in exc.errors()]) from None
    project._path = path
    check_references(project)
    return project


def _problem(err: Mapping[str, Any]) -> tuple[str, str]:
    loc = [str(p) for p in err.get("loc", ())]
    key = ".".join(loc)
    kind = err.get("type", "")
    msg = str(err.get("msg", ""))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, "):]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return key, f"unknown key{hint} (keys allowed here: {', '.join(known)})"
    if kind == "missing":
        return key, "is required"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return key, f"{err.get('input')!r} is not allowed; use one of {expected}"
    # Errors raised by a whole-object check carry their own key path in the message ("models.x.label...: ...").
    if ": " in msg and msg.split(": ", 1)[0].replace("_", "").replace(".", "").isalnum() and "." in msg.split(": ")[0]:
        inner, rest = msg.split(": ", 1)
        return (f"{key}.{inner}" if key else inner), rest
    return key, msg


def _known_keys(loc: list[str]) -> list[str]:
    """Field names of the spec object at ``loc`` (dictionary keys such as model names are stepped over)."""
    from pydantic import BaseModel

    node: Any = Project
    for part in loc:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(part)
            if field is None:
                return []
            node = field.annotation
        elif typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]
        elif typing.get_origin(node) is list:
            node = typing.get_args(node)[0]
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _unwrap(node: Any) -> Any:
    origin = typing.get_origin(node)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(node) if a is not type(None)]
        return args[0] if len(args) == 1 else node
    return node


# -- module:function references -------------------------------------------------------------------------------
def references(project: Project) -> list[tuple[str, str]]:
    """Every ``(key path, "module:function")`` the project names."""
    refs: list[tuple[str, str]] = []
    if project.features.build:
        refs.append(("features.build", project.features.build))
    for name, source in project.sources.items():
        if source.function:
            refs.append((f"sources.{name}.function", source.function))
    for name, model in project.models.items():
        if model.estimator.factory:
            refs.append((f"models.{name}.estimator.factory", model.estimator.factory))
    return refs


def check_references(project: Project) -> None:
    """Each reference's module can be found (without importing it: parsing DAGs must stay cheap)."""
    problems = []
    for key, ref in references(project):
        module = ref.split(":", 1)[0]
        if _project_module_file(project, module) is None and not _installed(module):
            where = f" in {project.folder}" if project.folder else ""
            problems.append((key, f"module {module!r} of {ref!r} is neither a file{where} nor an installed module"))
    if problems:
        raise ProjectError(project.path or Path(project.project), problems)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _project_module_file(project: Project, module: str) -> Path | None:
    if project.folder is None:
        return None
    base = project.folder.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def project_package(project: Project) -> str:
    """The import name under which the project folder's modules are loaded (``loopline_projects.<P>``)."""
    return f"loopline_projects.{project.project}"


def resolve(project: Project, key: str) -> Callable[..., Any]:
    """Import the callable a project key names (``features.build``, ``models.M.estimator.factory``, …).

    A module that is a file of the project folder is imported as ``loopline_projects.<P>.<module>`` (so the
    project's modules can import each other relatively and two projects' ``features.py`` never clash);
    otherwise the module is imported as installed.
    """
    ref = dict(references(project)).get(key)
    if ref is None:
        raise KeyError(f"{project.path}: {key} names no module:function")
    module_name, func_name = ref.split(":", 1)
    path = project.path or Path(project.project)
    try:
        if _project_module_file(project, module_name) is not None:
            module = _import_project_module(project, module_name)
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise ProjectError(path, [(key, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}")]) from exc
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        close = difflib.get_close_matches(func_name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; it defines {names[:12]}"
        raise ProjectError(path, [(key, f"module {module_name!r} has no function {func_name!r}{hint}")])
    return typing.cast(Callable[..., Any], func)


def _import_project_module(project: Project, module: str) -> types.ModuleType:
    assert project.folder is not None
    root = "loopline_projects"
    if root not in sys.modules:
        pkg = types.ModuleType(root)
        pkg.__path__ = []
        sys.modules[root] = pkg
    package = project_package(project)
    existing = sys.modules.get(package)
    if existing is None or list(getattr(existing, "__path__", [])) != [str(project.folder)]:
        for name in [n for n in sys.modules if n.startswith(package + ".")]:
            del sys.modules[name]  # another folder's project of the same name was loaded before
        spec = importlib.util.spec_from_file_location(package, project.folder / "__init__.py",
                                                      submodule_search_locations=[str(project.folder)])
        assert spec is not None
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[package] = pkg
        if (project.folder / "__init__.py").is_file():
            assert spec.loader is not None
            spec.loader.exec_module(pkg)
    return importlib.import_module(f"{package}.{module}")
