"""A second project, built inside the tests, with shapes the flights project never has.

Bike rentals: a CSV source (one file a day), string keys not named like flights' (``rental_ref``), a feature
builder module of the project's own (``rentals.py``), a categorical-only feature with declared values, a
regression label (``minutes``, plausible range 0–1440) and a binary one (``late``, positive ``"Y"``, values
``Y``/``N``), and rows whose labels are missing (bikes not yet returned). From ``DRIFT_FROM`` on, the
temperature shifts by +15 °C and rides get longer, so the drift check has something real to find.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

START = dt.date(2022, 3, 1)
DRIFT_FROM = dt.date(2022, 4, 15)

PROJECT_YAML = """\
project: bikes
start_date: 2022-03-01
description: Bike rentals, a test project of another shape.
sources:
  rentals:
    uri: "rentals/ds={ds}.csv"
    format: csv
    day_column: started_at
features:
  version: 2
  keys: [rental_ref]
  build: "rentals:build"
  columns:
    - {name: station, kind: categorical, values: [north, south, east, west, centre]}
    - {name: bike_type, kind: categorical}
    - {name: start_hour, kind: numeric, range: [0, 23]}
    - {name: temp_c, kind: numeric, range: [-30, 50], max_missing: 0.2}
    - {name: member, kind: numeric, dtype: float64}
models:
  duration:
    task: regression
    label: {column: minutes, range: [0, 1440]}
    label_lag_days: 0
    training: {window_days: 21, validation_days: 5, min_rows: 200}
    drift: {window_days: 7, cooldown_days: 10}
    schedules: {retrain: null}
  late_return:
    task: binary_classification
    label: {column: late, positive: "Y", values: ["Y", "N"]}
    features: [station, start_hour, member]
    estimator:
      factory: "models:logistic"
      params: {c: 0.5}
    metric: {name: pr_auc}
    training: {window_days: 21, validation_days: 5, min_rows: 200}
    promotion: {guardrails: {roc_auc: {min: 0.5}}}
    schedules: {retrain: "0 3 * * 1"}
"""

RENTALS_PY = '''\
"""The bikes project's feature builder: hour of the start, the day's temperature in Celsius."""
import pandas as pd


def build(tables, ds):
    r = tables["rentals"].copy()
    if r.empty:
        return r
    started = pd.to_datetime(r["started_at"])
    r["start_hour"] = started.dt.hour.astype("float64")
    r["temp_c"] = (r["temp_f"] - 32.0) * 5.0 / 9.0
    r["member"] = (r["plan"] == "member").astype("float64")
    return r
'''

MODELS_PY = '''\
"""The bikes project's own estimator: one-hot categoricals into a logistic regression."""
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def logistic(c=1.0, categorical=(), numeric=(), seed=0):
    pre = ColumnTransformer([
        ("cat", Pipeline([("fill", SimpleImputer(strategy="constant", fill_value="missing")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), list(categorical)),
        ("num", SimpleImputer(strategy="median"), list(numeric)),
    ])
    return Pipeline([("features", pre), ("classifier", LogisticRegression(C=c, max_iter=500, random_state=seed))])
'''


def day_frame(day: dt.date, rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """One day of rentals (raw columns; the builder derives the features)."""
    rng = np.random.default_rng(seed * 100_000 + day.toordinal())
    shift = day >= DRIFT_FROM
    station = rng.choice(["north", "south", "east", "west", "centre"], rows)
    bike = rng.choice(["classic", "electric"], rows, p=[0.7, 0.3])
    hour = rng.integers(6, 23, rows)
    minute = rng.integers(0, 60, rows)
    temp_f = rng.normal(80.0 if shift else 50.0, 8.0, rows)
    plan = rng.choice(["member", "casual"], rows)
    base = 12 + 6 * (bike == "classic") + 8 * (plan == "casual") + 0.15 * (temp_f - 50) + (hour >= 17) * 5
    minutes = np.maximum(base + rng.normal(0, 4, rows) + (10 if shift else 0), 1.0)  # a ride lasts a minute at least
    late = np.where(minutes > 30, "Y", "N")
    unreturned = rng.random(rows) < 0.05
    frame = pd.DataFrame({
        "rental_ref": [f"R{day:%Y%m%d}-{i:05d}" for i in range(rows)],
        "started_at": [f"{day.isoformat()}T{h:02d}:{m:02d}:00" for h, m in zip(hour, minute, strict=True)],
        "station": station, "bike_type": bike, "plan": plan, "temp_f": temp_f.round(1),
        "minutes": np.where(unreturned, np.nan, minutes.round(2)),
        "late": np.where(unreturned, None, late),
    })
    return frame


def write_project(root: Path, start: dt.date = START, days: int = 60, rows: int = 300) -> Path:
    """Write the bikes project folder (project.yaml, its modules, ``days`` of CSV data) under ``root``."""
    folder = root / "bikes"
    (folder / "rentals").mkdir(parents=True, exist_ok=True)
    (folder / "project.yaml").write_text(PROJECT_YAML, encoding="utf-8")
    (folder / "rentals.py").write_text(RENTALS_PY, encoding="utf-8")
    (folder / "models.py").write_text(MODELS_PY, encoding="utf-8")
    for i in range(days):
        day = start + dt.timedelta(days=i)
        day_frame(day, rows).to_csv(folder / "rentals" / f"ds={day.isoformat()}.csv", index=False)
    return folder
