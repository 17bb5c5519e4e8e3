"""The DAG factory: every model project on the search path rendered into its DAGs.

For project P with models M1..Mn (names from :mod:`loopline.project.names`):

- ``P.features`` — one partition per day (``CronPartitionTimetable`` on the project's ``schedules.features``
  cron, the run at a day's end builds that day; partition key ``YYYY-MM-DD``): the day's tables → features
  (the project's builder) → the generated suite → ``P/features``; emits ``loopline.P.features`` for that key.
- ``P.M.score`` — once per features partition (``PartitionedAssetTimetable``, ``IdentityMapper``: the same key):
  the day scored with ``P.M@champion``; emits predictions for that key.
- ``P.M.drift`` — once per predictions partition (the same key): the day's drift check on its trailing window
  (read from the store) and report; emits drift reports for that key.
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

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    AssetWatcher,
    CronPartitionTimetable,
    CronTriggerTimetable,
    IdentityMapper,
    Param,
    PartitionedAssetTimetable,
    task,
)
from loopline.project import Found, discover, model_names, project_names
from loopline.project.names import STEPS, parse_dag_id

from loopline_airflow.dag_defaults import default_args
from loopline_airflow.links import DriftReportLink, MLflowModelVersionLink, MLflowRunLink, ValidationResultLink

if TYPE_CHECKING:
    from loopline.project import Project

#: The partition key of a day, on every partitioned DAG and asset of a project.
DAY_KEY_FORMAT = "%Y-%m-%d"
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


def render_projects(found: list[Found] | None = None, *, only: str | None = None) -> dict[str, DAG]:
    """Every project's DAGs by DAG id, plus the placeholder that reports broken project files.

    ``only``: the one DAG a task process needs (Airflow's parsing context, ``get_parsing_context().dag_id``:
    every task process parses the DAG file again to find its DAG). When it is a Loopline DAG id, only that DAG
    is rendered — one DAG instead of every project's (the rendering was ~11% of a task process's CPU on the
    flights project alone, and grows with each project). Any other value renders everything.
    """
    wanted = parse_dag_id(only) if only else None
    dags: dict[str, DAG] = {}
    errors = []
    for f in found if found is not None else discover():
        if f.project is None:
            errors.append(str(f.error))
            continue
        if wanted is None:
            dags.update(render_project(f.project))
        elif f.project.project == wanted.project and (wanted.model is None or wanted.model in f.project.models):
            dag = _render_one(f.project, wanted.model, wanted.step)
            dags[dag.dag_id] = dag
    if errors and wanted is None:
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
        for step in STEPS:
            dag = _render_one(p, model, step)
            dags[dag.dag_id] = dag
    return dags


def _render_one(p: Project, model: str | None, step: str) -> DAG:
    """One DAG of a project: its features DAG (``model`` None) or the ``step`` DAG of ``model``."""
    if model is None:
        return features_dag(p)
    render = {"score": score_dag, "drift": drift_dag, "retrain": retrain_dag, "rollback": rollback_dag}[step]
    return render(p, model)


def _common(p: Project, dag_id: str, tags: list[str], doc: str, **kwargs: Any) -> dict[str, Any]:
    return {"dag_id": dag_id, "start_date": _utc(p.start_date), "end_date": _utc(p.end_date), "tags": tags,
            "doc_md": doc, "catchup": False, "is_paused_upon_creation": True,
            "default_args": default_args(owner=p.owner), **kwargs}


def features_dag(p: Project) -> DAG:
    names = project_names(p)
    doc = (f"### {p.project}: features\n\n{p.description}\n\nOne partition per day (the partition key is the "
           f"day, `YYYY-MM-DD`): the day's tables ({', '.join(p.sources)}) → features v{p.features.version} → the "
           f"suite generated from `{p.path}` → `{names.features_dataset}`; each model's scoring then runs once for "
           "that key. A day without rows is skipped; a day that does not fit the project file fails without retry, "
           "writes nothing and starts no scoring. Backfill from the UI, the CLI or the REST API; clear a day's run "
           "to rebuild it and re-run that day's scoring and drift checks.")
    # The run at the end of a day builds that day (run_offset=-1), as the data-interval schedule did.
    timetable = CronPartitionTimetable(_cron(p.schedules.features or "@daily"), timezone="UTC", run_offset=-1,
                                       key_format=DAY_KEY_FORMAT)
    with DAG(**_common(p, names.features_dag, names.tags, doc, schedule=timetable, max_active_runs=4,
                       params={"ds": Param(None, type=["null", "string"], format="date",
                                           description="Build this day (default: the run's partition key).")})) as dag:
        @task(task_id="build_features", outlets=[Asset(name=names.features_asset, group="loopline")],
              multiple_outputs=False)
        def build(**context: Any) -> dict[str, Any]:
            from loopline_airflow.project_tasks import build_features

            return build_features(p.project, context)  # type: ignore[arg-type]

        _links(_untemplated(build()), ValidationResultLink())
    return dag


# Every ``@task`` here returns one dict and says ``multiple_outputs=False``: Airflow infers ``True`` from a
# ``dict`` return annotation and then stores each key as an XCom of its own beside ``return_value``, each one a
# write through the execution API (half a 2013 replay: 7,119 ``POST /execution/xcoms``, 6-8 per task, 123 s of
# api-server time). Every reader pulls ``return_value``.


def _links(task_output: Any, *links: Any) -> None:
    """Attach extra links to a ``@task`` task (operator classes declare theirs; see :mod:`loopline_airflow.links`)."""
    task_output.operator.operator_extra_links = links


def _untemplated(task_output: Any) -> Any:
    """A ``@task`` task that takes nothing from upstream, without template fields: ``@task`` templates its
    ``op_args``, ``op_kwargs`` and ``templates_dict``, always empty here, and a task with template fields sends
    them to the api-server before it runs (``PUT /execution/task-instances/{id}/rtif``: one call per task, 763
    in a January–April replay, 27 ms each). Not for a task whose arguments are upstream results: Airflow
    resolves those while it renders the templates."""
    task_output.operator.template_fields = ()
    return task_output


#: Runs of one scoring (drift) DAG at once: one per day, so a few go side by side on two cores.
MODEL_RUNS = 3


def _range_params() -> dict[str, Param]:
    return {"start_ds": Param(None, type=["null", "string"], format="date", description="First day (manual run)."),
            "end_ds": Param(None, type=["null", "string"], format="date", description="Last day (manual run).")}


def _daily_model_dag(p: Project, model: str, step: str, task_id: str, on: str, emits: str, doc: str,
                     body: str, links: tuple[Any, ...] = ()) -> DAG:
    """A model DAG run once per partition of an upstream asset (the same key: ``IdentityMapper``), or by hand on
    a day range, whose one task calls ``project_tasks.<body>``. Runs of different days are independent (the
    champion is pinned per run; a drift check reads its trailing window from the store), so several go at once."""
    names = model_names(p, model)
    schedule = PartitionedAssetTimetable(assets=Asset(name=on, group="loopline"),
                                         default_partition_mapper=IdentityMapper())
    with DAG(**_common(p, names.dag(step), names.tags, doc, schedule=schedule, max_active_runs=MODEL_RUNS,
                       params=_range_params())) as dag:
        @task(task_id=task_id, outlets=[Asset(name=emits, group="loopline")], multiple_outputs=False)
        def run(**context: Any) -> dict[str, Any]:
            from loopline_airflow import project_tasks

            result: dict[str, Any] = getattr(project_tasks, body)(p.project, model, context)
            return result

        _links(_untemplated(run()), *links)
    return dag


def score_dag(p: Project, model: str) -> DAG:
    names, pn = model_names(p, model), project_names(p)
    doc = (f"### {p.project}.{model}: scoring\n\nOnce per partition of `{pn.features_asset}` (the same key, the "
           f"day): the day scored with `models:/{names.registered_model}@champion` (pinned for the run) into "
           f"`{names.predictions_dataset}`. No champion yet: skipped (clear the run once there is one). By hand: "
           "`start_ds`..`end_ds`, one predictions partition event per day.")
    return _daily_model_dag(p, model, "score", "score", pn.features_asset, names.predictions_asset, doc, "score_days")


def drift_dag(p: Project, model: str) -> DAG:
    names = model_names(p, model)
    doc = (f"### {p.project}.{model}: drift\n\nOnce per partition of `{names.predictions_asset}` (the same "
           "key, the day): the day's trailing "
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
        @task(task_id="plan", multiple_outputs=False)
        def plan(**context: Any) -> dict[str, Any]:
            from loopline_airflow.project_tasks import plan_retrain

            return plan_retrain(p.project, model, context)  # type: ignore[arg-type]

        @task(task_id="validate_training_window", multiple_outputs=False)
        def validate(planned: Any) -> dict[str, Any]:
            from loopline_airflow.project_tasks import validate_training_window

            return validate_training_window(p.project, model, planned)

        @task(task_id="train_challenger", multiple_outputs=False)
        def train(planned: Any, checks: Any, **context: Any) -> dict[str, Any]:
            from loopline_airflow.project_tasks import train_challenger

            del checks
            return train_challenger(p.project, model, planned, context)  # type: ignore[arg-type]

        planned = _untemplated(plan())
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
