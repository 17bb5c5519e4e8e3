"""loopline_retrain — train a challenger and promote it only if it beats the champion on the same days."""

from __future__ import annotations

import os

from airflow.sdk import Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable, Param, dag, task
from loopline.settings import Settings
from loopline_airflow.assets import DRIFT
from loopline_airflow.dag_defaults import START_DATE, TAGS, default_args
from loopline_airflow.operators.registry import MLflowModelPromotionOperator
from loopline_airflow.triggers.drift import DriftEventTrigger

DOC = """
### Retrain

Runs on a **weekly cron** (Mondays 04:00 UTC), on **drift** — the `loopline_drift` asset, fed by the
triggerer's `DriftEventTrigger` watching the drift reports (no worker slot waits) — or **by hand** with the
form below. The reason (`cron` / `drift` with its report / `manual`) is recorded on the MLflow run as
`loopline.trigger` with the DAG run id.

1. `plan` — the as-of day: the drifted day from the event (asset-triggered runs have no logical date), or
   `as_of`, or the latest features day. A burst of drift events yields one retrain (`max_active_runs=1`,
   newest event wins, and a cooldown of `cooldown_days` data days since the newest registered version).
   A drift event about a model version that is no longer champion is ignored with a log line.
2. `validate_training_window` — Great Expectations on every day of the window (fails → nothing trained).
3. `train_challenger` — trains on `window_days` ending at the as-of day (the last `validation_days` held
   out), logs params, metrics, model, signature, lineage and the drift reference profile to MLflow,
   registers a new version and aliases it `challenger`.
4. `promote` — `MLflowModelPromotionOperator`: both models judged on the **same** held-out days; `champion`
   moves only if the challenger is better by `min_improvement` and within the guardrails. `force` waives
   the cooldown and `min_improvement`, never the guardrails or "not worse".
"""

_settings = Settings.from_env()  # environment only: no I/O at parse time
DRIFT_WATCHED = Asset(
    name=DRIFT.name,
    group=DRIFT.group,
    watchers=[
        AssetWatcher(
            name="loopline_drift_watcher",
            trigger=DriftEventTrigger(
                store_root=_settings.store_root,
                feature_set_version=_settings.feature_set_version,
                model_name=_settings.model_name,
                poll_interval=float(os.environ.get("LOOPLINE_DRIFT_POLL_SECONDS", "15")),
            ),
        )
    ],
)


@dag(
    dag_id="loopline_retrain",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 4 * * 1", timezone="UTC"), assets=DRIFT_WATCHED),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=1),
    tags=[*TAGS, "training"],
    doc_md=DOC,
    render_template_as_native_obj=True,
    params={
        "as_of": Param(None, type=["null", "string"], format="date",
                       description="Last training day (default: the drifted day, else the latest features day)."),
        "window_days": Param(_settings.train_window_days, type="integer", minimum=8, maximum=366,
                             description="Days of features to train on, ending at as_of."),
        "validation_days": Param(_settings.validation_days, type="integer", minimum=1, maximum=60,
                                 description="Trailing days of the window held out to judge both models."),
        "hyperparameters": Param({}, type="object",
                                 description='Classifier overrides, e.g. {"max_iter": 300}.'),
        "min_improvement": Param(0.0, type="number", minimum=0,
                                 description="ROC AUC the challenger must gain over the champion on the same days."),
        "cooldown_days": Param(_settings.retrain_cooldown_days, type="integer", minimum=0,
                               description="Skip a drift retrain ending within this many days of the newest version."),
        "force": Param(False, type="boolean",
                       description="Waive the cooldown and min_improvement (never the guardrails or 'not worse')."),
    },
)
def loopline_retrain() -> None:
    @task
    def plan(**context: object) -> dict:
        from loopline_airflow.tasks import plan_retrain

        return plan_retrain(context)  # type: ignore[arg-type]

    @task
    def validate_training_window(plan: dict) -> dict:
        from loopline_airflow.tasks import validate_training_window as run

        return run(plan)

    @task
    def train_challenger(plan: dict, checks: dict, **context: object) -> dict:
        from loopline_airflow.tasks import train_challenger as run

        return run(plan, context)  # type: ignore[arg-type]

    planned = plan()
    checks = validate_training_window(planned)
    trained = train_challenger(planned, checks)
    promote = MLflowModelPromotionOperator(
        task_id="promote",
        candidate_version="{{ ti.xcom_pull(task_ids='train_challenger')['version'] }}",
        metric="roc_auc",
        min_improvement="{{ params.min_improvement }}",
        guardrails={"roc_auc": (0.55, None), "brier": (None, 0.25)},
        validation="{{ ti.xcom_pull(task_ids='validate_training_window') }}",
        force="{{ params.force }}",
    )
    trained >> promote


loopline_retrain_dag = loopline_retrain()
