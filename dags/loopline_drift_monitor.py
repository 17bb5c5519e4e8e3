"""loopline_drift_monitor — drift of each scored day against the champion's training reference."""

from __future__ import annotations

from airflow.sdk import Param, dag, task
from loopline_airflow.assets import DRIFT_REPORTS, PREDICTIONS
from loopline_airflow.dag_defaults import START_DATE, TAGS, default_args

DOC = """
### Drift monitor

Triggered by the `loopline_predictions` asset (or by hand with `params.start_ds`..`params.end_ds`). For each
day it compares the day's features and scores with the **reference profile logged with the model version
that scored them** (bins fixed on the training data: only the day's rows are binned): PSI, KL and
Jensen–Shannon per feature, prediction drift on the score, and — once the previous day's labels are in —
performance decay of the champion against its training-time validation metric.

It writes the JSON and HTML report to `<store>/_reports/drift/v=<fsv>/ds=<day>/`, logs every score to
MLflow (experiment `<experiment>-monitoring`, one run per model version, one step per day: a time series per
feature) and emits `loopline_drift_reports`. When a day's decision says **drifted**, the triggerer's
`DriftEventTrigger` (watching that report folder) turns the report into a `loopline_drift` asset event whose
extra carries the day, model version, top features and scores — and `loopline_retrain` runs.

Bands (`LOOPLINE_PSI_BANDS`, default `0.1,0.2`; `0.1,0.25` for the stricter convention) and the share of
drifted features (`LOOPLINE_DRIFT_SHARE`) are configurable.
"""


@dag(
    dag_id="loopline_drift_monitor",
    schedule=PREDICTIONS,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=[*TAGS, "monitoring"],
    doc_md=DOC,
    params={
        "start_ds": Param(None, type=["null", "string"], format="date", description="First day to check (manual run)."),
        "end_ds": Param(None, type=["null", "string"], format="date", description="Last day to check (manual run)."),
    },
)
def loopline_drift_monitor() -> None:
    @task(outlets=[DRIFT_REPORTS])
    def check_drift(**context: object) -> dict:
        from loopline_airflow.tasks import monitor_days

        return monitor_days(context)  # type: ignore[arg-type]

    check_drift()


loopline_drift_monitor_dag = loopline_drift_monitor()
