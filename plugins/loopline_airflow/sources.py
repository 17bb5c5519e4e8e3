"""Raw sources that need an Airflow provider: BigQuery through the Google provider's ``BigQueryHook``.

:class:`BigQueryRawSource` implements :class:`loopline.sources.RawSource`: one standard-SQL query per table
and data interval, the interval's bounds passed as ``DATE`` query parameters (``@interval_start`` inclusive,
``@interval_end`` exclusive; never formatted into the SQL), the table names from the settings, the columns
those of the raw schema, the rows in a stable order (the content hash of a partition depends on it). The
result goes through :func:`loopline.sources.validate_raw`, so the feature code gets the same frames as from
any other source.

The day of a row is its local scheduled day, ``DATE(year, month, day)`` in the nycflights13 schema; a table
partitioned by a ``DATE`` column names it in ``day_column`` (``LOOPLINE_BIGQUERY_DAY_COLUMN``) so BigQuery
prunes to the interval's partitions instead of scanning the table.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from loopline.settings import Settings

# project.dataset.table (project ids may hold '-' and a domain prefix 'example.com:project') or dataset.table
_TABLE_RE = re.compile(r"^(?:[A-Za-z0-9.:-]+\.)?[A-Za-z0-9_]+\.[A-Za-z0-9_$-]+$")
_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_DAY_EXPRESSION = "DATE(year, month, day)"
FLIGHTS_ORDER = ("year", "month", "day", "sched_dep_time", "carrier", "flight", "origin", "dest", "tailnum")
WEATHER_ORDER = ("origin", "time_hour")


class BigQuerySourceError(ValueError):
    """The BigQuery source is configured with something it cannot query safely; the message says what."""


@dataclass(frozen=True)
class IntervalQuery:
    """One query over ``[start, end)``: the SQL and its named query parameters."""

    table: str
    start: dt.date
    end: dt.date
    sql: str
    parameters: list[dict[str, Any]]

    def job_configuration(self) -> dict[str, Any]:
        """The ``configuration`` of a BigQuery query job (REST form, as ``BigQueryHook.insert_job`` takes it)."""
        return {"query": {"query": self.sql, "useLegacySql": False, "parameterMode": "NAMED",
                          "queryParameters": self.parameters}}

    @property
    def name(self) -> str:
        """How errors name the rows this query returns."""
        return f"bigquery:{self.table}[{self.start.isoformat()}..{self.end.isoformat()})"


def _date_parameter(name: str, value: dt.date) -> dict[str, Any]:
    return {"name": name, "parameterType": {"type": "DATE"}, "parameterValue": {"value": value.isoformat()}}


def interval_query(
    table: str,
    columns: Sequence[str],
    start: dt.date,
    end: dt.date,
    *,
    order_by: Sequence[str] = (),
    day_column: str = "",
) -> IntervalQuery:
    """The query for the rows of ``table`` whose day lies in ``[start, end)``.

    Identifiers cannot be query parameters, so the table and column names are checked against BigQuery's
    identifier syntax and quoted; the dates are parameters.
    """
    if not _TABLE_RE.match(table):
        raise BigQuerySourceError(
            f"{table!r} is not a BigQuery table name; give it as project.dataset.table (LOOPLINE_BIGQUERY_*_TABLE)"
        )
    bad = [c for c in (*columns, *order_by, *([day_column] if day_column else [])) if not _COLUMN_RE.match(c)]
    if bad:
        raise BigQuerySourceError(f"not BigQuery column names: {bad}")
    if end <= start:
        raise BigQuerySourceError(f"empty interval [{start}, {end}): the end must be after the start")
    day = f"`{day_column}`" if day_column else DEFAULT_DAY_EXPRESSION
    sql = "\n".join([
        "SELECT " + ", ".join(f"`{c}`" for c in columns),
        f"FROM `{table}`",
        f"WHERE {day} >= @interval_start AND {day} < @interval_end",
        *(["ORDER BY " + ", ".join(f"`{c}`" for c in order_by)] if order_by else []),
    ])
    params = [_date_parameter("interval_start", start), _date_parameter("interval_end", end)]
    return IntervalQuery(table, start, end, sql, params)


@dataclass
class BigQueryRawSource:
    """Flights and weather from BigQuery tables, one query per table and data interval.

    Args:
        flights_table / weather_table: ``project.dataset.table`` with the raw schema's columns
            (:data:`loopline.sources.FLIGHTS_SCHEMA`, :data:`loopline.sources.WEATHER_SCHEMA`; more are ignored).
        gcp_conn_id: The Google provider's connection (credentials, default project).
        project_id: Project that runs and pays for the jobs (default: the connection's).
        location: Where the jobs run (``US``, ``EU``, a region); default: the connection's.
        day_column: A ``DATE`` column holding the row's day (a partitioning column), instead of
            ``DATE(year, month, day)``.
        hook: A ready hook (tests); by default a ``BigQueryHook`` is built at the first query.
    """

    flights_table: str
    weather_table: str
    gcp_conn_id: str = "google_cloud_default"
    project_id: str | None = None
    location: str | None = None
    day_column: str = ""
    hook: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # A bad name is a configuration error: say so before the first interval, not at its query.
        interval_query(self.flights_table, [], dt.date(2000, 1, 1), dt.date(2000, 1, 2), day_column=self.day_column)
        interval_query(self.weather_table, [], dt.date(2000, 1, 1), dt.date(2000, 1, 2))

    @classmethod
    def from_settings(cls, settings: Settings) -> BigQueryRawSource:
        """The source ``LOOPLINE_RAW_SOURCE=bigquery`` uses: tables, project, location from the settings."""
        missing = [name for name, value in (("LOOPLINE_BIGQUERY_FLIGHTS_TABLE", settings.bigquery_flights_table),
                                            ("LOOPLINE_BIGQUERY_WEATHER_TABLE", settings.bigquery_weather_table))
                   if not value]
        if missing:
            raise BigQuerySourceError(f"the BigQuery raw source needs {' and '.join(missing)} (project.dataset.table)")
        return cls(settings.bigquery_flights_table, settings.bigquery_weather_table,
                   gcp_conn_id=settings.bigquery_conn_id, project_id=settings.bigquery_project or None,
                   location=settings.bigquery_location or None, day_column=settings.bigquery_day_column)

    @cached_property
    def _hook(self) -> Any:
        if self.hook is not None:
            return self.hook
        from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

        return BigQueryHook(gcp_conn_id=self.gcp_conn_id, use_legacy_sql=False, location=self.location)

    def flights_query(self, start: dt.date, end: dt.date) -> IntervalQuery:
        from loopline.sources import FLIGHTS_SCHEMA

        return interval_query(self.flights_table, list(FLIGHTS_SCHEMA), start, end, order_by=FLIGHTS_ORDER,
                              day_column=self.day_column)

    def weather_query(self, start: dt.date, end: dt.date) -> IntervalQuery:
        from loopline.sources import WEATHER_SCHEMA

        return interval_query(self.weather_table, list(WEATHER_SCHEMA), start, end, order_by=WEATHER_ORDER,
                              day_column=self.day_column)

    def run(self, query: IntervalQuery, schema: dict[str, str]) -> pd.DataFrame:
        """Run one query job through the hook and check its rows against the raw schema."""
        from loopline.sources import validate_raw

        job = self._hook.insert_job(configuration=query.job_configuration(), project_id=self.project_id,
                                    location=self.location)
        # The REST download: a day is a few thousand rows, and the Storage Read API needs one more permission.
        frame = job.to_dataframe(create_bqstorage_client=False)
        return validate_raw(frame, schema, query.name)

    def flights_between(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Flights of the data interval ``[start, end)`` (one query)."""
        from loopline.sources import FLIGHTS_SCHEMA

        return self.run(self.flights_query(start, end), FLIGHTS_SCHEMA)

    def weather_between(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Hourly weather of the data interval ``[start, end)`` (one query)."""
        from loopline.sources import WEATHER_SCHEMA

        return self.run(self.weather_query(start, end), WEATHER_SCHEMA)

    def flights(self, ds: dt.date) -> pd.DataFrame:
        from loopline.store import as_day

        day = as_day(ds)
        return self.flights_between(day, day + dt.timedelta(days=1))

    def weather(self, ds: dt.date) -> pd.DataFrame:
        from loopline.store import as_day

        day = as_day(ds)
        return self.weather_between(day, day + dt.timedelta(days=1))
