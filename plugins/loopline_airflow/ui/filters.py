"""The Loopline page filtered to one DAG's project and model, and to one DAG run's days: the DAG and DAG-run tabs.

The tabs open ``/loopline/?dag_id={DAG_ID}`` and ``/loopline/?dag_id={DAG_ID}&run_id={RUN_ID}`` (the UI fills
the placeholders). The DAG id is read back through :func:`loopline.project.names.parse_dag_id` (``P.features``:
every model of P; ``P.M.<step>``: model M); a DAG id outside that scheme is "not a Loopline DAG" (Airflow 3.3
shows plugin tabs on every DAG, so the page says so instead of failing). ``project``, ``model`` and ``ds`` may
also be given directly.

A run's days come from the run itself, read from Airflow's metadata DB inside the api-server
(:func:`run_days_from_db`): the days its Params name (``ds``, ``start_ds``..``end_ds``, ``as_of``), else its
partition key when it is a day, else the days the asset events that triggered it carry (``ds`` / ``days``, as
the score and drift tasks read them), else the start of its data interval (a scheduled features run). The
decisions shown for a retrain or rollback run are the ones that run made.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.project.loader import Found

    from loopline_airflow.ui.data import Sources

MAX_RUN_DAYS = 366
"""Days of a manual range a run filter lists at most."""


@dataclasses.dataclass(frozen=True)
class PageFilter:
    """What the page is narrowed to; ``message`` says why it shows nothing (a DAG that is not Loopline's)."""

    dag_id: str | None = None
    run_id: str | None = None
    project: str | None = None
    model: str | None = None
    days: tuple[str, ...] = ()
    decisions_of_run: bool = False
    message: str | None = None

    @property
    def active(self) -> bool:
        return any((self.dag_id, self.run_id, self.project, self.model, self.days))

    def as_dict(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "run_id": self.run_id, "project": self.project, "model": self.model,
                "days": list(self.days), "message": self.message}


def _day(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def days_of_run(conf: Mapping[str, Any] | None, partition_key: str | None, event_extras: Iterable[Any],
                data_interval_start: dt.datetime | None) -> list[str]:
    """The days a DAG run worked on (see the module's docstring for the order of the sources)."""
    conf = conf or {}
    for name in ("ds", "as_of"):
        if conf.get(name) and (day := _day(conf[name])) is not None:
            return [day.isoformat()]
    start = _day(conf["start_ds"]) if conf.get("start_ds") else None
    if start is not None:
        end = _day(conf.get("end_ds") or conf["start_ds"]) or start
        count = min(max((end - start).days + 1, 1), MAX_RUN_DAYS)
        return [(start + dt.timedelta(days=i)).isoformat() for i in range(count)]
    if partition_key and (day := _day(partition_key)) is not None:
        return [day.isoformat()]
    days: set[str] = set()
    for raw in event_extras:
        extra = raw if isinstance(raw, Mapping) else {}
        for value in [extra.get("ds"), *(extra.get("days") or [])]:
            if value and (day := _day(value)) is not None:
                days.add(day.isoformat())
    if days:
        return sorted(days)
    if data_interval_start is not None:
        return [data_interval_start.date().isoformat()]
    return []


def run_days_from_db(dag_id: str, run_id: str) -> list[str] | None:
    """The days of a DAG run, read from the metadata DB through Airflow's ORM (None: no such run)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None:
            return None
        extras = [event.extra for event in run.consumed_asset_events]
        return days_of_run(run.conf, run.partition_key, extras, run.data_interval_start)


def resolve(dag_id: str | None = None, run_id: str | None = None, project: str | None = None,
            model: str | None = None, ds: str | None = None,
            run_days: Callable[[str, str], list[str] | None] = run_days_from_db) -> PageFilter:
    """The filter the page's query parameters ask for."""
    from loopline.project.names import parse_dag_id

    days: tuple[str, ...] = ()
    if ds:
        day = _day(ds)
        if day is None:
            return PageFilter(dag_id, run_id, project, model, message=f"ds={ds!r} is not a day (YYYY-MM-DD)")
        days = (day.isoformat(),)
    if not dag_id:
        return PageFilter(None, None, project or None, model or None, days)
    name = parse_dag_id(dag_id)
    if name is None:
        return PageFilter(dag_id, run_id, message=(
            f"{dag_id!r} is not a Loopline DAG: its id is not one of Loopline's (P.features, P.M.score, "
            "P.M.drift, P.M.retrain, P.M.rollback), so there is nothing of it on this page."))
    decisions = name.step in ("retrain", "rollback") and bool(run_id)
    if run_id and not days:
        try:
            found = run_days(dag_id, run_id)
        except Exception as exc:  # the page still shows the DAG's model
            return PageFilter(dag_id, run_id, name.project, name.model, decisions_of_run=decisions,
                              message=f"the run {run_id!r} could not be read: {type(exc).__name__}: {exc}")
        if found is None:
            return PageFilter(dag_id, run_id, name.project, name.model, decisions_of_run=decisions,
                              message=f"no run {run_id!r} of {dag_id!r} in Airflow's metadata DB")
        days = tuple(found)
    return PageFilter(dag_id, run_id, name.project, name.model, days, decisions)


def filtered_sources(src: Sources, flt: PageFilter) -> Sources:
    """``src`` whose projects are only the filter's project, restricted to the filter's model."""
    if not (flt.project or flt.model):
        return src

    def projects() -> list[Found]:
        out = []
        for found in src.projects():
            project = found.project
            if project is None:
                if flt.project in (None, found.path.parent.name):
                    out.append(found)
                continue
            if flt.project not in (None, project.project):
                continue
            if flt.model is not None:
                if flt.model not in project.models:
                    continue
                found = dataclasses.replace(found, project=project.model_copy(  # noqa: PLW2901
                    update={"models": {flt.model: project.models[flt.model]}}))
            out.append(found)
        return out

    return dataclasses.replace(src, projects=projects)


def apply(data: dict[str, Any], flt: PageFilter, src: Sources) -> dict[str, Any]:
    """The overview of :func:`filtered_sources` narrowed to the filter's days and run, with the filter in it."""
    data = dict(data)
    data["filter"] = flt.as_dict()
    if flt.project and not data.get("projects") and not data.get("message"):
        data["message"] = f"no project {flt.project!r}" + (f" with a model {flt.model!r}" if flt.model else "")
    projects: dict[str, Any] | None = None
    for project in data.get("projects") or []:
        for model in project.get("models") or []:
            if flt.days:
                if projects is None:  # read once per page, and only when a day is outside the page's window
                    projects = {f.project.project: f.project for f in src.projects() if f.project is not None}
                model["drift"] = _drift_of_days(src, projects.get(project["project"]), model, flt.days)
            if flt.decisions_of_run and isinstance(model.get("registry"), dict):
                registry = model["registry"] = dict(model["registry"])
                registry["timeline"] = [r for r in registry.get("timeline") or []
                                        if r.get("dag_run_id") == flt.run_id]
    return data


def _drift_of_days(src: Sources, project: Any, model: Mapping[str, Any], days: tuple[str, ...]) -> Any:
    """The model's drift summary restricted to ``days``; a day older than the page's window is read here, through
    the page's cache of report summaries (the same key as :func:`loopline_airflow.ui.data.drift_days`)."""
    from loopline.project.names import model_names
    from loopline.reports import read_drift_report

    from loopline_airflow.ui.data import REPORT_CACHE, report_summary

    drift = dict(model.get("drift") or {})
    message = str(drift.get("message") or "")
    if message and not drift.get("days") and not message.startswith("no drift report yet"):
        return drift  # the store is unreadable: say that, not "no report for this day"
    have = {d.get("ds"): d for d in drift.get("days") or []}
    out = []
    for day in days:
        if day in have:
            out.append(have[day])
            continue
        if project is None:
            continue
        try:
            store = src.store()
            fsv, dataset = str(project.features.version), model_names(project, model["model"]).drift_dataset

            def read(day: str = day, store: Any = store, fsv: str = fsv, dataset: str = dataset) -> Any:
                report = read_drift_report(store, fsv, dt.date.fromisoformat(day), dataset=dataset)
                return None if report is None else report_summary(report)

            summary = REPORT_CACHE.get_or_set((store.root, dataset, fsv, day), read)
        except Exception as exc:
            out.append({"ds": day, "error": f"cannot read report: {type(exc).__name__}: {exc}"})
            continue
        if summary is not None:
            out.append(summary)
    drift["days"] = out
    features = {name for d in out for name in (d.get("psi") or {})}
    drift["features"] = [f for f in drift.get("features") or [] if f in features] + sorted(
        features - set(drift.get("features") or []))
    drift["message"] = None if out else f"no drift report for {', '.join(days[:5])}" + (
        " …" if len(days) > 5 else "")
    return drift


def banner(flt: PageFilter, prefix: str) -> str:
    """The line at the top of a filtered page: what it is narrowed to, and the way back to everything."""
    from html import escape

    if not flt.active:
        return ""
    parts = []
    if flt.dag_id:
        parts.append(f"DAG <b>{escape(flt.dag_id)}</b>")
    if flt.run_id:
        parts.append(f"run <b>{escape(flt.run_id)}</b>")
    if flt.project:
        parts.append(f"project <b>{escape(flt.project)}</b>")
    if flt.model:
        parts.append(f"model <b>{escape(flt.model)}</b>")
    if flt.days:
        shown = ", ".join(flt.days[:5]) + (f" … ({len(flt.days)} days)" if len(flt.days) > 5 else "")
        parts.append(f"day(s) <b>{escape(shown)}</b>")
    text = f'<p class="filter">Showing {" · ".join(parts)} · <a href="{escape(prefix)}/">all models</a></p>'
    if flt.message and flt.project is not None:  # a DAG that is not Loopline's: the page's own message says it
        text += f'<p class="note filter-message">{escape(flt.message)}</p>'
    return text
