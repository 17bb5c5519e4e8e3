"""One typed settings object for the whole project.

Every value comes from an environment variable with the ``LOOPLINE_`` prefix (the Airflow layer may
override them from Airflow Variables) and defaults to something that runs locally with nothing else
installed: a folder store and an MLflow tracking database under ``.loopline/`` in the working directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _default_home() -> Path:
    return Path.cwd() / ".loopline"


@dataclass(frozen=True)
class Settings:
    """Loopline configuration.

    Attributes:
        home: Folder for local state (store, MLflow database, reports). ``LOOPLINE_HOME``.
        store_root: URI of the partition store root (``file://``, ``s3://``, ``gs://``). ``LOOPLINE_STORE_ROOT``.
        store_conn_id: Airflow connection the Airflow layer opens the store root with
            (``LOOPLINE_STORE_CONN_ID``; default by scheme: ``aws_default`` for ``s3://``,
            ``google_cloud_default`` for ``gs://``). Not used outside Airflow.
        store_options: fsspec storage options for the store root as a JSON object, used outside Airflow
            (``LOOPLINE_STORE_OPTIONS``, e.g. ``{"endpoint_url": "http://127.0.0.1:9000"}``). Keep secrets out
            of it: s3fs and gcsfs read the standard ``AWS_*`` / ``GOOGLE_APPLICATION_CREDENTIALS`` variables.
        mlflow_tracking_uri: MLflow tracking URI. ``LOOPLINE_MLFLOW_TRACKING_URI``.
        mlflow_artifact_root: Artifact location for the experiment when Loopline creates it.
        experiment_name: MLflow experiment for training runs.
        model_name: Registered model name.
        feature_set_version: Version of the feature definitions that partitions are written under.
        seed: Random seed for training.
        train_window_days: Days of features a training run uses (ending at its as-of day).
        validation_days: Trailing days of the window held out for evaluation (time-based split).
        score_batch_rows: Rows per record batch when scoring a partition.
        drift_window_days: Trailing days the daily drift check compares with the training reference. A single
            day cannot look like weeks of training data when features are constant within a day (its weather,
            its weekday), so the check for day d covers d - window + 1 .. d.
        drift_share: Share of drifted features that makes the data drifted (``LOOPLINE_DRIFT_SHARE``).
        retrain_cooldown_days: A drift retrain is skipped when its window ends within this many days of the
            newest registered version's window.
        catch_up_days: An asset-triggered scoring (drift) run also takes the days of this many days before its
            newest triggering day that have features (predictions) but no predictions (drift report): a day
            whose asset event never became a run is done by the next run instead of never
            (``LOOPLINE_CATCH_UP_DAYS``; 0 turns it off).
        bigquery_flights_table / bigquery_weather_table: Fully qualified tables (``project.dataset.table``)
            the BigQuery raw source reads (``LOOPLINE_RAW_SOURCE=bigquery``).
        bigquery_project: Project that runs (and pays for) the query jobs; default: the connection's project.
        bigquery_location: Location of the query jobs (``US``, ``EU``, ``europe-west1``…); default: the
            connection's.
        bigquery_conn_id: Airflow connection of the BigQuery source (``google_cloud_default``).
        bigquery_day_column: A ``DATE`` column of both tables holding the row's day (their partitioning
            column), so queries prune partitions; default: ``DATE(year, month, day)``.
    """

    home: Path = field(default_factory=_default_home)
    store_root: str = ""
    store_conn_id: str = ""
    store_options: str = ""
    mlflow_tracking_uri: str = ""
    mlflow_artifact_root: str = ""
    experiment_name: str = "loopline"
    model_name: str = "loopline_flight_delay"
    feature_set_version: str = "1"
    seed: int = 42
    train_window_days: int = 60
    validation_days: int = 7
    score_batch_rows: int = 65_536
    drift_window_days: int = 14
    drift_share: float = 0.5
    retrain_cooldown_days: int = 14
    catch_up_days: int = 7
    bigquery_flights_table: str = ""
    bigquery_weather_table: str = ""
    bigquery_project: str = ""
    bigquery_location: str = ""
    bigquery_conn_id: str = "google_cloud_default"
    bigquery_day_column: str = ""

    def __post_init__(self) -> None:
        home = Path(self.home).resolve()
        object.__setattr__(self, "home", home)
        if not self.store_root:
            object.__setattr__(self, "store_root", (home / "store").as_uri())
        if not self.mlflow_tracking_uri:
            object.__setattr__(self, "mlflow_tracking_uri", f"sqlite:///{home / 'mlflow.db'}")
        if not self.mlflow_artifact_root:
            object.__setattr__(self, "mlflow_artifact_root", (home / "mlartifacts").as_uri())
        if self.validation_days >= self.train_window_days:
            raise SettingsError(
                f"LOOPLINE_VALIDATION_DAYS ({self.validation_days}) must be smaller than "
                f"LOOPLINE_TRAIN_WINDOW_DAYS ({self.train_window_days})"
            )
        if not 0 < self.drift_share <= 1:
            raise SettingsError(f"LOOPLINE_DRIFT_SHARE must be in (0, 1], got {self.drift_share}")
        if self.drift_window_days < 1:
            raise SettingsError(f"LOOPLINE_DRIFT_WINDOW_DAYS must be at least 1, got {self.drift_window_days}")
        if self.catch_up_days < 0:
            raise SettingsError(f"LOOPLINE_CATCH_UP_DAYS must be 0 or more, got {self.catch_up_days}")
        if not self.feature_set_version or "/" in self.feature_set_version:
            raise SettingsError("LOOPLINE_FEATURE_SET_VERSION must be a non-empty name without '/'")
        self.storage_options()  # a malformed LOOPLINE_STORE_OPTIONS fails here, not at the first write

    def storage_options(self) -> dict[str, Any]:
        """``store_options`` parsed: the fsspec storage options of the store root outside Airflow."""
        if not self.store_options.strip():
            return {}
        try:
            options = json.loads(self.store_options)
        except ValueError as exc:
            raise SettingsError(f"LOOPLINE_STORE_OPTIONS is not JSON: {exc}") from exc
        if not isinstance(options, dict):
            raise SettingsError(f"LOOPLINE_STORE_OPTIONS must be a JSON object, got {type(options).__name__}")
        return options

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``LOOPLINE_*`` variables; keyword overrides win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"LOOPLINE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The settings as ``LOOPLINE_*`` variables, to hand to a subprocess."""
        return {f"LOOPLINE_{f.name.upper()}": str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError as exc:
        raise SettingsError(f"LOOPLINE_{name.upper()}={raw!r} is not a {kind} number") from exc
    return raw
