"""Which day a generated DAG's run works on: its partition key, or the Params of a run by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.context import OutletEventAccessors
from loopline_airflow.project_tasks import _emit, days_for_run, partition_day, run_day

from .conftest import make_context

pytestmark = pytest.mark.unit


def _context(partition_key: str | None = None, **params: Any) -> dict[str, Any]:
    return {**make_context(), "params": params, "partition_key": partition_key,
            "dag_run": SimpleNamespace(partition_key=partition_key, run_type="asset_triggered")}


def test_a_partitioned_run_works_on_the_day_of_its_key() -> None:
    assert partition_day(_context("2013-04-10")) == dt.date(2013, 4, 10)
    assert run_day(_context("2013-04-10")) == dt.date(2013, 4, 10)
    assert days_for_run(_context("2013-04-10")) == [dt.date(2013, 4, 10)]


def test_params_win_over_the_key_and_a_run_without_either_has_no_day() -> None:
    assert run_day(_context("2013-04-10", ds="2013-01-02")) == dt.date(2013, 1, 2)
    assert days_for_run(_context("2013-04-10", start_ds="2013-01-02", end_ds="2013-01-04")) == [
        dt.date(2013, 1, 2), dt.date(2013, 1, 3), dt.date(2013, 1, 4)]
    assert days_for_run(_context()) == []
    with pytest.raises(AirflowFailException, match="no partition key"):
        run_day(_context())


def test_a_key_that_is_not_a_day_fails_without_retry() -> None:
    with pytest.raises(AirflowFailException, match="'east' is not a day"):
        days_for_run(_context("east"))


def test_the_outlet_event_names_each_day_as_a_partition() -> None:
    asset = Asset(name="loopline.p.features", group="loopline")
    events = OutletEventAccessors()
    context = {"outlet_events": events}
    _emit(context, asset.name, ["2013-01-03", "2013-01-02"], {"days": ["2013-01-02", "2013-01-03"]})  # type: ignore[arg-type]
    accessor = events[asset]
    assert accessor.partition_keys == {"2013-01-02", "2013-01-03"}
    assert accessor.extra == {"days": ["2013-01-02", "2013-01-03"]}


@pytest.mark.parametrize(("start", "end", "limit", "refused"), [
    ("2013-01-01", "2013-12-31", None, False),       # 365 days: within the default 366
    ("2013-01-01", "2014-01-02", None, True),        # 367 days
    ("2013-01-01", "2013-01-10", "5", True),         # a smaller limit from the environment
    ("2013-01-10", "2013-01-01", None, True),        # an end before the start
])
def test_a_manual_run_over_too_many_days_is_refused_without_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: str, end: str, limit: str | None, refused: bool
) -> None:
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path))
    if limit:
        monkeypatch.setenv("LOOPLINE_MAX_MANUAL_DAYS", limit)
    context = _context(start_ds=start, end_ds=end)
    if refused:
        with pytest.raises(AirflowFailException, match=r"days|before its start"):
            days_for_run(context)  # type: ignore[arg-type]
    else:
        days = days_for_run(context)  # type: ignore[arg-type]
        assert days[0].isoformat() == start and days[-1].isoformat() == end
