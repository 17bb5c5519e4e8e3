"""The flights project's feature builder and label rules.

**Point in time.** A flight's features are what was known one hour before its scheduled departure: the schedule
and the latest hourly weather observation at the origin at or before that moment (up to three hours old; older
means missing). Nothing that happens at or after departure is a feature.

**Labels** (known the next day; never model inputs):

- ``disrupted`` is ``"yes"`` when the flight arrived more than 15 minutes late, was cancelled (no departure
  time) or was diverted (departed, no arrival delay); ``status`` keeps which (``on_time`` / ``delayed`` /
  ``cancelled`` / ``diverted``).
- ``arr_delay`` is the arrival delay in minutes of the flights that arrived; missing (no label) otherwise.
- A day whose feed lost the arrival delays (more than ``MAX_UNEXPLAINED_SHARE`` of departed flights without
  one) is an outage, not a day of diversions: those flights get no ``disrupted`` label at all, so an empty
  column can never label every flight "diverted". Non-finite delays are no labels either.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

DELAY_THRESHOLD_MINUTES = 15
WEATHER_MAX_AGE = "3h"
MAX_UNEXPLAINED_SHARE = 0.2
WEATHER = ["temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib"]


def _minutes(hhmm: pd.Series) -> pd.Series:
    return (hhmm // 100) * 60 + hhmm % 100


def build(tables: dict[str, pd.DataFrame], ds: dt.date) -> pd.DataFrame:
    """The day's features, keys and labels (the project's ``features.build``)."""
    f = tables["flights"].copy()
    if f.empty:
        return f
    w = tables["weather"]
    f["flight_id"] = (
        f["year"].astype(str) + f["month"].map("{:02d}".format) + f["day"].map("{:02d}".format) + "-"
        + f["carrier"] + f["flight"].astype(str) + "-" + f["origin"] + "-" + f["sched_dep_time"].astype(str)
    )
    f["scheduled_departure_utc"] = f["time_hour"]
    f["sched_dep_minute"] = _minutes(f["sched_dep_time"]).astype("float64")
    f["sched_block_minutes"] = ((_minutes(f["sched_arr_time"]) - _minutes(f["sched_dep_time"])) % 1440).astype(
        "float64")
    f["day_of_week"] = float(ds.weekday())
    f["distance"] = f["distance"].astype("float64")

    # Point in time: the latest observation at the origin at or before (departure hour - 1 h).
    f["_as_of"] = f["time_hour"] - pd.Timedelta(hours=1)
    obs = w.rename(columns={"time_hour": "_obs_time"})[["origin", "_obs_time", *WEATHER]].sort_values(
        "_obs_time", kind="stable")
    f = f.sort_values("_as_of", kind="stable")
    if len(obs):
        f = pd.merge_asof(f, obs, left_on="_as_of", right_on="_obs_time", by="origin", direction="backward",
                          tolerance=pd.Timedelta(WEATHER_MAX_AGE))
    else:
        for col in WEATHER:
            f[col] = np.nan

    delay = pd.to_numeric(f["arr_delay"], errors="coerce").astype("float64")
    delay = delay.where(np.isfinite(delay))
    cancelled = f["dep_time"].isna()
    unexplained = ~cancelled & delay.isna()
    departed = int((~cancelled).sum())
    outage = departed > 0 and unexplained.sum() / departed > MAX_UNEXPLAINED_SHARE
    delayed = ~cancelled & delay.notna() & (delay > DELAY_THRESHOLD_MINUTES)
    f["status"] = np.select([cancelled, unexplained, delayed], ["cancelled", "diverted", "delayed"], "on_time")
    f["disrupted"] = np.where(f["status"] == "on_time", "no", "yes")
    if outage:
        f.loc[unexplained, "disrupted"] = None
        f.loc[unexplained, "status"] = None
    f["arr_delay"] = delay
    return f.drop(columns=["_as_of"])
