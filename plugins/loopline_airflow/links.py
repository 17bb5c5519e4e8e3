"""Operator extra links: from a Loopline task to its MLflow run and model version, its drift report, its
validation result.

How Airflow 3 shows them: when a task instance finishes (success or failure), the task runner calls each link's
``get_link(operator, ti_key=<the running task instance>)`` *in the worker* and stores the URL in XCom under
``link.xcom_key`` (``_link_<ClassName>``); the DAG's serialization records only ``{name: xcom_key}``, and the
api-server answers ``GET .../taskInstances/{task}/links`` from that XCom. So a link is computed once, where the
task ran, from what the task returned (its ``return_value`` XCom) and, for the page links, from its DAG id read
back through :func:`loopline.project.names.parse_dag_id`:

==========================  ==========================  ================================================
link (button)               tasks                       URL
==========================  ==========================  ================================================
``MLflow run``              ``train_challenger``,       ``<mlflow>/#/runs/<run_id>``
                            ``promote``
``MLflow model version``    ``train_challenger``,       ``<mlflow>/#/models/<name>/versions/<version>``
                            ``promote``, ``rollback``
``Drift report``            ``check_drift``             ``<airflow>/loopline/reports/P/M/<day>.html`` (the
                                                        newest day the run checked)
``Validation result``       ``build_features``          ``<airflow>/loopline/validation/P/<day>.html``
==========================  ==========================  ================================================

``<mlflow>`` is the MLflow connection's (or the settings') tracking URI when it is an ``http(s)`` server, with
any user info, query and fragment removed (a password never reaches a link); a local ``sqlite:``/``file:``
tracking URI has no UI and gives no MLflow link. ``<airflow>`` is ``[api] base_url`` (relative ``/`` when
unset, as Airflow's own links). A link that cannot be made (the task failed before it returned, no UI) is
empty, which the UI shows as no link.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)

URL_PREFIX = "/loopline"  # where the plugin mounts the page (loopline_airflow.plugin.URL_PREFIX)


# -- URL pieces ---------------------------------------------------------------------------------------------
def mlflow_ui_url(tracking_uri: str) -> str | None:
    """The MLflow UI's base URL for a tracking URI: ``http(s)://host[:port][/path]`` without user info, query or
    fragment; None for a tracking URI that is not a server (``sqlite:``, ``file:``, a path)."""
    parts = urlsplit(tracking_uri.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def mlflow_run_url(base: str, run_id: str) -> str:
    return f"{base}/#/runs/{quote(run_id, safe='')}"


def mlflow_model_version_url(base: str, name: str, version: str) -> str:
    return f"{base}/#/models/{quote(name, safe='')}/versions/{quote(str(version), safe='')}"


def airflow_base_url() -> str:
    """``[api] base_url`` without a trailing slash ("" when unset: links are then relative to the UI's host)."""
    from airflow.configuration import conf

    return str(conf.get("api", "base_url", fallback="") or "").rstrip("/")


def report_path(project: str, model: str, day: str) -> str:
    """Path of one day's drift report page under the api-server (the route of :mod:`loopline_airflow.ui.app`)."""
    return f"{URL_PREFIX}/reports/{quote(project, safe='')}/{quote(model, safe='')}/{quote(day, safe='')}.html"


def validation_path(project: str, day: str) -> str:
    """Path of one day's features validation result page under the api-server."""
    return f"{URL_PREFIX}/validation/{quote(project, safe='')}/{quote(day, safe='')}.html"


# -- what the task left behind ------------------------------------------------------------------------------
def task_result(ti_key: TaskInstanceKey) -> Mapping[str, Any]:
    """The task's ``return_value`` XCom as a mapping ({} when it returned nothing, e.g. it failed)."""
    from airflow.sdk.execution_time.xcom import XCom

    value = XCom.get_value(ti_key=ti_key, key="return_value")
    return value if isinstance(value, Mapping) else {}


def _mlflow_base(operator: BaseOperator) -> str | None:
    from loopline_airflow.hooks.mlflow import MLflowHook

    conn_id = str(getattr(operator, "mlflow_conn_id", None) or MLflowHook.default_conn_name)
    return mlflow_ui_url(MLflowHook(conn_id, retry_attempts=1).get_tracking_uri())


def _dag_name(ti_key: TaskInstanceKey) -> Any:
    from loopline.project.names import parse_dag_id

    return parse_dag_id(ti_key.dag_id)


# -- the links ----------------------------------------------------------------------------------------------
class MLflowRunLink(BaseOperatorLink):
    """The MLflow run that trained the task's model version (``run_id``, or the gate's ``candidate_run_id``)."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        result = task_result(ti_key)
        run_id = result.get("run_id") or result.get("candidate_run_id")
        if not run_id:
            return ""
        base = _mlflow_base(operator)
        return mlflow_run_url(base, str(run_id)) if base else ""


class MLflowModelVersionLink(BaseOperatorLink):
    """The registered model version the task trained, judged or made champion."""

    name = "MLflow model version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        result = task_result(ti_key)
        name = result.get("model_name") or result.get("name") or getattr(operator, "model_name", None)
        version = result.get("candidate_version") or result.get("version")
        if not (name and version):
            return ""
        base = _mlflow_base(operator)
        return mlflow_model_version_url(base, str(name), str(version)) if base else ""


class DriftReportLink(BaseOperatorLink):
    """The HTML drift report of the newest day the drift task checked, served by the Loopline page."""

    name = "Drift report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        dag = _dag_name(ti_key)
        if dag is None or dag.model is None:
            return ""
        days = sorted(str(r["ds"]) for r in task_result(ti_key).get("reports") or []
                      if isinstance(r, Mapping) and r.get("ds"))
        if not days:
            return ""
        return airflow_base_url() + report_path(dag.project, dag.model, days[-1])


class ValidationResultLink(BaseOperatorLink):
    """The features day's validation result (the stored GX result of a failing day, or the verdict of a passing
    one), served by the Loopline page. The day is the one the task returned, or, when it failed before returning
    (a failed suite), the day it worked on (:func:`loopline_airflow.project_tasks.run_day`)."""

    name = "Validation result"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        dag = _dag_name(ti_key)
        if dag is None:
            return ""
        day = task_result(ti_key).get("ds") or _run_day(ti_key)
        return airflow_base_url() + validation_path(dag.project, str(day)) if day else ""


def _run_day(ti_key: Any) -> str | None:
    """The day of the running task instance (the task runner passes it as ``ti_key``), or None."""
    get_context = getattr(ti_key, "get_template_context", None)
    if get_context is None:
        return None
    from loopline_airflow.project_tasks import run_day

    try:
        day: dt.date = run_day(get_context())
    except Exception as exc:  # no day to link to (a run without data interval nor params.ds)
        log.info("no validation link: %s", exc)
        return None
    return day.isoformat()


LINK_CLASSES = (MLflowRunLink, MLflowModelVersionLink, DriftReportLink, ValidationResultLink)
