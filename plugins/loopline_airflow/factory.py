"""The DAG factory: every model project on the search path rendered into its DAGs.

For project P with models M1..Mn (names from :mod:`loopline.project.names`):

- ``P.features`` — one run per day (the project's ``schedules.features`` cron, from ``start_date``): the day's
  tables → features (the project's builder) → the generated suite → ``P/features``; emits ``loopline.P.features``.
- ``P.M.score`` — on the features asset: the triggering days scored with ``P.M@champion``; emits predictions.
- ``P.M.drift`` — on the predictions asset: each day's drift check and report; emits drift reports.
- ``P.M.retrain`` — on the model's retrain cron **or** its drift asset (an ``AssetWatcher`` whose
  ``DriftEventTrigger`` polls ``P/M/drift`` in the triggerer) **or** by hand with a Params form: plan → the
  suite on the window → train a challenger → ``MLflowModelPromotionOperator`` (the project's gate).
- ``P.M.rollback`` — by hand: ``MLflowModelRollbackOperator`` moves ``champion`` back.

Parsing reads only the project files (pydantic, YAML): no heavy module, no connection, no store. A project
whose file is broken does not take the others down: its DAGs are replaced by one placeholder per broken
project that fails Airflow's DAG validation, so the DAG file shows an import error naming the project file and
the key while every other project's DAGs load.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable, Param, task
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable
from loopline.project import Found, discover, model_names, project_names

from loopline_airflow.dag_defaults import default_args
from loopline_airflow.links import DriftReportLink, MLflowModelVersionLink, MLflowRunLink, ValidationResultLink

if TYPE_CHECKING:
    from loopline.project import Project

PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *",
           "@yearly": "0 0 1 1 *"}


def _utc(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _cron(expr: str) -> str:
    return PRESETS.get(expr, expr)


class ProjectFileError(DAG):
    """A placeholder for broken project files: it fails Airflow's DAG validation with their errors, which the
    DAG processor records as this file's import error (the other DAGs of the file load)."""

    def validate(self) -> None:
        raise ValueError(self.doc_md or "a Loopline project file is broken")


def render_projects(found: list[Found] | None = None) -> dict[str, DAG]:
    """Every project's DAGs by DAG id, plus the placeholder that reports broken project files."""
    dags: dict[str, DAG] = {}
    errors = []
    for f in found if found is not None else discover():
        if f.project is None:
            errors.append(str(f.error))
            continue
        dags.update(render_project(f.project))
    if errors:
        dags["loopline.project_errors"] = ProjectFileError(
            dag_id="loopline.project_errors", schedule=None, start_date=_utc(dt.date(2020, 1, 1)),
            tags=["loopline"], doc_md="Loopline project file error(s):\n" + "\n".join(errors))
    return dags


def render_project(p: Project) -> dict[str, DAG]:
    """The DAGs of one project."""
    dags = {}
    features = features_dag(p)
    dags[features.dag_id] = features
    for model in p.models:
        for dag in (score_dag(p, model), drift_dag(p, model), retrain_dag(p, model), rollback_dag(p, model)):
            dags[dag.dag_id] = dag
    return dags


def _common(p: Project, dag_id: str, tags: list[str], doc: str, **kwargs: Any) -> dict[str, Any]:
    return {"dag_id": dag_id, "start_date": _utc(p.start_date), "end_date": _utc(p.end_date), "tags": tags,
            "doc_md": doc, "catchup": False, "is_paused_upon_creation": True,
            "default_args": default_args(owner=p.owner), **kwargs}


def features_dag(p: Project) -> DAG:
    names = project_names(p)
    doc = (f"### {p.project}: features\n\n{p.description}\n\nOne run per day: the day's tables "
           f"({', '.join(p.sources)}) → features v{p.features.version} → the suite generated from "
           f"`{p.path}` → `{names.features_dataset}`. A day without rows is skipped; a day that does not fit the "
           "project file fails without retry and writes nothing. Backfill from the UI, the CLI or the REST API.")
    with DAG(**_common(p, names.features_dag, names.tags, doc,
                       schedule=CronDataIntervalTimetable(_cron(p.schedules.features or "@daily"), timezone="UTC"),
                       max_active_runs=4,
                       params={"ds": Param(None, type=["null", "string"], format="date",
                                           description="Build this day (default: the run's data interval).")})) as dag:
        @task(task_id="build_features", outlets=[Asset(name=names.features_asset, group="loopline")])
        def build(**context: Any) -> dict[str, Any]:
            from loopline_airflow.project_tasks import build_features

            return build_features(p.project, context)  # type: ignore[arg-type]

        _links(build(), ValidationResultLink())
    return dag


def _links(task_output: Any, *links: Any) -> None:
    """Attach extra links to a ``@task`` task (operator classes declare theirs; see :mod:`loopline_airflow.links`)."""
    task_output.operator.operator_extra_links = links


def _range_params() -> dict[str, Param]:
    return {"start_ds": Param(None, type=["null", "string"], format="date", description="First day (manual run)."),
            "end_ds": Param(None, type=["null", "string"], format="date", description="Last day (manual run).")}


def _daily_model_dag(p: Project, model: str, step: str, task_id: str, on: str, emits: str, doc: str,
                     body: str, links: tuple[Any, ...] = ()) -> DAG:
    """A model DAG run on an upstream asset (or a manual day range) whose one task calls ``project_tasks.<body>``."""
    names = model_names(p, model)
    with DAG(**_common(p, names.dag(step), names.tags, doc, schedule=[Asset(name=on, group="loopline")],
                       max_active_runs=1, params=_range_params())) as dag:
        @task(task_id=task_id, outlets=[Asset(name=emits, group="loopline")])
        def run(**context: Any) -> dict[str, Any]:
            from loopline_airflow import project_tasks

            result: dict[str, Any] = getattr(project_tasks, body)(p.project, model, context)
            return result

        _links(run(), *links)
    return dag


def score_dag(p: Project, model: str) -> DAG:
    names, pn = model_names(p, model), project_names(p)
    doc = (f"### {p.project}.{model}: scoring\n\nOn `{pn.features_asset}`: the triggering days scored with "
           f"`models:/{names.registered_model}@champion` (pinned for the run) into `{names.predictions_dataset}`. "
           "No champion yet: skipped.")
    return _daily_model_dag(p, model, "score", "score", pn.features_asset, names.predictions_asset, doc, "score_days")


def drift_dag(p: Project, model: str) -> DAG:
    names = model_names(p, model)
    doc = (f"### {p.project}.{model}: drift\n\nOn `{names.predictions_asset}`: each day's trailing "
           f"{p.models[model].drift.window_days}-day window against the reference of the version that scored it "
           f"(PSI, KL, JS per feature; prediction drift; decay once labels arrive) → `{names.drift_dataset}`.")
    return _daily_model_dag(p, model, "drift", "check_drift", names.predictions_asset, names.drift_reports_asset, doc,
                            "monitor_days", links=(DriftReportLink(),))


def retrain_dag(p: Project, model: str) -> DAG:
    from loopline.settings import Settings

    from loopline_airflow.operators.registry import MLflowModelPromotionOperator
    from loopline_airflow.triggers.drift import DriftEventTrigger

    spec, names = p.models[model], model_names(p, model)
    settings = Settings.from_env()  # environment only: where the store is (no I/O at parse time)
    watched = Asset(name=names.drift_asset, group="loopline", watchers=[AssetWatcher(
        name=f"{p.project}_{model}_drift_watcher",
        trigger=DriftEventTrigger(store_root=settings.store_root, feature_set_version=p.features.version,
                                  model_name=names.registered_model, reports_dataset=names.drift_dataset,
                                  poll_interval=float(os.environ.get("LOOPLINE_DRIFT_POLL_SECONDS", "15"))))])
    cron = spec.schedules.retrain
    schedule: Any = (AssetOrTimeSchedule(timetable=CronTriggerTimetable(_cron(cron), timezone="UTC"), assets=watched)
                     if cron else [watched])
    doc = (f"### {p.project}.{model}: retrain\n\nOn the cron `{cron}`, on drift (`{names.drift_asset}`, watched "
           f"in the triggerer) or by hand. plan → the suite on the window → train a {spec.task} challenger "
           f"(`{names.registered_model}`) → the gate on `{spec.gate_metric}` over the same held-out days.")
    params = {
        "as_of": Param(None, type=["null", "string"], format="date", description="Last training day."),
        "window_days": Param(spec.training.window_days, type="integer", minimum=2, maximum=3660),
        "validation_days": Param(spec.training.validation_days, type="integer", minimum=1, maximum=365),
        "hyperparameters": Param({}, type="object", description="Estimator parameter overrides."),
        "min_improvement": Param(spec.promotion.min_improvement, type="number", minimum=0),
        "cooldown_days": Param(spec.drift.cooldown_days, type="integer", minimum=0),
        "force": Param(False, type="boolean", description="Waive the cooldown and min_improvement."),
    }
    with DAG(**_common(p, names.dag("retrain"), [*names.tags, "training"], doc, schedule=schedule,
                       max_active_runs=1, params=params, render_template_as_native_obj=True)) as dag:
        @task(task_id="plan")
        def plan(**context: Any) -> dict[str, Any]:
            from loopline_airflow.project_tasks import plan_retrain

            return plan_retrain(p.project, model, context)  # type: ignore[arg-type]

        @task(task_id="validate_training_window")
        def validate(planned: Any) -> dict[str, Any]:
            from loopline_airflow.project_tasks import validate_training_window

            return validate_training_window(p.project, model, planned)

        @task(task_id="train_challenger")
        def train(planned: Any, checks: Any, **context: Any) -> dict[str, Any]:
            from loopline_airflow.project_tasks import train_challenger

            del checks
            return train_challenger(p.project, model, planned, context)  # type: ignore[arg-type]

        planned = plan()
        checks = validate(planned)
        trained = train(planned, checks)
        _links(trained, MLflowRunLink(), MLflowModelVersionLink())
        promote = MLflowModelPromotionOperator(
            task_id="promote", model_name=names.registered_model, project=p.project, project_model=model,
            candidate_version="{{ ti.xcom_pull(task_ids='train_challenger')['version'] }}",
            metric=spec.gate_metric, higher_is_better=spec.higher_is_better,
            min_improvement="{{ params.min_improvement }}",
            guardrails={k: (b.min, b.max) for k, b in spec.promotion.guardrails.items()},
            validation="{{ ti.xcom_pull(task_ids='validate_training_window') }}", force="{{ params.force }}",
        )
        trained >> promote
    return dag


def rollback_dag(p: Project, model: str) -> DAG:
    from loopline_airflow.operators.registry import MLflowModelRollbackOperator

    names = model_names(p, model)
    doc = (f"### {p.project}.{model}: rollback\n\nBy hand: `champion` of `{names.registered_model}` moves back to "
           "the previous champion recorded in the history (or `to_version`), with the reason recorded.")
    with DAG(**_common(p, names.dag("rollback"), names.tags, doc, schedule=None, max_active_runs=1,
                       params={"to_version": Param(None, type=["null", "string"]),
                               "reason": Param("manual rollback", type="string")})) as dag:
        MLflowModelRollbackOperator(task_id="rollback", model_name=names.registered_model,
                                    to_version="{{ params.to_version }}", reason="{{ params.reason }}")
    return dag
