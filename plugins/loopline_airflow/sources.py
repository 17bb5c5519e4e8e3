"""Project sources that need an Airflow provider: ``kind: bigquery``, read through the Google provider's hook.

A project's ``bigquery`` source names either a ``table`` (filtered on its ``day_column``, a ``DATE`` column: a
partitioning column lets BigQuery prune the scan to the day) or its own ``sql`` that uses the day as the
query parameter ``@ds``. The day is always a ``DATE`` query parameter, never formatted into the SQL; the table
and column names cannot be parameters, so they are checked against BigQuery's identifier syntax and quoted.
One standard-SQL query job per source and day, through ``BigQueryHook.insert_job`` with the source's
``conn_id`` (default ``google_cloud_default``) and ``location``. Row order does not matter: the features step
sorts each day by the project's keys before it writes.

:class:`BigQueryReader` is what the generated DAGs' task bodies hand :func:`loopline.steps.read_source` as
the reader of ``bigquery`` sources (``loopline run`` has no Airflow connections and refuses them).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from loopline.project import Project

# project.dataset.table (project ids may hold '-' and a domain prefix 'example.com:project') or dataset.table
_TABLE_RE = re.compile(r"^(?:[A-Za-z0-9.:-]+\.)?[A-Za-z0-9_]+\.[A-Za-z0-9_$-]+$")
_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_CONN_ID = "google_cloud_default"


class BigQuerySourceError(ValueError):
    """A bigquery source is declared with something it cannot query safely; the message says what."""


@dataclass(frozen=True)
class DayQuery:
    """One source's query for one day: the SQL and its named query parameters."""

    source: str
    day: dt.date
    sql: str
    parameters: list[dict[str, Any]]

    def job_configuration(self) -> dict[str, Any]:
        """The ``configuration`` of a BigQuery query job (REST form, as ``BigQueryHook.insert_job`` takes it)."""
        return {"query": {"query": self.sql, "useLegacySql": False, "parameterMode": "NAMED",
                          "queryParameters": self.parameters}}


def day_query(project: Project, name: str, day: dt.date) -> DayQuery:
    """The query for the rows of source ``name`` on ``day``: its ``sql``, or its ``table`` filtered on
    ``day_column``; the day is the ``DATE`` parameter ``@ds``."""
    source = project.sources[name]
    where = f"project {project.project!r}, source {name!r}"
    if source.kind != "bigquery":
        raise BigQuerySourceError(f"{where} is a {source.kind} source, not a bigquery one")
    if source.sql:
        if "@ds" not in source.sql:
            raise BigQuerySourceError(f"{where}: sql must use the day as the query parameter @ds (a DATE)")
        sql = source.sql.strip()
    else:
        table, column = source.table or "", source.day_column or ""
        if not _TABLE_RE.match(table):
            raise BigQuerySourceError(f"{where}: table {table!r} is not a BigQuery table name; give it as "
                                      "project.dataset.table")
        if not _COLUMN_RE.match(column):
            raise BigQuerySourceError(f"{where}: a table source needs day_column, the DATE column to filter on "
                                      f"(got {column!r})")
        sql = f"SELECT *\nFROM `{table}`\nWHERE `{column}` = @ds"
    param = {"name": "ds", "parameterType": {"type": "DATE"}, "parameterValue": {"value": day.isoformat()}}
    return DayQuery(name, day, sql, [param])


@dataclass
class BigQueryReader:
    """Reads a project's ``bigquery`` source for one day (the ``readers["bigquery"]`` of :mod:`loopline.steps`).

    Args:
        hooks: Ready hooks by connection id (tests); by default a ``BigQueryHook`` per connection and location
            is built at its first query.
    """

    hooks: dict[tuple[str, str | None], Any] = field(default_factory=dict, repr=False)

    def hook(self, conn_id: str, location: str | None) -> Any:
        key = (conn_id, location)
        if key not in self.hooks:
            from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

            self.hooks[key] = BigQueryHook(gcp_conn_id=conn_id, use_legacy_sql=False, location=location)
        return self.hooks[key]

    def __call__(self, project: Project, name: str, day: dt.date) -> pd.DataFrame:
        source = project.sources[name]
        query = day_query(project, name, day)
        job = self.hook(source.conn_id or DEFAULT_CONN_ID, source.location).insert_job(
            configuration=query.job_configuration(), location=source.location)
        # The REST download: a day is a few thousand rows, and the Storage Read API needs one more permission.
        return job.to_dataframe(create_bqstorage_client=False)
