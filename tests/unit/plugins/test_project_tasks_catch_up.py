"""Catch-up of event-driven runs: a day whose asset event never became a run is taken by the next run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from loopline.settings import Settings
from loopline.store import missed_days
from loopline_airflow.project_tasks import missed_for_run

from .conftest import make_context

pytestmark = pytest.mark.unit
D = dt.date(2013, 4, 10)


def _days(*offsets: int) -> list[dt.date]:
    return [D + dt.timedelta(days=o) for o in offsets]


def test_missed_days_are_inputs_without_output_in_the_window_before_the_newest_day() -> None:
    have = _days(-9, -8, -7, -5, -4, -3, -1, 0, 1)
    done = _days(-9, -5, -1)
    # window D-7 .. D-1: -8 and -9 are too old, 0 is the triggering day itself, 1 is after it
    assert missed_days(have, done, D, 7) == _days(-7, -4, -3)
    assert missed_days(have, done, D, 0) == []
    assert missed_days(have, have, D, 7) == []


def _run(tmp_path: Path, triggering: list[dt.date], *, params: dict[str, Any] | None = None,
         catch_up_days: int = 7) -> list[dt.date]:
    context: dict[str, Any] = {**make_context(), "params": params or {}}
    settings = Settings(home=tmp_path, catch_up_days=catch_up_days)
    calls: list[str] = []

    def have() -> list[dt.date]:
        calls.append("have")
        return _days(-6, -5, -4, -3, -2, -1, 0)

    def done() -> list[dt.date]:
        calls.append("done")
        return _days(-6, -2)

    missed = missed_for_run(context, triggering, settings, have, done)
    assert not missed or calls == ["have", "done"]
    return missed


def test_an_asset_triggered_run_catches_up_but_not_its_own_days(tmp_path: Path) -> None:
    assert _run(tmp_path, _days(-1, 0)) == _days(-5, -4, -3)  # -1 is one of the run's own days


def test_a_manual_run_and_catch_up_off_take_only_their_days(tmp_path: Path) -> None:
    assert _run(tmp_path, _days(0), params={"start_ds": D.isoformat()}) == []
    assert _run(tmp_path, _days(0), catch_up_days=0) == []
    assert _run(tmp_path, []) == []


def test_catch_up_days_must_not_be_negative(tmp_path: Path) -> None:
    from loopline.settings import SettingsError

    with pytest.raises(SettingsError, match="LOOPLINE_CATCH_UP_DAYS"):
        Settings(home=tmp_path, catch_up_days=-1)


def test_a_failing_caught_up_day_is_skipped_but_a_failing_own_day_fails_the_run() -> None:
    from loopline_airflow.project_tasks import run_one_day

    def boom() -> None:
        raise ValueError("predictions suite failed")

    skipped: dict[str, str] = {}
    assert run_one_day(lambda: {"ds": "x"}, D, [], skipped, "scoring") == {"ds": "x"}
    assert run_one_day(boom, D - dt.timedelta(days=2), _days(-2), skipped, "scoring") is None
    assert skipped == {(D - dt.timedelta(days=2)).isoformat(): "catch-up failed: predictions suite failed"}
    with pytest.raises(ValueError, match="predictions suite failed"):
        run_one_day(boom, D, _days(-2), skipped, "scoring")


@pytest.mark.parametrize(("start", "end", "limit", "refused"), [
    ("2013-01-01", "2013-12-31", None, False),       # 365 days: within the default 366
    ("2013-01-01", "2014-01-02", None, True),        # 367 days
    ("2013-01-01", "2013-01-10", "5", True),         # a smaller limit from the environment
    ("2013-01-10", "2013-01-01", None, True),        # an end before the start
])
def test_a_manual_run_over_too_many_days_is_refused_without_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: str, end: str, limit: str | None, refused: bool
) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from loopline_airflow.project_tasks import days_for_run

    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path))
    if limit:
        monkeypatch.setenv("LOOPLINE_MAX_MANUAL_DAYS", limit)
    context: dict[str, Any] = {**make_context(), "params": {"start_ds": start, "end_ds": end}}
    if refused:
        with pytest.raises(AirflowFailException, match=r"days|before its start"):
            days_for_run(context, None)  # type: ignore[arg-type]
    else:
        days = days_for_run(context, None)  # type: ignore[arg-type]
        assert days[0].isoformat() == start and days[-1].isoformat() == end
