"""`loopline run` on a project of another shape than flights (tests/support/bikes_project.py).

A CSV source, string keys, a feature builder and an estimator factory of the project's own, a regression and
a binary model, rows with missing labels, one day with a missing column and one with another day's rows.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from loopline.cli import main
from loopline.store import PartitionStore

from tests.support.bikes_project import START, day_frame, write_project

pytestmark = pytest.mark.integration
DAYS = 32
BAD_COLUMN_DAY = START + dt.timedelta(days=25)
BAD_ROWS_DAY = START + dt.timedelta(days=26)


@pytest.fixture(scope="module")
def bikes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    root = tmp_path_factory.mktemp("bikes")
    folder = write_project(root / "projects", days=DAYS, rows=220)
    # One day lacks a declared column; the next holds a row of the day before (a misfiled export).
    day_frame(BAD_COLUMN_DAY, 220).drop(columns=["station"]).to_csv(
        folder / "rentals" / f"ds={BAD_COLUMN_DAY}.csv", index=False)
    misfiled = day_frame(BAD_ROWS_DAY, 220)
    misfiled.loc[3, "started_at"] = f"{BAD_ROWS_DAY - dt.timedelta(days=1)}T10:00:00"
    misfiled.to_csv(folder / "rentals" / f"ds={BAD_ROWS_DAY}.csv", index=False)
    mp = pytest.MonkeyPatch()
    mp.setenv("LOOPLINE_HOME", str(root / "home"))
    mp.setenv("LOOPLINE_PROJECTS_PATH", str(root / "projects"))
    for var in ("LOOPLINE_STORE_ROOT", "LOOPLINE_MLFLOW_TRACKING_URI"):
        mp.delenv(var, raising=False)
    summary_path = root / "summary.json"
    end = START + dt.timedelta(days=DAYS - 1)
    code = main(["run", "bikes", "--start", START.isoformat(), "--end", end.isoformat(),
                 "--summary", str(summary_path)])
    mp.undo()
    assert code == 0
    return json.loads(summary_path.read_text()), root, (root / "home" / "store").as_uri()


def test_both_models_get_a_champion_and_score_every_day_after_it(bikes_run: tuple[dict, Path, str]) -> None:
    summary, _, _ = bikes_run
    assert summary["project"] == "bikes"
    assert set(summary["models"]) == {"duration", "late_return"}
    for name, model in summary["models"].items():
        assert model["champion"] is not None, name
        first = model["retrains"][0]
        assert first["trigger"] == "manual" and first["action"] == "promote", first
        assert model["days_scored"] >= 8, model  # days after the first 21-day window, less the two bad days
        assert {r["trigger"] for r in model["retrains"]} <= {"manual", "cron", "drift"}
    assert summary["models"]["duration"]["retrains"][0]["metric"] == "rmse"
    assert summary["models"]["late_return"]["retrains"][0]["metric"] == "pr_auc"


def test_bad_days_are_named_and_leave_nothing_behind(bikes_run: tuple[dict, Path, str]) -> None:
    summary, _, root = bikes_run
    failed = {f["ds"]: f["error"] for f in summary["days_failed"]}
    assert set(failed) == {BAD_COLUMN_DAY.isoformat(), BAD_ROWS_DAY.isoformat()}
    assert "project 'bikes'" in failed[BAD_COLUMN_DAY.isoformat()]
    assert "'station'" in failed[BAD_COLUMN_DAY.isoformat()]
    assert "'started_at'" in failed[BAD_ROWS_DAY.isoformat()] and "1 of 220" in failed[BAD_ROWS_DAY.isoformat()]
    store = PartitionStore(root)
    featured = store.days("bikes/features", "2")
    assert BAD_COLUMN_DAY not in featured and BAD_ROWS_DAY not in featured
    assert len(featured) == DAYS - 2  # the days after the bad ones went on


def test_partitions_follow_the_naming_scheme_and_carry_labels(bikes_run: tuple[dict, Path, str]) -> None:
    _, _, root = bikes_run
    store = PartitionStore(root)
    day = store.days("bikes/duration/predictions", "2")[-1]
    features = store.read("bikes/features", "2", day)
    assert list(features.columns[:2]) == ["rental_ref", "ds"]
    assert {"minutes", "late"} <= set(features.columns)  # labels beside the keys
    assert features["minutes"].isna().any()  # unreturned bikes: no label, still scored
    value = store.read("bikes/duration/predictions", "2", day)
    proba = store.read("bikes/late_return/predictions", "2", day)
    assert len(value) == len(proba) == len(features)
    assert value["score"].max() > 1.0  # a regression predicts minutes
    assert proba["score"].between(0, 1).all()  # a classifier predicts a probability
    assert set(value["model_name"]) == {"bikes.duration"}
    assert pd.api.types.is_float_dtype(value["score"])


def test_drift_reports_are_written_per_model(bikes_run: tuple[dict, Path, str]) -> None:
    _, _, root = bikes_run
    store = PartitionStore(root)
    from loopline.reports import read_drift_report

    day = store.days("bikes/late_return/predictions", "2")[-1]
    report = read_drift_report(store, "2", day, dataset="bikes/late_return/drift")
    assert report is not None and report["model_name"] == "bikes.late_return"
    assert set(report["features"]) >= {"station", "start_hour", "member"}
    assert "temp_c" not in report["features"]  # not an input of this model


@pytest.mark.parametrize(("model", "metric", "higher"), [("late_return", "pr_auc", True), ("duration", "rmse", False)])
def test_drift_reports_carry_the_champions_labelled_performance(bikes_run: tuple[dict, Path, str], model: str,
                                                                 metric: str, higher: bool) -> None:
    from loopline.reports import list_drift_reports

    _, _, root = bikes_run
    found = list_drift_reports(PartitionStore(root), "2", dataset=f"bikes/{model}/drift")
    blocks = [r["performance"] for r in found]
    assert blocks and all(b["metric"] == metric and b["higher_is_better"] is higher for b in blocks)
    measured = [b for b in blocks if b["value"] is not None]
    assert measured, [b["note"] for b in blocks]
    assert all(b["rows"] > 0 and b["validation"] is not None for b in measured)
    assert all(b["note"] for b in blocks if b["value"] is None)  # a missing value says why


def test_every_partition_of_the_run_verifies(bikes_run: tuple[dict, Path, str]) -> None:
    _, _, root = bikes_run
    report = PartitionStore(root).verify()  # content hashes included; nothing left by the failed days
    assert report.ok, [str(p) for c in report.partitions for p in c.problems]
    assert {c.dataset for c in report.partitions} >= {"bikes/features", "bikes/duration/predictions",
                                                      "bikes/late_return/predictions"}
    assert all(c.committed and not c.leftovers for c in report.partitions)


def test_a_later_run_continues_the_loop(bikes_run: tuple[dict, Path, str]) -> None:
    first, root, _ = bikes_run
    folder = root / "projects" / "bikes"
    later = [START + dt.timedelta(days=DAYS + i) for i in range(3)]
    for day in later:
        day_frame(day, 220).to_csv(folder / "rentals" / f"ds={day}.csv", index=False)
    mp = pytest.MonkeyPatch()
    mp.setenv("LOOPLINE_HOME", str(root / "home"))
    mp.setenv("LOOPLINE_PROJECTS_PATH", str(root / "projects"))
    summary_path = root / "later.json"
    try:
        assert main(["run", "bikes", "--start", later[0].isoformat(), "--end", later[-1].isoformat(),
                     "--summary", str(summary_path)]) == 0
    finally:
        mp.undo()
    summary = json.loads(summary_path.read_text())
    for name, model in summary["models"].items():
        # The champion and the first window carry over: every day is scored, no new "first champion".
        assert model["days_scored"] == len(later), (name, model)
        assert all(r["trigger"] != "manual" for r in model["retrains"]), (name, model)
        assert int(model["champion"]) >= int(first["models"][name]["champion"])


def _decisions(summary: dict) -> dict:
    """What a run decided, per model: every retrain (trigger, day, outcome, metric value), scoring and drift."""
    return {name: {"retrains": [(r["trigger"], r["as_of"], r.get("action"), r.get("candidate")) for r in m["retrains"]],
                   "days_scored": m["days_scored"], "drift_alerts": m["drift_alerts"], "skipped": m["skipped"],
                   "champion": m["champion"]}
            for name, m in summary["models"].items()}


def test_model_lanes_decide_exactly_what_one_process_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path / "projects", days=DAYS, rows=220)
    monkeypatch.setenv("LOOPLINE_PROJECTS_PATH", str(tmp_path / "projects"))
    for var in ("LOOPLINE_STORE_ROOT", "LOOPLINE_MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    end = START + dt.timedelta(days=DAYS - 1)
    runs = {}
    for workers in (1, 2):
        monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path / f"home-{workers}"))
        out = tmp_path / f"summary-{workers}.json"
        assert main(["run", "bikes", "--start", START.isoformat(), "--end", end.isoformat(), "--workers",
                     str(workers), "--summary", str(out)]) == 0
        runs[workers] = json.loads(out.read_text())
    assert (runs[1]["lanes"], runs[2]["lanes"]) == (1, 2)
    one, lanes = _decisions(runs[1]), _decisions(runs[2])
    assert all(m["retrains"] and m["days_scored"] for m in one.values()), one  # the run decided something
    assert lanes == one
    assert runs[2]["seconds"]["train"] > 0 and runs[2]["seconds"]["score"] > 0  # the lanes' step times came back


def test_a_failing_model_lane_ends_the_run_naming_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopline.project import load_project
    from loopline.runner import LaneError, run_project
    from loopline.settings import Settings

    folder = write_project(tmp_path / "projects", days=24, rows=220)
    (folder / "models.py").write_text("def logistic(**kwargs):\n    raise RuntimeError('the factory broke')\n")
    monkeypatch.setenv("LOOPLINE_PROJECTS_PATH", str(tmp_path / "projects"))
    for var in ("LOOPLINE_STORE_ROOT", "LOOPLINE_MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings.from_env({"LOOPLINE_HOME": str(tmp_path / "home")})
    with pytest.raises(LaneError, match=r"(?s)late_return.*the factory broke"):
        run_project(load_project("bikes"), START, START + dt.timedelta(days=23), settings=settings, workers=2)
