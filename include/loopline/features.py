"""Feature definitions: one code path for training and for scoring.

Every feature is declared once (name, dtype, kind, description) in a versioned feature set. Training and
scoring both call :func:`build_features`, and the model only ever sees :func:`model_columns` of a
partition, so what the model was trained on is what it is scored on.

**Point in time.** A flight's features are what was known one hour before its scheduled departure: the
schedule itself and the latest hourly weather observation at the origin at or before that moment (up to
three hours old; older means missing). Nothing that happens at or after departure is a feature.

**Label.** ``label = 1`` when the flight was *disrupted* for its passengers: it arrived more than 15 minutes
late, or it was cancelled (no departure time), or it was diverted (departed but no arrival delay recorded).
``status`` keeps the distinction (``on_time`` / ``delayed`` / ``cancelled`` / ``diverted``). Labels of a
day are known the next day; they live in the partition beside the features but are never model inputs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from loopline.sources import RawSource
from loopline.store import as_day

if TYPE_CHECKING:
    import pandas as pd

DELAY_THRESHOLD_MINUTES = 15
WEATHER_MAX_AGE = "3h"
FEATURES_DATASET = "features"


@dataclass(frozen=True)
class FeatureDef:
    """One model input."""

    name: str
    dtype: str
    kind: Literal["numeric", "categorical"]
    description: str


KEY_COLUMNS: tuple[str, ...] = ("flight_id", "ds", "scheduled_departure_utc")
OUTCOME_COLUMNS: tuple[str, ...] = ("status", "label", "arr_delay")

_SCHEDULE = [
    FeatureDef("carrier", "string", "categorical", "Two-letter carrier code."),
    FeatureDef("origin", "string", "categorical", "Origin airport (EWR, JFK, LGA)."),
    FeatureDef("dest", "string", "categorical", "Destination airport (FAA code)."),
    FeatureDef("sched_dep_minute", "float64", "numeric", "Scheduled departure, minutes after local midnight."),
    FeatureDef("sched_block_minutes", "float64", "numeric",
               "Scheduled gate-to-gate time in minutes (scheduled arrival minus departure, local clocks)."),
    FeatureDef("day_of_week", "float64", "numeric", "Day of week of the scheduled departure (0 = Monday)."),
    FeatureDef("distance", "float64", "numeric", "Great-circle distance in miles."),
]
_WEATHER = [
    FeatureDef("temp", "float64", "numeric", "Origin temperature (°F), last observation ≥ 1 h before departure."),
    FeatureDef("dewp", "float64", "numeric", "Origin dew point (°F), same observation."),
    FeatureDef("humid", "float64", "numeric", "Origin relative humidity (%), same observation."),
    FeatureDef("wind_speed", "float64", "numeric", "Origin wind speed (mph), same observation."),
    FeatureDef("wind_gust", "float64", "numeric", "Origin wind gust (mph; missing when calm), same observation."),
    FeatureDef("precip", "float64", "numeric", "Origin precipitation (inches), same observation."),
    FeatureDef("pressure", "float64", "numeric", "Origin sea-level pressure (mbar), same observation."),
    FeatureDef("visib", "float64", "numeric", "Origin visibility (miles), same observation."),
]
_V2_EXTRA = [
    FeatureDef("weather_age_minutes", "float64", "numeric",
               "Age of the weather observation used, in minutes, at one hour before departure."),
]

FEATURE_SETS: dict[str, tuple[FeatureDef, ...]] = {
    "1": tuple(_SCHEDULE + _WEATHER),
    "2": tuple(_SCHEDULE + _WEATHER + _V2_EXTRA),
}


class UnknownFeatureSetError(KeyError):
    def __str__(self) -> str:
        return f"feature set version {self.args[0]!r} is not defined; known versions: {sorted(FEATURE_SETS)}"


def feature_set(version: str) -> tuple[FeatureDef, ...]:
    """The feature definitions of a feature-set version."""
    try:
        return FEATURE_SETS[version]
    except KeyError:
        raise UnknownFeatureSetError(version) from None


def model_columns(version: str) -> list[str]:
    """Columns the model reads, in order."""
    return [f.name for f in feature_set(version)]


def categorical_columns(version: str) -> list[str]:
    return [f.name for f in feature_set(version) if f.kind == "categorical"]


def numeric_columns(version: str) -> list[str]:
    return [f.name for f in feature_set(version) if f.kind == "numeric"]


def feature_kinds(version: str) -> dict[str, str]:
    return {f.name: f.kind for f in feature_set(version)}


def _minutes(hhmm: pd.Series) -> pd.Series:
    return (hhmm // 100) * 60 + hhmm % 100


def build_features(flights: pd.DataFrame, weather: pd.DataFrame, version: str, ds: dt.date) -> pd.DataFrame:
    """Features, keys and outcomes of one day's flights.

    Args:
        flights: The day's validated raw flights.
        weather: Validated raw weather covering the day and the day before (for early departures).
        version: Feature-set version.
        ds: The day (local date of scheduled departure).

    Returns:
        One row per flight, sorted by scheduled departure then flight id: key columns, the feature set's
        columns with their declared dtypes, then outcome columns.
    """
    import numpy as np
    import pandas as pd

    defs = feature_set(version)
    day = as_day(ds)
    if flights.empty:
        return empty_features(version)
    f = flights.copy()
    f["flight_id"] = (
        f["year"].astype(str) + f["month"].map("{:02d}".format) + f["day"].map("{:02d}".format) + "-"
        + f["carrier"] + f["flight"].astype(str) + "-" + f["origin"] + "-" + f["sched_dep_time"].astype(str)
    )
    f["ds"] = day.isoformat()
    f["scheduled_departure_utc"] = f["time_hour"]
    f["sched_dep_minute"] = _minutes(f["sched_dep_time"]).astype("float64")
    f["sched_block_minutes"] = ((_minutes(f["sched_arr_time"]) - _minutes(f["sched_dep_time"])) % 1440).astype(
        "float64"
    )
    f["day_of_week"] = float(day.weekday())
    f["distance"] = f["distance"].astype("float64")

    # Point in time: the latest weather observation at the origin at or before (departure hour - 1 h).
    f["_as_of"] = f["time_hour"] - pd.Timedelta(hours=1)
    w = weather.rename(columns={"time_hour": "_obs_time"})
    w = w[["origin", "_obs_time"] + [d.name for d in _WEATHER]].sort_values("_obs_time", kind="stable")
    f = f.sort_values("_as_of", kind="stable")
    if len(w):
        f = pd.merge_asof(
            f, w, left_on="_as_of", right_on="_obs_time", by="origin", direction="backward",
            tolerance=pd.Timedelta(WEATHER_MAX_AGE),
        )
    else:
        for d in _WEATHER:
            f[d.name] = np.nan
        f["_obs_time"] = pd.NaT
    f["weather_age_minutes"] = (f["_as_of"] - f["_obs_time"]).dt.total_seconds() / 60.0

    cancelled = f["dep_time"].isna()
    diverted = ~cancelled & f["arr_delay"].isna()
    delayed = ~cancelled & ~diverted & (f["arr_delay"] > DELAY_THRESHOLD_MINUTES)
    f["status"] = np.select([cancelled, diverted, delayed], ["cancelled", "diverted", "delayed"], "on_time")
    f["label"] = (f["status"] != "on_time").astype("int64")

    out = f[list(KEY_COLUMNS) + [d.name for d in defs] + list(OUTCOME_COLUMNS)]
    out = out.sort_values(["scheduled_departure_utc", "flight_id"], kind="stable").reset_index(drop=True)
    for d in defs:
        out[d.name] = out[d.name].astype("string" if d.dtype == "string" else d.dtype)
    out["status"] = out["status"].astype("string")
    out["flight_id"] = out["flight_id"].astype("string")
    out["ds"] = out["ds"].astype("string")
    out["arr_delay"] = out["arr_delay"].astype("float64")
    return out


def empty_features(version: str) -> pd.DataFrame:
    """A features frame with no rows and the declared columns and dtypes."""
    import pandas as pd

    cols: dict[str, pd.Series] = {
        "flight_id": pd.Series(dtype="string"),
        "ds": pd.Series(dtype="string"),
        "scheduled_departure_utc": pd.Series(dtype="datetime64[us, UTC]"),
    }
    cols.update({d.name: pd.Series(dtype=d.dtype) for d in feature_set(version)})
    cols.update({"status": pd.Series(dtype="string"), "label": pd.Series(dtype="int64"),
                 "arr_delay": pd.Series(dtype="float64")})
    return pd.DataFrame(cols)


def features_for_day(source: RawSource, ds: str | dt.date, version: str) -> pd.DataFrame:
    """Read one day (and the previous day's weather) from ``source`` and build its features."""
    import pandas as pd

    day = as_day(ds)
    flights = source.flights(day)
    weather = pd.concat([source.weather(day - dt.timedelta(days=1)), source.weather(day)], ignore_index=True)
    return build_features(flights, weather, version, day)
