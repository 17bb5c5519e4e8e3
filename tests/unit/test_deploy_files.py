"""Static checks of docker-compose.yaml and the Dockerfile (no Docker engine runs on these machines)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init"}
# The secrets .env holds, and which service gets which (each service lists its own; none gets the whole file).
ENV_SECRETS = {"POSTGRES_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
               "AIRFLOW__API__SECRET_KEY", "AIRFLOW_ADMIN_PASSWORD", "MLFLOW_ADMIN_PASSWORD",
               "MLFLOW_FLASK_SERVER_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "AIRFLOW_CONN_AWS_DEFAULT",
               "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"}
AIRFLOW_SECRETS = {"POSTGRES_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                   "AIRFLOW__API__SECRET_KEY"}
STORE_CONNECTIONS = {"AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"}
SECRETS_OF_SERVICE = {
    "postgres": {"POSTGRES_PASSWORD"},
    "redis": set(),
    "mlflow": {"POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"},
    "airflow-init": AIRFLOW_SECRETS | {"AIRFLOW_ADMIN_PASSWORD"},
    "airflow-apiserver": AIRFLOW_SECRETS,
    "airflow-scheduler": AIRFLOW_SECRETS,
    "airflow-dag-processor": AIRFLOW_SECRETS,
    "airflow-triggerer": AIRFLOW_SECRETS | STORE_CONNECTIONS,
    "airflow-worker": AIRFLOW_SECRETS | STORE_CONNECTIONS | {"MLFLOW_ADMIN_PASSWORD"},
    "flower": AIRFLOW_SECRETS,
}


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
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")


def test_compose_keeps_secrets_in_env_file(compose: dict) -> None:
    text = (REPO / "docker-compose.yaml").read_text()
    for name, service in compose["services"].items():  # every secret is set from .env, never written here
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"FERNET_KEY|JWT_SECRET|SECRET_KEY|PASSWORD$", key):
                assert str(value).startswith("${"), f"{name}: {key} must come from .env"
    assert "${POSTGRES_PASSWORD}" in text
    example = (REPO / ".env.example").read_text()
    for key in ENV_SECRETS - {"AWS_SECRET_ACCESS_KEY", "AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"}:
        assert f"\n{key}=" in example, key
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
    from loopline_dev.stack import Stack, StackConfig

    return Stack(StackConfig.production(tmp_path, workers=2, concurrency=2), Settings(home=tmp_path))


def test_process_topology_has_every_compose_service(compose: dict, tmp_path: Path) -> None:
    from loopline_dev.stack import COMPOSE_SERVICES

    stack = _production_stack(tmp_path)
    assert set(compose["services"]) == set(COMPOSE_SERVICES)
    components = set(stack.components)
    for service, process in COMPOSE_SERVICES.items():
        if process.endswith("-*"):
            assert {c for c in components if c.startswith(process[:-1])} == set(stack.config.worker_names)
        elif service.startswith(("airflow-", "mlflow")) and service != "airflow-init":
            assert process in components, service
    assert stack.config.celery_workers == compose["services"]["airflow-worker"]["deploy"]["replicas"]
    assert compose["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
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


# -- secrets: each service gets only its own; MLflow behind authentication in both topologies ---------------
def _secrets_referenced(service: dict) -> set[str]:
    """The .env secrets a service receives: those its environment and command interpolate."""
    text = yaml.safe_dump({"environment": service.get("environment"), "command": service.get("command")})
    return {name for name in re.findall(r"\$\{(\w+)", text) if name in ENV_SECRETS}


def test_each_compose_service_gets_only_the_secrets_it_needs(compose: dict) -> None:
    services = compose["services"]
    assert set(SECRETS_OF_SERVICE) == set(services)
    for name, service in services.items():
        assert "env_file" not in service, f"{name} must not get the whole .env"
        assert _secrets_referenced(service) == SECRETS_OF_SERVICE[name], name
    mlflow = services["mlflow"]["environment"]
    assert not [k for k in mlflow if k.startswith("AIRFLOW")], "the mlflow service gets nothing of Airflow's"
    worker = services["airflow-worker"]["environment"]
    # The workers get the MLflow user's credentials, never the auth app's own configuration or database.
    assert worker["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert worker["MLFLOW_TRACKING_PASSWORD"] == "${MLFLOW_ADMIN_PASSWORD:?set MLFLOW_ADMIN_PASSWORD in .env}"
    conn = json.loads(worker["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    assert conn == {"conn_type": "mlflow", "host": "http://mlflow:5000", "login": "admin",
                    "password": "${MLFLOW_ADMIN_PASSWORD}"}
    for name in AIRFLOW_SERVICES | {"flower"}:
        env = services[name]["environment"]
        assert not [k for k in env if k.startswith(("MLFLOW_AUTH", "PGPASSWORD"))], name
        if name != "airflow-worker":
            assert not [k for k in env if k.startswith("MLFLOW_TRACKING_") or k == "AIRFLOW_CONN_MLFLOW_DEFAULT"], name


def test_mlflow_runs_basic_auth_with_its_database_url_out_of_the_command_line(compose: dict, tmp_path: Path) -> None:
    service = compose["services"]["mlflow"]
    command = service["command"]
    assert "--app-name basic-auth" in command
    assert "postgres" not in command and "${" not in command, "no URL or secret where `ps` shows it"
    env = service["environment"]
    ini = env["MLFLOW_AUTH_CONFIG_PATH"]
    assert ini.startswith("/opt/loopline/include/")  # the Dockerfile copies include/ there
    text = (REPO / ini.removeprefix("/opt/loopline/")).read_text()
    database = re.search(r"^database_uri = (\S+)$", text, re.M)
    assert database and database.group(1) == "postgresql+psycopg2://airflow@postgres/mlflow_auth"  # no password
    assert "admin_password" not in text and env["PGPASSWORD"] == "${POSTGRES_PASSWORD}"
    assert "CREATE DATABASE mlflow_auth" in (REPO / "include/docker/postgres-init.sql").read_text()
    # The process topology runs the same server the same way.
    stack = _production_stack(tmp_path)
    args, stack_env = stack.command("mlflow")
    assert " ".join(args[args.index("--app-name"):][:2]) == "--app-name basic-auth"
    assert "--backend-store-uri" not in args and "--artifacts-destination" not in args
    mlflow_keys = {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_AUTH_CONFIG_PATH",
                   "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"}
    assert mlflow_keys <= set(env) and mlflow_keys <= set(stack_env)
    assert not [k for k in stack_env if k.startswith("AIRFLOW")]
    worker_keys = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AIRFLOW_CONN_MLFLOW_DEFAULT"}
    assert worker_keys <= set(stack.command("celery-worker-1")[1])
    assert not worker_keys & set(stack.command("scheduler")[1])


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
