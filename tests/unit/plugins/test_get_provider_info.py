"""The provider info is what Airflow 3.3 accepts, and every class or module it names imports."""

from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path

import pytest
from loopline_airflow.get_provider_info import get_provider_info

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def _airflow_schema(name: str) -> dict:
    import airflow

    return json.loads((Path(airflow.__file__).parent / name).read_text())


def test_valid_against_airflows_runtime_schema():
    import jsonschema

    jsonschema.validate(get_provider_info(), _airflow_schema("provider_info.schema.json"))


def test_connection_types_valid_against_the_stricter_provider_yaml_schema():
    # The runtime schema does not look inside ui-field-behaviour / conn-fields; provider.yaml's schema does,
    # and the providers manager reads them as that schema describes.
    import jsonschema

    schema = _airflow_schema("provider.yaml.schema.json")["properties"]["connection-types"]
    jsonschema.validate(get_provider_info()["connection-types"], schema)


def test_package_name_and_version_match_the_distribution():
    # Airflow refuses a provider whose package-name is not the installed distribution's name.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    info = get_provider_info()
    assert info["package-name"] == project["name"]
    assert info["versions"] == [project["version"]]


def test_entry_points_name_the_provider_info_and_the_plugin():
    eps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    assert eps["apache_airflow_provider"] == {"provider_info": "loopline_airflow.get_provider_info:get_provider_info"}
    assert eps["airflow.plugins"] == {"loopline": "loopline_airflow.plugin:LooplinePlugin"}


def _modules(info: dict) -> list[str]:
    return [m for key in ("hooks", "operators", "sensors", "triggers") for item in info.get(key, [])
            for m in item["python-modules"]]


def test_every_module_and_class_imports():
    info = get_provider_info()
    for module in _modules(info):
        importlib.import_module(module)
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.conn_type == conn["connection-type"] and hook.hook_name == conn["hook-name"]
    from airflow.sdk import BaseOperatorLink
    from loopline_airflow.links import LINK_CLASSES

    links = []
    for path in info["extra-links"]:
        module, _, cls = path.rpartition(".")
        links.append(getattr(importlib.import_module(module), cls))
    assert all(issubclass(link, BaseOperatorLink) for link in links)
    assert set(links) == set(LINK_CLASSES)  # every link class is registered
    integrations = {i["integration-name"] for i in info["integrations"]}
    assert {item["integration-name"] for key in ("hooks", "operators", "sensors", "triggers")
            for item in info[key]} <= integrations


def test_every_operator_sensor_trigger_module_is_listed():
    listed = set(_modules(get_provider_info()))
    pkg = REPO / "plugins" / "loopline_airflow"
    for kind in ("operators", "sensors", "triggers"):
        for path in (pkg / kind).glob("*.py"):
            if path.stem != "__init__":
                assert f"loopline_airflow.{kind}.{path.stem}" in listed


def test_declared_form_matches_the_hooks_field_behaviour():
    from loopline_airflow.hooks.mlflow import MLflowHook

    [conn] = get_provider_info()["connection-types"]
    declared = conn["ui-field-behaviour"]
    hook = MLflowHook.get_ui_field_behaviour()
    assert declared == {"hidden-fields": hook["hidden_fields"], "relabeling": hook["relabeling"],
                        "placeholders": hook["placeholders"]}
    # conn-fields are the extras the hook reads (stored under their own names in Connection.extra)
    assert set(conn["conn-fields"]) == {"tracking_uri", "token"}


def test_the_providers_manager_reads_the_form_from_the_provider_info(monkeypatch: pytest.MonkeyPatch):
    """Airflow's own code path: load_ui_metadata turns the declaration into field behaviours and widgets."""
    from airflow.providers_manager import ProviderInfo, ProvidersManager

    # A manager of its own, not the process-wide singleton (its __init__ runs once per process): nothing leaks.
    monkeypatch.setattr(ProvidersManager, "_initialized", False)
    pm = object.__new__(ProvidersManager)
    ProvidersManager.__init__(pm)
    pm._provider_dict = {"loopline": ProviderInfo("0.1.0", get_provider_info())}
    pm._load_ui_metadata()
    assert pm._hook_name_dict["mlflow"] == "MLflow"
    assert pm._field_behaviours["mlflow"]["relabeling"]["host"] == "Tracking URI or host"
    assert pm._connection_form_widgets["extra__mlflow__token"].is_sensitive
    assert pm._connection_form_widgets["extra__mlflow__tracking_uri"].field_name == "tracking_uri"
