from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from pathlib import Path

import pytest
from loopline import settings as settings_module
from loopline.cli import main
from loopline.drift import DriftConfig
from loopline.settings import (
    OTHER_VARIABLES,
    Settings,
    SettingsError,
    check_manual_range,
    known_variables,
    settings_variables,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_defaults_run_locally_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert s.store_root == (tmp_path / "store").as_uri()
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.mlflow_artifact_root.startswith("file://")
    assert s.max_manual_days == 366


def test_environment_overrides_with_prefix(tmp_path: Path) -> None:
    env = {
        "LOOPLINE_HOME": str(tmp_path),
        "LOOPLINE_STORE_ROOT": "s3://bucket/loopline",
        "LOOPLINE_TRAIN_WINDOW_DAYS": "90",
        "LOOPLINE_MODEL_NAME": "m",
        "UNRELATED": "x",
    }
    s = Settings.from_env(env)
    assert (s.store_root, s.train_window_days, s.model_name, s.home) == ("s3://bucket/loopline", 90, "m", tmp_path)
    assert Settings.from_env(env, model_name="other").model_name == "other"


def test_as_env_round_trips(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, seed=7, max_manual_days=30)
    assert Settings.from_env(s.as_env()) == s


# -- bad settings: each message names the variable, shows the value and says what to write -----------------
BAD_VALUES: list[tuple[str, str]] = [
    # batch rows
    ("LOOPLINE_SCORE_BATCH_ROWS", "0"),
    ("LOOPLINE_SCORE_BATCH_ROWS", "-1"),
    ("LOOPLINE_SCORE_BATCH_ROWS", "-65536"),
    ("LOOPLINE_SCORE_BATCH_ROWS", "1.5"),
    ("LOOPLINE_SCORE_BATCH_ROWS", "1e3"),
    ("LOOPLINE_SCORE_BATCH_ROWS", "lots"),
    # store root: unknown schemes, relative paths, malformed URIs
    ("LOOPLINE_STORE_ROOT", "s4://bucket/x"),
    ("LOOPLINE_STORE_ROOT", "http://host/store"),
    ("LOOPLINE_STORE_ROOT", "ftp://host/store"),
    ("LOOPLINE_STORE_ROOT", "hdfs://namenode/store"),
    ("LOOPLINE_STORE_ROOT", "S3://bucket/x"),
    ("LOOPLINE_STORE_ROOT", "s3:bucket/x"),
    ("LOOPLINE_STORE_ROOT", "s3:///prefix"),
    ("LOOPLINE_STORE_ROOT", "gs://"),
    ("LOOPLINE_STORE_ROOT", "store"),
    ("LOOPLINE_STORE_ROOT", "data/store"),
    ("LOOPLINE_STORE_ROOT", "./store"),
    ("LOOPLINE_STORE_ROOT", "file://data/store"),
    ("LOOPLINE_STORE_ROOT", "file://localhost/data/store"),
    ("LOOPLINE_STORE_ROOT", "file://"),
    ("LOOPLINE_STORE_ROOT", "file:/data/store"),
    # cooldown
    ("LOOPLINE_RETRAIN_COOLDOWN_DAYS", "-1"),
    ("LOOPLINE_RETRAIN_COOLDOWN_DAYS", "-14"),
    ("LOOPLINE_RETRAIN_COOLDOWN_DAYS", "1.5"),
    ("LOOPLINE_RETRAIN_COOLDOWN_DAYS", "two weeks"),
    # seed
    ("LOOPLINE_SEED", "-1"),
    ("LOOPLINE_SEED", "-42"),
    ("LOOPLINE_SEED", "4294967296"),
    ("LOOPLINE_SEED", "4.2"),
    ("LOOPLINE_SEED", "forty-two"),
    # window days
    ("LOOPLINE_TRAIN_WINDOW_DAYS", "0"),
    ("LOOPLINE_TRAIN_WINDOW_DAYS", "1"),
    ("LOOPLINE_TRAIN_WINDOW_DAYS", "-60"),
    ("LOOPLINE_TRAIN_WINDOW_DAYS", "60.5"),
    ("LOOPLINE_TRAIN_WINDOW_DAYS", "sixty"),
    ("LOOPLINE_VALIDATION_DAYS", "0"),
    ("LOOPLINE_VALIDATION_DAYS", "-7"),
    ("LOOPLINE_VALIDATION_DAYS", "60"),
    ("LOOPLINE_VALIDATION_DAYS", "3.5"),
    ("LOOPLINE_DRIFT_WINDOW_DAYS", "0"),
    ("LOOPLINE_DRIFT_WINDOW_DAYS", "-7"),
    ("LOOPLINE_DRIFT_WINDOW_DAYS", "14.0"),
    # drift share outside (0, 1]
    ("LOOPLINE_DRIFT_SHARE", "0"),
    ("LOOPLINE_DRIFT_SHARE", "-0.1"),
    ("LOOPLINE_DRIFT_SHARE", "1.01"),
    ("LOOPLINE_DRIFT_SHARE", "2"),
    ("LOOPLINE_DRIFT_SHARE", "nan"),
    ("LOOPLINE_DRIFT_SHARE", "inf"),
    ("LOOPLINE_DRIFT_SHARE", "-inf"),
    ("LOOPLINE_DRIFT_SHARE", "half"),
    # the rest
    ("LOOPLINE_MAX_MANUAL_DAYS", "0"),
    ("LOOPLINE_MAX_MANUAL_DAYS", "-366"),
    ("LOOPLINE_MAX_MANUAL_DAYS", "one year"),
    ("LOOPLINE_FEATURE_SET_VERSION", "v/2"),
]


@pytest.mark.parametrize(("var", "raw"), BAD_VALUES)
def test_bad_value_is_refused_naming_variable_value_and_fix(tmp_path: Path, var: str, raw: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"LOOPLINE_HOME": str(tmp_path), var: raw})
    message = str(info.value)
    assert var in message
    assert raw in message or repr(float(raw)) in message
    assert "write" in message  # what to write instead
    assert " a int " not in message and "Traceback" not in message


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"endpoint"'])
def test_bad_store_options_are_refused_without_echoing_them(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match=r"LOOPLINE_STORE_OPTIONS.*write a JSON object") as info:
        Settings.from_env({"LOOPLINE_HOME": str(tmp_path), "LOOPLINE_STORE_OPTIONS": raw})
    assert raw not in str(info.value)  # the options may hold keys


def test_store_root_credentials_are_masked_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="LOOPLINE_STORE_ROOT") as info:
        Settings(home=tmp_path, store_root="ftp://user:hunter2@host/store")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "var"),
    [
        ("score_batch_rows", 0, "LOOPLINE_SCORE_BATCH_ROWS"),
        ("score_batch_rows", 1.5, "LOOPLINE_SCORE_BATCH_ROWS"),
        ("seed", True, "LOOPLINE_SEED"),
        ("seed", -1, "LOOPLINE_SEED"),
        ("retrain_cooldown_days", -1, "LOOPLINE_RETRAIN_COOLDOWN_DAYS"),
        ("drift_window_days", "14", "LOOPLINE_DRIFT_WINDOW_DAYS"),
        ("drift_share", float("nan"), "LOOPLINE_DRIFT_SHARE"),
        ("drift_share", "0.5", "LOOPLINE_DRIFT_SHARE"),
        ("max_manual_days", 0, "LOOPLINE_MAX_MANUAL_DAYS"),
        ("model_name", " ", "LOOPLINE_MODEL_NAME"),
        ("experiment_name", "", "LOOPLINE_EXPERIMENT_NAME"),
        ("store_root", "relative/store", "LOOPLINE_STORE_ROOT"),
    ],
)
def test_direct_construction_is_checked_too(tmp_path: Path, field: str, value: object, var: str) -> None:
    with pytest.raises(SettingsError, match=var):
        Settings(home=tmp_path, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=var):  # and so is a replace() of good settings
        dataclasses.replace(Settings(home=tmp_path), **{field: value})


# The drift knobs are DriftConfig's (loopline.drift.config); its from_env names the variable too.
@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("LOOPLINE_PSI_BANDS", "0.1,inf"),
        ("LOOPLINE_PSI_BANDS", "inf,inf"),
        ("LOOPLINE_PSI_BANDS", "nan,0.2"),
        ("LOOPLINE_PSI_BANDS", "0.1,nan"),
        ("LOOPLINE_PSI_BANDS", "0.25,0.1"),
        ("LOOPLINE_PSI_BANDS", "0.2,0.2"),
        ("LOOPLINE_PSI_BANDS", "-0.1,0.2"),
        ("LOOPLINE_PSI_BANDS", "0.1"),
        ("LOOPLINE_PSI_BANDS", "0.1,0.2,0.3"),
        ("LOOPLINE_PSI_BANDS", "low,high"),
        ("LOOPLINE_DRIFT_SMOOTHING", "-0.001"),
        ("LOOPLINE_DRIFT_SMOOTHING", "-1e-9"),
        ("LOOPLINE_DRIFT_SMOOTHING", "nan"),
        ("LOOPLINE_DRIFT_SMOOTHING", "inf"),
        ("LOOPLINE_DRIFT_SMOOTHING", "tiny"),
        ("LOOPLINE_DRIFT_SHARE", "0"),
        ("LOOPLINE_DRIFT_SHARE", "nan"),
        ("LOOPLINE_KEY_FEATURE_SHARE", "1.5"),
    ],
)
def test_bad_drift_knob_is_refused_naming_the_variable(var: str, raw: str) -> None:
    with pytest.raises(ValueError, match=var) as info:
        DriftConfig.from_env({var: raw})
    assert repr(raw) in str(info.value)


# -- good values are still accepted --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("var", "raw", "field", "expected"),
    [
        ("LOOPLINE_SCORE_BATCH_ROWS", "1", "score_batch_rows", 1),
        ("LOOPLINE_SCORE_BATCH_ROWS", " 1024 ", "score_batch_rows", 1024),
        ("LOOPLINE_SCORE_BATCH_ROWS", "1_000_000", "score_batch_rows", 1_000_000),
        ("LOOPLINE_RETRAIN_COOLDOWN_DAYS", "0", "retrain_cooldown_days", 0),
        ("LOOPLINE_SEED", "0", "seed", 0),
        ("LOOPLINE_SEED", "4294967295", "seed", 2**32 - 1),
        ("LOOPLINE_TRAIN_WINDOW_DAYS", "8", "train_window_days", 8),
        ("LOOPLINE_VALIDATION_DAYS", "1", "validation_days", 1),
        ("LOOPLINE_DRIFT_WINDOW_DAYS", "1", "drift_window_days", 1),
        ("LOOPLINE_DRIFT_SHARE", "1", "drift_share", 1.0),
        ("LOOPLINE_DRIFT_SHARE", "0.01", "drift_share", 0.01),
        ("LOOPLINE_MAX_MANUAL_DAYS", "1", "max_manual_days", 1),
        ("LOOPLINE_MAX_MANUAL_DAYS", "3650", "max_manual_days", 3650),
        ("LOOPLINE_STORE_ROOT", "s3://bucket", "store_root", "s3://bucket"),
        ("LOOPLINE_STORE_ROOT", "s3://bucket/loopline/", "store_root", "s3://bucket/loopline/"),
        ("LOOPLINE_STORE_ROOT", "s3a://bucket/p", "store_root", "s3a://bucket/p"),
        ("LOOPLINE_STORE_ROOT", "gs://bucket/p", "store_root", "gs://bucket/p"),
        ("LOOPLINE_STORE_ROOT", "gcs://bucket/p", "store_root", "gcs://bucket/p"),
        ("LOOPLINE_STORE_ROOT", "memory://tests", "store_root", "memory://tests"),
        ("LOOPLINE_STORE_ROOT", "file:///srv/loopline/store", "store_root", "file:///srv/loopline/store"),
        ("LOOPLINE_STORE_ROOT", "/srv/loopline/store", "store_root", "file:///srv/loopline/store"),
        ("LOOPLINE_STORE_ROOT", "/srv/loopline/x/../store/", "store_root", "file:///srv/loopline/store"),
        ("LOOPLINE_STORE_OPTIONS", '{"endpoint_url": "http://127.0.0.1:9000"}', "store_options",
         '{"endpoint_url": "http://127.0.0.1:9000"}'),
    ],
)
def test_good_values_are_accepted(tmp_path: Path, var: str, raw: str, field: str, expected: object) -> None:
    env = {"LOOPLINE_HOME": str(tmp_path), var: raw}
    if field == "train_window_days":
        env["LOOPLINE_VALIDATION_DAYS"] = "7"
    assert getattr(Settings.from_env(env), field) == expected


def test_a_bare_path_store_root_becomes_a_file_uri_that_round_trips(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, store_root=str(tmp_path / "elsewhere"))
    assert s.store_root == (tmp_path / "elsewhere").as_uri()
    assert Settings.from_env(s.as_env()) == s


def test_a_home_relative_store_root_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings(home=tmp_path, store_root="~/store").store_root == (tmp_path / "store").as_uri()


# -- unknown LOOPLINE_* variables -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("LOOPLINE_STOR_ROOT", "LOOPLINE_STORE_ROOT"),
        ("LOOPLINE_STORE_ROOTS", "LOOPLINE_STORE_ROOT"),
        ("LOOPLINE_SCORE_BATCH_ROW", "LOOPLINE_SCORE_BATCH_ROWS"),
        ("LOOPLINE_RETRAIN_COOLDOWN_DAY", "LOOPLINE_RETRAIN_COOLDOWN_DAYS"),
        ("LOOPLINE_DRIFTSHARE", "LOOPLINE_DRIFT_SHARE"),
        ("LOOPLINE_MLFLOW_TRACKING_URL", "LOOPLINE_MLFLOW_TRACKING_URI"),
        ("LOOPLINE_PSI_BAND", "LOOPLINE_PSI_BANDS"),
        ("LOOPLINE_MAX_MANUAL_DAY", "LOOPLINE_MAX_MANUAL_DAYS"),
        ("LOOPLINE_STACK_WORKER", "LOOPLINE_STACK_WORKERS"),
        ("loopline_store_root", "LOOPLINE_STORE_ROOT"),
        ("Loopline_Seed", "LOOPLINE_SEED"),
    ],
)
def test_a_misspelt_variable_is_refused_with_the_known_name(tmp_path: Path, typo: str, meant: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"LOOPLINE_HOME": str(tmp_path), typo: "s3://bucket/x"})
    assert typo in str(info.value) and meant in str(info.value)
    assert "s3://bucket/x" not in str(info.value)  # a value is never echoed for an unknown name


def test_an_unrelated_loopline_variable_is_logged_once_and_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(settings_module, "_warned", set())
    env = {"LOOPLINE_HOME": str(tmp_path), "LOOPLINE_TEAM_OWNER": "ml-platform"}
    with caplog.at_level(logging.WARNING, logger="loopline.settings"):
        assert Settings.from_env(env) == Settings.from_env(env) == Settings(home=tmp_path)
    assert [r.getMessage() for r in caplog.records] == [
        "LOOPLINE_TEAM_OWNER is not a variable Loopline reads; it is ignored"]


def test_every_known_variable_is_accepted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {**Settings(home=tmp_path).as_env(), **dict.fromkeys(OTHER_VARIABLES, "")}
    with caplog.at_level(logging.WARNING, logger="loopline.settings"):
        Settings.from_env(env)
    assert not caplog.records


# Where a LOOPLINE_* name can be read or documented. tests/ is left out: it spells typos on purpose.
SCANNED = ("include", "plugins", "dags", "benchmarks")
SCANNED_FILES = ("README.md", "Makefile", "Dockerfile", "docker-compose.yaml", ".env.example")
_NAME = re.compile(r"LOOPLINE_[A-Za-z0-9_]*")


def _sources() -> list[Path]:
    files = [REPO / name for name in SCANNED_FILES if (REPO / name).is_file()]
    for folder in SCANNED:
        files += [p for p in (REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix in (".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".cfg", ".txt", "")]
    return files


def test_every_loopline_variable_in_the_code_is_in_the_allow_list() -> None:
    """A LOOPLINE_* name read (or documented) anywhere must be known, or from_env would call it a typo."""
    known = known_variables()
    unknown: dict[str, str] = {}
    for path in _sources():
        for name in _NAME.findall(path.read_text(encoding="utf-8", errors="replace")):
            # A name ending in '_' is a prefix: f"LOOPLINE_{...}", LOOPLINE_STACK_*.
            ok = any(k.startswith(name) for k in known) if name.endswith("_") else name in known
            if not ok:
                unknown.setdefault(name, str(path.relative_to(REPO)))
    assert not unknown, f"add these to loopline.settings.OTHER_VARIABLES (or fix the spelling): {unknown}"


def test_every_allow_listed_variable_is_still_read() -> None:
    """The allow-list cannot rot the other way: each extra name is still in the code, outside settings.py."""
    code = "\n".join(p.read_text(encoding="utf-8") for p in _sources()
                     if p.suffix == ".py" and p.name != "settings.py")
    assert not settings_variables() & set(OTHER_VARIABLES)
    stale = [name for name in OTHER_VARIABLES if not re.search(rf"\b{name}\b", code)]
    assert not stale, f"nothing reads these any more; remove them from OTHER_VARIABLES: {stale}"


# -- check_manual_range ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "limit"),
    [
        ("2013-01-01", "2013-01-01", 366),  # one day
        ("2012-01-01", "2012-12-31", 366),  # a leap year: exactly the default
        ("2013-01-01", "2013-12-31", 366),
        (dt.date(2013, 3, 1), dt.date(2013, 3, 7), 7),
        (dt.datetime(2013, 3, 1, 23, 59), dt.datetime(2013, 3, 7), 7),
        ("2013-03-01", dt.date(2013, 3, 1), 1),
    ],
)
def test_a_manual_range_within_the_limit_is_accepted(tmp_path: Path, start: dt.date | str, end: dt.date | str,
                                                      limit: int) -> None:
    check_manual_range(start, end, Settings(home=tmp_path, max_manual_days=limit))


@pytest.mark.parametrize(
    ("start", "end", "limit", "days"),
    [
        ("2013-01-01", "2014-01-02", 366, 367),
        ("2012-01-01", "2013-01-01", 366, 367),
        ("2010-01-01", "2013-12-31", 366, 1461),
        (dt.date(2013, 3, 1), dt.date(2013, 3, 8), 7, 8),
        ("2013-03-01", "2013-03-02", 1, 2),
    ],
)
def test_a_manual_range_over_the_limit_is_refused_with_the_reason(tmp_path: Path, start: dt.date | str,
                                                                   end: dt.date | str, limit: int, days: int) -> None:
    with pytest.raises(SettingsError) as info:
        check_manual_range(start, end, Settings(home=tmp_path, max_manual_days=limit))
    message = str(info.value)
    assert f"({days} days)" in message and f"LOOPLINE_MAX_MANUAL_DAYS={limit}" in message
    assert f"at most {limit} days" in message


def test_the_manual_limit_comes_from_the_environment(tmp_path: Path) -> None:
    s = Settings.from_env({"LOOPLINE_HOME": str(tmp_path), "LOOPLINE_MAX_MANUAL_DAYS": "30"})
    check_manual_range("2013-03-01", "2013-03-30", s)
    with pytest.raises(SettingsError, match="LOOPLINE_MAX_MANUAL_DAYS=30"):
        check_manual_range("2013-03-01", "2013-03-31", s)


@pytest.mark.parametrize(("start", "end", "match"), [("2013-03-02", "2013-03-01", "before its start"),
                                                     ("2013-02-30", "2013-03-01", "start '2013-02-30' is not a day"),
                                                     ("2013-03-01", "tomorrow", "end 'tomorrow' is not a day")])
def test_a_malformed_manual_range_is_refused(tmp_path: Path, start: str, end: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_manual_range(start, end, Settings(home=tmp_path))


# -- the command line prints the message, not a traceback -----------------------------------------------------
@pytest.mark.parametrize("argv", [["run", "no-such-project", "--start", "2013-03-01", "--end", "2013-03-02"],
                                  ["store", "verify"]])
@pytest.mark.parametrize(("var", "raw", "shown"), [("LOOPLINE_SCORE_BATCH_ROWS", "0", "LOOPLINE_SCORE_BATCH_ROWS"),
                                                   ("LOOPLINE_STOR_ROOT", "/x", "LOOPLINE_STORE_ROOT")])
def test_the_cli_prints_a_clean_settings_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], argv: list[str], var: str,
                                               raw: str, shown: str) -> None:
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path))
    monkeypatch.setenv(var, raw)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"loopline {argv[0]}") and shown in err and "Traceback" not in err
