"""Static checks of docker-compose.yaml and the Dockerfile (no Docker engine runs on these machines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return dict(yaml.safe_load((REPO / "docker-compose.yaml").read_text()))


def test_compose_has_the_production_topology(compose: dict) -> None:
    services = compose["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis", "mlflow"} <= set(services)
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert "healthcheck" in services[name], name
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert "--backend-store-uri postgresql" in services["mlflow"]["command"]


def test_compose_keeps_secrets_in_env_file(compose: dict) -> None:
    text = (REPO / "docker-compose.yaml").read_text()
    for key in ("FERNET_KEY", "JWT_SECRET", "SECRET_KEY"):
        assert not re.search(rf"{key}:\s*\S", text), f"{key} must come from .env"
    assert "${POSTGRES_PASSWORD}" in text
    example = (REPO / ".env.example").read_text()
    for key in ("POSTGRES_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert f"{key}=" in example
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{port} must publish on loopback only"


def test_dockerfile_builds_on_the_official_image_with_the_lock() -> None:
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/airflow:(\S+)$", text, re.M)
    assert base and re.fullmatch(r"3\.3\.\d+-python3\.11", base.group(1))
    assert "uv.lock" in text and "--frozen" in text
    version = re.search(r'name = "apache-airflow"\nversion = "([^"]+)"', (REPO / "uv.lock").read_text())
    assert version and base.group(1).startswith(version.group(1)), "image and lock must pin the same Airflow"


# -- docker-compose.yaml and the process topology (`make stack`) stay one topology -------------------------
def _production_stack(tmp_path: Path):  # type: ignore[no-untyped-def]
    from loopline.settings import Settings
    from loopline.stack import Stack, StackConfig

    return Stack(StackConfig.production(tmp_path, workers=2, concurrency=2), Settings(home=tmp_path))


def test_process_topology_has_every_compose_service(compose: dict, tmp_path: Path) -> None:
    from loopline.stack import COMPOSE_SERVICES

    stack = _production_stack(tmp_path)
    assert set(compose["services"]) == set(COMPOSE_SERVICES)
    components = set(stack.components)
    for service, process in COMPOSE_SERVICES.items():
        if process.endswith("-*"):
            assert {c for c in components if c.startswith(process[:-1])} == set(stack.config.worker_names)
        elif service.startswith(("airflow-", "mlflow")) and service != "airflow-init":
            assert process in components, service
    assert stack.config.celery_workers == compose["services"]["airflow-worker"]["deploy"]["replicas"]
    assert "--backend-store-uri postgresql" in compose["services"]["mlflow"]["command"]
    assert stack.config.mlflow_backend.startswith("postgresql") and stack.config.metadata_db.startswith("postgresql")


def test_process_topology_sets_the_same_airflow_configuration(compose: dict, tmp_path: Path) -> None:
    stack = _production_stack(tmp_path)
    env = stack.env()
    common = compose["x-airflow-common"]["environment"]
    keys = [k for k in common if k.startswith(("AIRFLOW__", "LOOPLINE_")) and k != "LOOPLINE_PRELOAD"]
    assert keys
    for key in keys:
        assert key in env, f"{key} is set in docker-compose.yaml but not by the process topology"
        value = str(common[key])
        if "://" in value:  # an address: hosts differ (service names vs loopback), the kind of server must not
            assert _scheme(env[key]) == _scheme(value), key
        elif value.startswith("/"):  # a file in the container vs in the stack's home: each has its own
            assert env[key].startswith(str(tmp_path)), key
        elif "${" not in value:
            assert env[key] == value, f"{key}: compose {value!r}, process topology {env[key]!r}"
    # Which process is warmed with the heavy libraries (it forks the task processes): the workers, not the scheduler.
    services = compose["services"]
    assert services["airflow-worker"]["environment"]["LOOPLINE_PRELOAD"] == "1"
    assert stack.command("celery-worker-1")[1]["LOOPLINE_PRELOAD"] == "1"
    assert common["LOOPLINE_PRELOAD"] == "0"
    assert stack.command("scheduler")[1]["LOOPLINE_PRELOAD"] == "0"


def _scheme(url: str) -> str:
    """``db+postgresql+psycopg2://…`` → ``db+postgresql``: the kind of server, without the driver."""
    scheme = url.partition("://")[0]
    return scheme.removesuffix("+psycopg2")


def test_compose_admin_password_comes_from_env_file_and_is_never_generated(compose: dict) -> None:
    common = compose["x-airflow-common"]["environment"]
    path = common["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    init = "\n".join(compose["services"]["airflow-init"]["command"])
    assert "AIRFLOW_ADMIN_PASSWORD:?" in init  # init refuses to run without it
    assert f"> {path}" in init and "umask 077" in init
    assert path.startswith("/opt/loopline/state/")  # the volume every Airflow service mounts
    assert "loopline-state:/opt/loopline/state" in compose["x-airflow-common"]["volumes"]
    assert "AIRFLOW_ADMIN_PASSWORD=" in (REPO / ".env.example").read_text()


# -- no Loopline process lets MLflow unpickle a model artifact ------------------------------------------------
PICKLE_FLAG = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def test_every_process_forbids_mlflow_pickle_deserialization(compose: dict, tmp_path: Path) -> None:
    assert compose["x-airflow-common"]["environment"][PICKLE_FLAG] == "false"
    for name, service in compose["services"].items():
        if service.get("image") == compose["x-airflow-common"]["image"]:  # every Loopline container
            assert service["environment"][PICKLE_FLAG] == "false", name
    assert re.search(rf"^\s*{PICKLE_FLAG}=false\b", (REPO / "Dockerfile").read_text(), re.M)
    stack = _production_stack(tmp_path)
    assert stack.env()[PICKLE_FLAG] == "false"
    for component in stack.components:  # airflow components, celery workers, the mlflow server
        assert stack.command(component)[1][PICKLE_FLAG] == "false", component


def test_importing_loopline_forbids_it_unless_the_environment_decided() -> None:
    import os
    import subprocess
    import sys

    code = "import os, loopline; print(os.environ['MLFLOW_ALLOW_PICKLE_DESERIALIZATION'])"
    env = {k: v for k, v in os.environ.items() if k != PICKLE_FLAG}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "false"
    out = subprocess.run([sys.executable, "-c", code], env={**env, PICKLE_FLAG: "true"}, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "true"  # an explicit operator choice is kept
