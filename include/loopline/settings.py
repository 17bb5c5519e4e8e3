"""One typed settings object for the whole project.

Every value comes from an environment variable with the ``LOOPLINE_`` prefix (the Airflow layer may
override them from Airflow Variables) and defaults to something that runs locally with nothing else
installed: a folder store and an MLflow tracking database under ``.loopline/`` in the working directory.

Settings are checked once, when they are built: a value out of its domain, an unparsable number, an
unusable store root and a ``LOOPLINE_*`` variable that looks like a misspelt known one each raise
:class:`SettingsError`, whose message names the variable, the bad value and what to write instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loopline.redact import mask_url

log = logging.getLogger(__name__)

PREFIX = "LOOPLINE_"

STORE_SCHEMES: tuple[str, ...] = ("file", "s3", "s3a", "gs", "gcs", "memory")
"""Schemes ``LOOPLINE_STORE_ROOT`` may use: a local folder, S3 (``s3a`` is s3fs's alias, mapped to
``aws_default`` like ``s3``), GCS (``gcs`` is gcsfs's alias) and fsspec's in-process ``memory://`` for tests.
A bare absolute path is accepted and stored as its ``file://`` URI."""

BUCKET_SCHEMES: tuple[str, ...] = ("s3", "s3a", "gs", "gcs")

OTHER_VARIABLES: dict[str, str] = {
    # The drift decision's knobs (LOOPLINE_DRIFT_SHARE is also a setting).
    "LOOPLINE_PSI_BANDS": "loopline.drift.config.DriftConfig.from_env",
    "LOOPLINE_DRIFT_SEVERITY": "loopline.drift.config.DriftConfig.from_env",
    "LOOPLINE_SEVERITY_METRIC": "loopline.drift.config.DriftConfig.from_env",
    "LOOPLINE_KEY_FEATURES": "loopline.drift.config.DriftConfig.from_env",
    "LOOPLINE_KEY_FEATURE_SHARE": "loopline.drift.config.DriftConfig.from_env",
    "LOOPLINE_PREDICTION_COLUMN": "loopline.drift.config.DriftConfig.from_env",
    "LOOPLINE_PERFORMANCE_METRIC": "loopline.drift.config.DriftConfig.from_env",
    "LOOPLINE_MAX_PERFORMANCE_DROP": "loopline.drift.config.DriftConfig.from_env",
    "LOOPLINE_DRIFT_SMOOTHING": "loopline.drift.config.DriftConfig.from_env",
    # Read by the Airflow layer and the tools, outside this object.
    "LOOPLINE_DRIFT_POLL_SECONDS": "loopline_airflow.factory (the drift watcher's poll interval)",
    "LOOPLINE_ALERT_WEBHOOK": "loopline_airflow.dag_defaults (failure alerts)",
    "LOOPLINE_PROJECTS_PATH": "loopline.project.loader (extra project folders)",
    "LOOPLINE_PRELOAD": "loopline_dev.stack (the generated airflow_local_settings.py)",
    "LOOPLINE_SQLITE_TIMEOUT": "loopline_dev.stack (the generated airflow_local_settings.py)",
    "LOOPLINE_STACK_HOME": "loopline_dev.stack (make stack)",
    "LOOPLINE_STACK_DATABASE": "loopline_dev.stack (make stack)",
    "LOOPLINE_STACK_PG_URL": "loopline_dev.stack (make stack)",
    "LOOPLINE_STACK_REDIS_URL": "loopline_dev.stack (make stack)",
    "LOOPLINE_STACK_WORKERS": "loopline_dev.stack (make stack)",
}
"""``LOOPLINE_*`` variables that are not fields of :class:`Settings` but are read elsewhere, with their reader.

With the fields of :class:`Settings` they make the allow-list :func:`check_environment` checks against; a
unit test fails when the code reads a ``LOOPLINE_*`` name missing here, or when a name here is no longer read.
"""

_OPTIONS_HINT = 'write a JSON object such as {"endpoint_url": "http://127.0.0.1:9000"}'
_TYPO_CUTOFF = 0.8  # difflib ratio of the part after LOOPLINE_: STOR_ROOT ~ STORE_ROOT is 0.95
_warned: set[str] = set()


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _default_home() -> Path:
    return Path.cwd() / ".loopline"


def _var(name: str) -> str:
    return f"{PREFIX}{name.upper()}"


# field → (smallest allowed value, largest allowed value or None); every int field is listed.
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "seed": (0, 2**32 - 1),  # numpy and scikit-learn take seeds in [0, 2**32)
    "train_window_days": (2, None),
    "validation_days": (1, None),
    "score_batch_rows": (1, None),
    "drift_window_days": (1, None),
    "retrain_cooldown_days": (0, None),
    "max_manual_days": (1, None),
}


@dataclass(frozen=True)
class Settings:
    """Loopline configuration.

    Attributes:
        home: Folder for local state (store, MLflow database, reports). ``LOOPLINE_HOME``.
        store_root: URI of the partition store root (``file://``, ``s3://``, ``gs://``; ``memory://`` in tests)
            or an absolute path, kept as its ``file://`` URI. ``LOOPLINE_STORE_ROOT``.
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
        seed: Random seed for training, in ``[0, 2**32)``.
        train_window_days: Days of features a training run uses (ending at its as-of day).
        validation_days: Trailing days of the window held out for evaluation (time-based split).
        score_batch_rows: Rows per record batch when scoring a partition.
        drift_window_days: Trailing days the daily drift check compares with the training reference. A single
            day cannot look like weeks of training data when features are constant within a day (a day's
            conditions, its weekday), so the check for day d covers d - window + 1 .. d.
        drift_share: Share of drifted features that makes the data drifted (``LOOPLINE_DRIFT_SHARE``).
        retrain_cooldown_days: A drift retrain is skipped when its window ends within this many days of the
            newest registered version's window.
        max_manual_days: Longest range, in days, a manual scoring or drift run may cover
            (``LOOPLINE_MAX_MANUAL_DAYS``, default 366); see :func:`check_manual_range`.

    Raises:
        SettingsError: A value out of its domain (see the module docstring); the message names the variable.
    """

    home: Path = field(default_factory=_default_home)
    store_root: str = ""
    store_conn_id: str = ""
    store_options: str = ""
    mlflow_tracking_uri: str = ""
    mlflow_artifact_root: str = ""
    experiment_name: str = "loopline"
    model_name: str = "loopline_model"
    feature_set_version: str = "1"
    seed: int = 42
    train_window_days: int = 60
    validation_days: int = 7
    score_batch_rows: int = 65_536
    drift_window_days: int = 14
    drift_share: float = 0.5
    retrain_cooldown_days: int = 14
    max_manual_days: int = 366

    def __post_init__(self) -> None:
        home = Path(self.home).resolve()
        object.__setattr__(self, "home", home)
        object.__setattr__(self, "store_root", _store_root(self.store_root) if self.store_root
                           else (home / "store").as_uri())
        if not self.mlflow_tracking_uri:
            object.__setattr__(self, "mlflow_tracking_uri", f"sqlite:///{home / 'mlflow.db'}")
        if not self.mlflow_artifact_root:
            object.__setattr__(self, "mlflow_artifact_root", (home / "mlartifacts").as_uri())
        self._check_numbers()
        if self.validation_days >= self.train_window_days:
            raise SettingsError(
                f"LOOPLINE_VALIDATION_DAYS ({self.validation_days}) must be smaller than "
                f"LOOPLINE_TRAIN_WINDOW_DAYS ({self.train_window_days}): the validation days are the window's last "
                "days, so some must be left to train on; write a smaller LOOPLINE_VALIDATION_DAYS or a larger "
                "LOOPLINE_TRAIN_WINDOW_DAYS"
            )
        for name in ("experiment_name", "model_name"):
            if not getattr(self, name).strip():
                raise SettingsError(f"{_var(name)} is empty; write a name, e.g. {_default(name)}")
        if not self.feature_set_version or "/" in self.feature_set_version:
            raise SettingsError(f"LOOPLINE_FEATURE_SET_VERSION={self.feature_set_version!r} cannot name a folder; "
                                "write a non-empty name without '/', e.g. 1 (the default) or 2")
        self.storage_options()  # a malformed LOOPLINE_STORE_OPTIONS fails here, not at the first write

    def _check_numbers(self) -> None:
        for name, (low, high) in _INT_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SettingsError(f"{_var(name)}={value!r} is not a whole number; {_int_hint(name)}")
            if value < low or (high is not None and value > high):
                raise SettingsError(f"{_var(name)}={value!r} is out of range; {_int_hint(name)}")
        share = self.drift_share
        number = isinstance(share, int | float) and not isinstance(share, bool)
        if not number or not math.isfinite(share) or not 0 < share <= 1:
            raise SettingsError(f"LOOPLINE_DRIFT_SHARE={share!r} is out of range; write a number in (0, 1], e.g. "
                                "0.5 (the default: half of the features drifted) or 1 (every feature)")

    def storage_options(self) -> dict[str, Any]:
        """``store_options`` parsed: the fsspec storage options of the store root outside Airflow."""
        if not self.store_options.strip():
            return {}
        try:
            options = json.loads(self.store_options)
        except ValueError as exc:
            # The value is not shown: despite the advice it may hold keys.
            raise SettingsError(f"LOOPLINE_STORE_OPTIONS is not JSON ({exc}); {_OPTIONS_HINT}") from exc
        if not isinstance(options, dict):
            raise SettingsError(f"LOOPLINE_STORE_OPTIONS must be a JSON object, got a JSON {type(options).__name__}; "
                                f"{_OPTIONS_HINT}")
        return options

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``LOOPLINE_*`` variables; keyword overrides win over the environment.

        Raises:
            SettingsError: A value cannot be parsed or is out of its domain, or a ``LOOPLINE_*`` variable
                looks like a misspelt known one (:func:`check_environment`); the message names the variable.
        """
        env = os.environ if environ is None else environ
        check_environment(env)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(_var(f.name))
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The settings as ``LOOPLINE_*`` variables, to hand to a subprocess."""
        return {_var(f.name): str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def settings_variables() -> frozenset[str]:
    """The ``LOOPLINE_*`` variables :meth:`Settings.from_env` reads: one per field."""
    return frozenset(_var(f.name) for f in dataclasses.fields(Settings))


def known_variables() -> frozenset[str]:
    """Every ``LOOPLINE_*`` variable Loopline reads: the settings and :data:`OTHER_VARIABLES`."""
    return settings_variables() | frozenset(OTHER_VARIABLES)


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse a ``LOOPLINE_*`` variable that looks like a misspelling of a known one; log any other unknown one.

    A near miss (``STOR_ROOT`` for ``STORE_ROOT`` after the prefix, or a known name in lower case) would otherwise
    be ignored and its default used silently, so it is an error. A ``LOOPLINE_*`` name close to none is logged once
    as a warning instead: it may belong to a newer Loopline or to the deployment's own tooling.

    Raises:
        SettingsError: A variable close to a known one; the message names both.
    """
    known = known_variables()
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or name in known:
            continue
        if upper in known:
            raise SettingsError(f"{name} is not read (names are case-sensitive); rename it to {upper}")
        suffixes = {k.removeprefix(PREFIX): k for k in known}
        close = difflib.get_close_matches(upper.removeprefix(PREFIX), list(suffixes), n=1, cutoff=_TYPO_CUTOFF)
        if close:
            raise SettingsError(f"{name} is not a Loopline variable; did you mean {suffixes[close[0]]}? Rename it "
                                "(its value is ignored otherwise)")
        if name not in _warned:
            _warned.add(name)
            log.warning("%s is not a variable Loopline reads; it is ignored", name)


def check_manual_range(start: dt.date | str, end: dt.date | str, settings: Settings) -> None:
    """Refuse a manual scoring or drift run over more than ``settings.max_manual_days`` days.

    Args:
        start: First day of the run (a date or ``YYYY-MM-DD``).
        end: Last day of the run, inclusive.
        settings: The settings holding ``max_manual_days`` (``LOOPLINE_MAX_MANUAL_DAYS``).

    Raises:
        SettingsError: ``end`` is before ``start``, a day is not a date, or the range has more days than
            allowed; the message gives the range, its length and what to do.
    """
    first, last = _day(start, "start"), _day(end, "end")
    if last < first:
        raise SettingsError(f"the run's end {last} is before its start {first}; swap them")
    days = (last - first).days + 1
    if days > settings.max_manual_days:
        raise SettingsError(
            f"a manual run over {first}..{last} ({days} days) is refused: it is longer than "
            f"LOOPLINE_MAX_MANUAL_DAYS={settings.max_manual_days}; split it into runs of at most "
            f"{settings.max_manual_days} days, or raise LOOPLINE_MAX_MANUAL_DAYS if the long run is intended"
        )


def _day(value: dt.date | str, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise SettingsError(f"the run's {what} {value!r} is not a day; write YYYY-MM-DD") from exc


def _default(name: str) -> Any:
    return {f.name: f.default for f in dataclasses.fields(Settings)}[name]


def _int_hint(name: str) -> str:
    low, high = _INT_RANGES[name]
    bound = f"from {low} to {high}" if high is not None else f"≥ {low}"
    return f"write a whole number {bound}, e.g. {_default(name)} (the default)"


def _store_root(raw: str) -> str:
    """``LOOPLINE_STORE_ROOT`` checked: a URI of :data:`STORE_SCHEMES`, or an absolute path made a file URI."""
    root = raw.strip()
    shown = f"LOOPLINE_STORE_ROOT={mask_url(raw)!r}"
    examples = "write file:///abs/path, s3://bucket/prefix or gs://bucket/prefix (memory:// in tests)"
    parts = urlsplit(root)
    if not parts.scheme:
        path = Path(root).expanduser()
        if not path.is_absolute():
            raise SettingsError(f"{shown} is a relative path, which each Airflow process would resolve against its "
                                f"own working directory; write an absolute path or a URI: {examples}")
        return path.resolve().as_uri()
    if parts.scheme not in STORE_SCHEMES:
        raise SettingsError(f"{shown}: the scheme {parts.scheme!r} is not one Loopline stores to; {examples}")
    if not root.startswith(f"{parts.scheme}://"):
        raise SettingsError(f"{shown} is not a {parts.scheme}:// URI (lower-case scheme, then '://'); {examples}")
    if parts.scheme in BUCKET_SCHEMES and not parts.netloc:
        raise SettingsError(f"{shown} names no bucket; write {parts.scheme}://bucket/prefix")
    if parts.scheme == "file":
        if parts.netloc:  # fsspec reads file://data/x (and file://localhost/x) as the relative path data/x
            raise SettingsError(f"{shown} has {parts.netloc!r} where a file URI has nothing, so the path would be "
                                f"relative; write three slashes: file:///{parts.netloc}{parts.path}")
        if parts.path in ("", "/"):
            raise SettingsError(f"{shown} names no folder; write file:///abs/path")
    return root


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as exc:
        what = "a whole number" if kind == "int" else "a number"
        hint = _int_hint(name) if kind == "int" else f"write a decimal number, e.g. {_default(name)} (the default)"
        raise SettingsError(f"{_var(name)}={raw!r} is not {what}; {hint}") from exc
    if kind == "Path":
        return Path(raw)
    return raw
