from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from loopline.features import (
    FEATURE_SETS,
    KEY_COLUMNS,
    OUTCOME_COLUMNS,
    UnknownFeatureSetError,
    build_features,
    features_for_day,
    model_columns,
)
from loopline.sources import NycFlights13Source

pytestmark = pytest.mark.unit
DAY = dt.date(2013, 2, 8)  # the February 2013 blizzard: many cancellations


@pytest.fixture(scope="module")
def feats(source: NycFlights13Source) -> pd.DataFrame:
    return features_for_day(source, DAY, "1")


def test_declared_columns_and_dtypes(feats: pd.DataFrame) -> None:
    defs = FEATURE_SETS["1"]
    assert list(feats.columns) == list(KEY_COLUMNS) + [d.name for d in defs] + list(OUTCOME_COLUMNS)
    for d in defs:
        assert str(feats[d.name].dtype) == ("string" if d.dtype == "string" else d.dtype), d.name
        assert d.description
    assert feats["flight_id"].is_unique


def test_weather_is_point_in_time(source: NycFlights13Source, feats: pd.DataFrame) -> None:
    weather = source.weather(DAY)
    # Each flight's temperature must equal the latest observation at its origin at or before departure - 1 h.
    sample = feats.sample(50, random_state=0)
    for _, row in sample.iterrows():
        as_of = row["scheduled_departure_utc"] - pd.Timedelta(hours=1)
        obs = weather[(weather["origin"] == row["origin"]) & (weather["time_hour"] <= as_of)]
        obs = obs[obs["time_hour"] >= as_of - pd.Timedelta(hours=3)]
        if obs.empty:
            assert pd.isna(row["temp"])
        else:
            assert row["temp"] == obs.sort_values("time_hour")["temp"].iloc[-1]


def test_future_weather_cannot_leak(source: NycFlights13Source) -> None:
    flights, weather = source.flights(DAY), source.weather(DAY)
    base = build_features(flights, weather, "1", DAY)
    poisoned = weather.copy()
    # Change every observation less than one hour before each departure hour: features must not move.
    poisoned.loc[poisoned["time_hour"].dt.hour >= 0, "temp"] += 0  # no-op guard for dtype
    latest_departure = flights["time_hour"].max()
    future = poisoned["time_hour"] > latest_departure - pd.Timedelta(hours=1)
    poisoned.loc[future, "temp"] = 999.0
    assert future.any()
    again = build_features(flights, poisoned, "1", DAY)
    assert (again["temp"] != 999.0).all()
    pd.testing.assert_frame_equal(base.drop(columns=["temp"]), again.drop(columns=["temp"]))


def test_labels_cover_cancelled_and_diverted(feats: pd.DataFrame, source: NycFlights13Source) -> None:
    raw = source.flights(DAY)
    assert (feats["status"] == "cancelled").sum() == raw["dep_time"].isna().sum() > 100
    diverted = raw["dep_time"].notna() & raw["arr_delay"].isna()
    assert (feats["status"] == "diverted").sum() == diverted.sum()
    assert set(feats.loc[feats["status"] != "on_time", "label"]) == {1}
    on_time = feats["status"] == "on_time"
    assert (feats.loc[on_time, "arr_delay"] <= 15).all() and set(feats.loc[on_time, "label"]) == {0}


def test_model_never_sees_outcomes_or_keys() -> None:
    for version in FEATURE_SETS:
        cols = set(model_columns(version))
        assert not cols & (set(OUTCOME_COLUMNS) | set(KEY_COLUMNS))


def test_feature_set_v2_adds_without_changing_v1(source: NycFlights13Source, feats: pd.DataFrame) -> None:
    v2 = features_for_day(source, DAY, "2")
    assert set(model_columns("2")) - set(model_columns("1")) == {"weather_age_minutes"}
    pd.testing.assert_frame_equal(v2[list(feats.columns)], feats)
    with pytest.raises(UnknownFeatureSetError, match="known versions"):
        model_columns("99")


def test_deterministic(source: NycFlights13Source, feats: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(features_for_day(source, DAY, "1"), feats)
