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
