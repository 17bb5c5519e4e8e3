"""The Loopline FastAPI app the api-server mounts at ``/loopline``.

Apps mounted through a plugin's ``fastapi_apps`` get none of the Airflow API's security: every route here depends
on Airflow's own ``requires_access_dag(method="GET")`` (``airflow.api_fastapi.core_api.security``), which reads the
JWT from the ``Authorization: Bearer`` header or, as the browser sends it, the ``_token`` cookie the Airflow UI
sets, and asks the configured auth manager whether the user may read DAGs. No token: 401; a token the auth
manager refuses: 403.

Routes:

- ``GET /`` — the page (HTML);
- ``GET /api/models`` — the same data as JSON;
- ``GET /reports/{project}/{model}/{ds}.html`` — one day's drift report page, from the store;
- ``GET /validation/{project}/{ds}.html`` (and ``.json``) — one features day's validation result.

``/`` and ``/api/models`` take the filter of the DAG and DAG-run tabs as query parameters: ``dag_id``,
``run_id``, ``project``, ``model``, ``ds`` (:mod:`loopline_airflow.ui.filters`). With ``dag_id``, Airflow's
``requires_access_dag`` reads it too and authorizes read access to *that* DAG (as its own DAG routes do).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from loopline_airflow.ui import filters
from loopline_airflow.ui.data import Sources, TTLCache, overview
from loopline_airflow.ui.html import render_message, render_page

if TYPE_CHECKING:
    from loopline.project.spec import Project

URL_PREFIX = "/loopline"
# The stored report pages are Loopline's own (inline CSS and SVG, no script); the header keeps it that way.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
REPORT_HTML_CACHE = TTLCache(maxsize=64, ttl=300.0)


def _prefix(request: Request) -> str:
    """The path the app is mounted at (``/loopline``, behind any base path of the api-server)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _project(sources: Sources, name: str) -> Project | None:
    return next((f.project for f in sources.projects() if f.project is not None and f.project.project == name), None)


def create_app(sources: Sources | None = None,
               run_days: Callable[[str, str], list[str] | None] = filters.run_days_from_db) -> FastAPI:
    """The app; ``sources`` say where to read (default: the DAGs' projects, store and MLflow connection),
    ``run_days`` where a DAG run's days are read (default: Airflow's metadata DB)."""
    src = sources or Sources()
    app = FastAPI(
        title="Loopline", docs_url=None, redoc_url=None, openapi_url=None,
        dependencies=[Depends(requires_access_dag(method="GET"))],
    )

    def filtered(flt: filters.PageFilter) -> dict[str, Any]:
        if flt.dag_id and flt.project is None:  # not a Loopline DAG: nothing of it to show
            return {"projects": [], "message": flt.message, "filter": flt.as_dict()}
        if not flt.active:
            return overview(src)
        return filters.apply(overview(filters.filtered_sources(src, flt)), flt, src)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, dag_id: str | None = None, run_id: str | None = None, project: str | None = None,
             model: str | None = None, ds: str | None = None) -> HTMLResponse:
        flt = filters.resolve(dag_id, run_id, project, model, ds, run_days=run_days)
        prefix = _prefix(request)
        return HTMLResponse(render_page(filtered(flt), prefix, notice_html=filters.banner(flt, prefix)))

    @app.get("/api/models")
    def models(dag_id: str | None = None, run_id: str | None = None, project: str | None = None,
               model: str | None = None, ds: str | None = None) -> JSONResponse:
        return JSONResponse(filtered(filters.resolve(dag_id, run_id, project, model, ds, run_days=run_days)))

    @app.get("/validation/{project}/{ds}.html", response_class=HTMLResponse)
    def validation_html(project: str, ds: str) -> HTMLResponse:
        from loopline_airflow.ui.validation import validation_result

        status, body, _ = validation_result(src, project, ds)
        return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": REPORT_CSP})

    @app.get("/validation/{project}/{ds}.json")
    def validation_json(project: str, ds: str) -> Response:
        from loopline_airflow.ui.validation import validation_result

        status, body, raw = validation_result(src, project, ds)
        if raw is None:
            return HTMLResponse(body, status_code=404 if status == 200 else status)
        return Response(raw, media_type="application/json")

    @app.get("/reports/{project}/{model}/{ds}.html", response_class=HTMLResponse)
    def report_html(project: str, model: str, ds: str) -> HTMLResponse:
        return _report_html(src, project, model, ds)

    return app


def _report_html(src: Sources, project_name: str, model: str, ds: str) -> HTMLResponse:
    from loopline.project.names import model_names
    from loopline.reports import REPORT_HTML, REPORTS_KIND

    title = f"Drift report {project_name}.{model} {ds}"
    try:
        day = dt.date.fromisoformat(ds)
    except ValueError:
        return HTMLResponse(render_message(title, f"{ds!r} is not a day (YYYY-MM-DD)"), status_code=404)
    try:
        project = _project(src, project_name)
    except Exception as exc:
        return HTMLResponse(render_message(title, f"projects could not be listed: {exc}"), status_code=503)
    if project is None or model not in project.models:
        return HTMLResponse(render_message(title, f"no model {model!r} in a project {project_name!r}"),
                            status_code=404)
    names = model_names(project, model)
    fsv = str(project.features.version)
    try:
        store = src.store()

        def read() -> bytes:
            return store.read_side_file(REPORTS_KIND, names.drift_dataset, fsv, day, REPORT_HTML)

        body: bytes = REPORT_HTML_CACHE.get_or_set((store.root, names.drift_dataset, fsv, day.isoformat()), read)
    except FileNotFoundError:
        return HTMLResponse(render_message(title, f"no drift report page for {day} (v={fsv})"), status_code=404)
    except Exception as exc:
        return HTMLResponse(render_message(title, f"the report could not be read: {type(exc).__name__}: {exc}"),
                            status_code=503)
    return HTMLResponse(body.decode("utf-8", errors="replace"), headers={"Content-Security-Policy": REPORT_CSP})


@functools.cache
def fastapi_app() -> dict[str, Any]:
    """The plugin's ``fastapi_apps`` entry: one app per process."""
    return {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Loopline"}
