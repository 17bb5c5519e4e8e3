"""loopline_batch_scoring — score each new features partition with the champion."""

from __future__ import annotations

from airflow.sdk import Param, dag, task
from loopline_airflow.assets import FEATURES, PREDICTIONS
from loopline_airflow.dag_defaults import START_DATE, TAGS, default_args

DOC = """
### Batch scoring

Triggered by the `loopline_features` asset: each run scores the days named by its triggering events
(several days when features arrived faster than scoring; asset-triggered runs have no logical date) — or,
when triggered by hand, `params.start_ds`..`params.end_ds`.

For each day it loads `models:/<LOOPLINE_MODEL_NAME>@champion` (the version is resolved once per run and
pinned, so one day never mixes two models), streams the features partition through it in record batches,
writes `<store>/predictions/v=<fsv>/ds=<day>/` with the model name and version on every row, validates it
with `include/gx/suites/predictions.json` (an invalid partition is removed and the task fails), and emits
`loopline_predictions` (extra: `days`, `model_version`), which triggers the drift monitor.

No champion yet → the run is **skipped** with that reason. A day without features is skipped with its reason
and the other days go on.
"""


@dag(
    dag_id="loopline_batch_scoring",
    schedule=FEATURES,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=[*TAGS, "scoring"],
    doc_md=DOC,
    params={
        "start_ds": Param(None, type=["null", "string"], format="date", description="First day to score (manual run)."),
        "end_ds": Param(None, type=["null", "string"], format="date", description="Last day to score (manual run)."),
    },
)
def loopline_batch_scoring() -> None:
    @task(outlets=[PREDICTIONS])
    def score(**context: object) -> dict:
        from loopline_airflow.tasks import score_days

        return score_days(context)  # type: ignore[arg-type]

    score()


loopline_batch_scoring_dag = loopline_batch_scoring()
