"""The built wheel is an Airflow provider: Airflow's own CLI finds Loopline, the ``mlflow`` connection type and the
plugin from the installed package alone.

The wheel is installed with ``--no-deps --target`` into a temporary folder, and Airflow runs from the project's
environment with ``python -S``: its site-packages are put on the path as a plain folder, so no ``.pth`` file runs
and the editable install's ``include/`` and ``plugins/`` (and this checkout) are not on the path. A fresh virtual
environment would prove the same but install 360 packages; this takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_CLI = "import sys; from airflow.__main__ import main; sys.argv = ['airflow', *sys.argv[1:]]; main()"
PLUGINS = (
    "import json; from airflow import plugins_manager as pm; plugins, errors = pm._get_plugins();"
    "print('RESULT ' + json.dumps({'plugins': [[p.name, str(p.source)] for p in plugins], 'errors': errors}))"
)


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".loopline" / "bootstrap" / "bin" / "uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed (make install bootstraps it)")
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist, target = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("target")
    uv = _uv()
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(dist), str(REPO)], check=True, capture_output=True,
                   timeout=300)
    [wheel] = dist.glob("loopline-*.whl")
    subprocess.run([uv, "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel),
                    "--python", sys.executable], check=True, capture_output=True, timeout=300)
    return target


def _site_view(installed: Path) -> str:
    """The environment's site-packages without the project's own (editable) distribution: links to every other
    entry, so the only ``loopline`` Airflow finds, with its entry points, is the wheel's."""
    view = installed.parent / f"{installed.name}-site"
    if not view.exists():
        view.mkdir()
        for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
            if not entry.name.startswith(("loopline-", "_editable_impl_loopline", "loopline.")):
                (view / entry.name).symlink_to(entry)
    return str(view)


def _run(installed: Path, tmp_path: Path, *args: str, plugins_folder: Path | None = None) -> str:
    home = tmp_path / "airflow"
    (home / "plugins").mkdir(parents=True, exist_ok=True)
    site = _site_view(installed)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder or home / "plugins"),
        "PYTHONPATH": os.pathsep.join([str(installed), site]),
    }
    out = subprocess.run([sys.executable, "-S", "-c", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _json(stdout: str) -> list[dict]:
    return json.loads([line for line in stdout.splitlines() if line.startswith("[")][-1])


def test_the_checkout_is_not_on_the_path(installed: Path, tmp_path: Path):
    code = ("import loopline, loopline_airflow, sys; print('RESULT', loopline.__file__, loopline_airflow.__file__, "
            "any('/include' in p or '/plugins' in p for p in sys.path))")
    out = _run(installed, tmp_path, code)
    [line] = [line for line in out.splitlines() if line.startswith("RESULT ")]
    _, core, layer, checkout_on_path = line.split()
    assert core.startswith(str(installed)) and layer.startswith(str(installed)) and checkout_on_path == "False"


def test_the_wheel_ships_the_core_and_the_airflow_layer_but_not_the_dev_tooling(installed: Path):
    shipped = {p.name for p in installed.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")}
    assert {"loopline", "loopline_airflow"} <= shipped
    assert "loopline_dev" not in shipped, shipped  # stack supervisor, demo driver, REST client: a checkout's tools


def test_airflow_lists_the_provider_and_the_mlflow_connection_type(installed: Path, tmp_path: Path):
    providers = _json(_run(installed, tmp_path, AIRFLOW_CLI, "providers", "list", "-o", "json"))
    assert {"package_name": "loopline", "version": "0.1.0"}.items() <= next(
        p for p in providers if p["package_name"] == "loopline").items()
    hooks = _json(_run(installed, tmp_path, AIRFLOW_CLI, "providers", "hooks", "-o", "json"))
    mlflow = next(h for h in hooks if h["connection_type"] == "mlflow")
    assert mlflow["class"] == "loopline_airflow.hooks.mlflow.MLflowHook" and mlflow["package_name"] == "loopline"
    behaviours = _json(_run(installed, tmp_path, AIRFLOW_CLI, "providers", "behaviours", "-o", "json"))
    assert any("mlflow" in json.dumps(b) for b in behaviours)


def test_airflow_lists_the_extra_links(installed: Path, tmp_path: Path):
    # The providers manager imports each class named under extra-links and keeps only those that import.
    links = _json(_run(installed, tmp_path, AIRFLOW_CLI, "providers", "links", "-o", "json"))
    names = {link["extra_link_class_name"] for link in links}
    assert {f"loopline_airflow.links.{cls}" for cls in ("MLflowRunLink", "MLflowModelVersionLink", "DriftReportLink",
                                                        "ValidationResultLink")} <= names


def test_the_plugin_loads_once_from_the_entry_point(installed: Path, tmp_path: Path):
    # With the project's own plugins folder too (as `make stack` and the Docker image run it): the folder's
    # module stands aside, so Airflow reports no "already registered" import error.
    for folder in (None, REPO / "plugins"):
        out = _run(installed, tmp_path, PLUGINS, plugins_folder=folder)
        result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
        loopline = [p for p in result["plugins"] if p[0] == "loopline"]
        assert len(loopline) == 1 and "loopline_airflow.plugin:LooplinePlugin" in loopline[0][1], result
        assert result["errors"] == {}, result
