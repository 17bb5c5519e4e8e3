"""loopline.monitoring.check_day keeps the features the drift engine could not compare in its decision."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loopline import monitoring, steps
from loopline.drift import ReferenceProfile
from loopline.monitoring import Monitored
from loopline.project import Project
from loopline.reports import read_drift_report
from loopline.settings import Settings
from loopline.store import PartitionStore

pytestmark = pytest.mark.unit

DAY = dt.date(2022, 4, 20)


def _features(rng: np.random.Generator, n: int, m: Monitored, categorical: set[str]) -> pd.DataFrame:
    cols = {c: rng.choice(["a", "b"], n) if c in categorical else rng.normal(size=n) for c in m.columns}
    return pd.DataFrame({"rental_ref": [f"R{i}" for i in range(n)], "minutes": rng.normal(20, 5, n), **cols})


def test_a_feature_that_cannot_be_compared_counts_in_the_day_check(tmp_path: Path, bikes: Project,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    m = steps.monitored_spec(bikes, "duration")
    assert (m.features_dataset, m.predictions_dataset, m.reports_dataset, m.keys) == (
        "bikes/features", "bikes/duration/predictions", "bikes/duration/drift", ("rental_ref",))
    categorical = {c for c in m.columns if bikes.features.column(c).kind == "categorical"}
    settings = Settings(home=tmp_path)
    store = PartitionStore((tmp_path / "root").as_uri())
    rng = np.random.default_rng(0)
    numeric = [c for c in m.columns if c not in categorical]
    # More than half the features arrive as text: the engine cannot bin them as in training.
    broken = numeric[: len(m.columns) // 2 + 1]
    profile = ReferenceProfile.fit(_features(rng, 3000, m, categorical)[list(m.columns)])
    for d in monitoring.window_days(m.window_days, DAY):
        day = _features(rng, 200, m, categorical)
        for c in broken:
            day[c] = "n/a"
        store.write(m.features_dataset, m.version, d, day)
    store.write(m.predictions_dataset, m.version, DAY,
                pd.DataFrame({"rental_ref": [f"R{i}" for i in range(200)], "score": rng.random(200),
                              "model_version": "1"}))
    monkeypatch.setattr(monitoring, "reference_for", lambda settings, version: profile)
    check = monitoring.check_day(store, settings, DAY, monitored=m)
    assert check.summary["drifted"] is True
    body = read_drift_report(store, m.version, DAY, dataset=m.reports_dataset)
    assert body is not None
    assert set(body["decision"]["not_compared"]) == set(broken)
    assert set(body["skipped"]) == set(broken)
    assert body["decision"]["n_features"] == len(m.columns)


def _scored(days: list[dt.date], labels: list[list[float]], scores: list[list[float]]) -> pd.DataFrame:
    frames = [pd.DataFrame({"rental_ref": range(len(y)), "score": s, "label": y, "ds": [d] * len(y)})
              for d, y, s in zip(days, labels, scores, strict=True)]
    return pd.concat(frames, ignore_index=True)


def test_labelled_performance_is_the_task_metric_on_the_days_before_the_check() -> None:
    from sklearn.metrics import roc_auc_score

    day = dt.date(2013, 3, 3)
    days = [dt.date(2013, 3, 1), dt.date(2013, 3, 2), day]
    y = [[0, 1, 0, 1], [1, 0, np.nan, 1], [1, 1, 0, 0]]
    s = [[0.1, 0.8, 0.6, 0.4], [0.9, 0.2, 0.5, 0.3], [0.0, 0.0, 1.0, 1.0]]
    out = monitoring.labelled_performance(_scored(days, y, s), day, "binary_classification", "roc_auc",
                                          {"roc_auc": 0.81, "brier": 0.2})
    # the day itself and the row without a label are left out: 7 rows of the two days before
    expected = roc_auc_score([0, 1, 0, 1, 1, 0, 1], [0.1, 0.8, 0.6, 0.4, 0.9, 0.2, 0.3])
    assert out["value"] == pytest.approx(expected) and out["rows"] == 7
    assert out["days"] == ["2013-03-01", "2013-03-02"]
    assert out["validation"] == 0.81 and out["metric"] == "roc_auc" and out["higher_is_better"] is True
    assert out["note"] is None


def test_labelled_performance_of_a_regression_and_when_it_cannot_be_measured() -> None:
    day = dt.date(2013, 3, 3)
    days = [dt.date(2013, 3, 2)]
    out = monitoring.labelled_performance(_scored(days, [[10.0, 20.0]], [[13.0, 16.0]]), day, "regression", "",
                                          {"rmse": 2.5})
    assert out["metric"] == "rmse" and out["value"] == pytest.approx(((9 + 16) / 2) ** 0.5)
    assert out["higher_is_better"] is False and out["validation"] == 2.5
    one_class = monitoring.labelled_performance(_scored(days, [[1.0, 1.0]], [[0.2, 0.9]]), day,
                                                "binary_classification", "roc_auc", {})
    assert one_class["value"] is None and one_class["rows"] == 2 and "both classes" in one_class["note"]
    assert one_class["validation"] is None
    none = monitoring.labelled_performance(_scored(days, [[np.nan]], [[0.2]]), day, "binary_classification",
                                           "roc_auc", {})
    assert none["value"] is None and none["rows"] == 0 and none["note"].startswith("no labelled row")


def test_the_day_check_writes_the_champions_labelled_performance(tmp_path: Path, bikes: Project,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.metrics import average_precision_score

    m = steps.monitored_spec(bikes, "late_return")  # binary, gated on pr_auc, label "late" positive "Y"
    assert (m.label, m.positive, m.metric) == ("late", "Y", "pr_auc")
    categorical = {c for c in m.columns if bikes.features.column(c).kind == "categorical"}
    settings = Settings(home=tmp_path)
    store = PartitionStore((tmp_path / "root").as_uri())
    rng = np.random.default_rng(1)
    profile = ReferenceProfile.fit(_features(rng, 3000, m, categorical)[list(m.columns)],
                                   validation_metrics={"pr_auc": 0.7})
    labels, preds = [], []
    for d in monitoring.window_days(m.window_days, DAY):
        day = _features(rng, 200, m, categorical)
        y = rng.random(200) < 0.3
        day["late"] = np.where(y, "Y", "N")
        store.write(m.features_dataset, m.version, d, day)
        scores = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
        store.write(m.predictions_dataset, m.version, d,
                    pd.DataFrame({"rental_ref": day["rental_ref"], "score": scores, "model_version": "1"}))
        if d < DAY:
            labels.append(y.astype(float))
            preds.append(scores)
    monkeypatch.setattr(monitoring, "reference_for", lambda settings, version: profile)
    monitoring.check_day(store, settings, DAY, monitored=m)
    body = read_drift_report(store, m.version, DAY, dataset=m.reports_dataset)
    assert body is not None
    perf = body["performance"]
    assert perf["metric"] == "pr_auc" and perf["validation"] == 0.7
    assert perf["value"] == pytest.approx(average_precision_score(np.concatenate(labels), np.concatenate(preds)))
    assert perf["rows"] == 200 * (len(monitoring.window_days(m.window_days, DAY)) - 1)


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "log_loss", "brier"])
def test_every_binary_gate_metric_gets_a_concept_drift_verdict(bikes: Project, metric: str) -> None:
    # The reference profile stores validation metrics under the task types' names; the decay check must find
    # them (a pr_auc-gated model once never got a verdict: its config asked for "average_precision").
    model = bikes.models["late_return"]
    project = bikes.model_copy(update={"models": {**bikes.models, "late_return": model.model_copy(
        update={"metric": model.metric.model_copy(update={"name": metric})})}})
    config = steps.drift_config(project, "late_return")
    assert config.performance_metric == metric
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.3).astype(float)
    noise = rng.random(2000)  # scores that know nothing of the label: far worse than at validation
    scores = pd.DataFrame({"rental_ref": range(2000), "score": noise, "label": y, "ds": dt.date(2022, 4, 1)})
    good = {"roc_auc": 0.95, "pr_auc": 0.9, "log_loss": 0.2, "brier": 0.05}[metric]
    profile = ReferenceProfile.fit(pd.DataFrame({"x": rng.normal(size=100)}), validation_metrics={metric: good})
    verdict = monitoring.performance_for(scores, DAY, profile, config)
    assert verdict is not None and verdict.metric == metric
    assert verdict.reference == good and verdict.decayed is True


def test_the_window_reads_a_day_again_once_it_is_re_written(tmp_path: Path, bikes: Project) -> None:
    """The window keeps each day's frames by the commits they were read from: the next check of an unchanged
    window reads nothing new and gets the same frames; a re-written day (new features, new scores) is read again."""
    m = steps.monitored_spec(bikes, "duration")
    categorical = {c for c in m.columns if bikes.features.column(c).kind == "categorical"}
    store = PartitionStore((tmp_path / "root").as_uri())
    rng = np.random.default_rng(1)
    days = monitoring.window_days(3, DAY)
    monitoring.clear_window_cache()
    for d in days:
        store.write(m.features_dataset, m.version, d, _features(rng, 50, m, categorical))
        store.write(m.predictions_dataset, m.version, d,
                    pd.DataFrame({"rental_ref": [f"R{i}" for i in range(50)], "score": rng.random(50),
                                  "model_version": "1"}))
    first, first_scores, used = monitoring._window(store, m, days, "1")
    assert used == [d.isoformat() for d in days] and len(first) == 150 and len(first_scores) == 150

    reads: list[tuple[str, dt.date]] = []
    real_read = store.read
    store.read = lambda dataset, version, ds, **kw: reads.append((dataset, ds)) or real_read(  # type: ignore[method-assign]
        dataset, version, ds, **kw)
    again, again_scores, _ = monitoring._window(store, m, days, "1")
    assert reads == []
    pd.testing.assert_frame_equal(again, first)
    pd.testing.assert_frame_equal(again_scores, first_scores)

    rewritten = _features(rng, 80, m, categorical)
    store.write(m.features_dataset, m.version, days[1], rewritten)
    store.write(m.predictions_dataset, m.version, days[2],
                pd.DataFrame({"rental_ref": [f"R{i}" for i in range(50)], "score": np.full(50, 0.5),
                              "model_version": "1"}))
    after, after_scores, _ = monitoring._window(store, m, days, "1")
    assert sorted(set(reads)) == sorted({(m.features_dataset, days[1]), (m.features_dataset, days[2]),
                                         (m.predictions_dataset, days[1]), (m.predictions_dataset, days[2])})
    assert len(after) == 50 + 80 + 50
    pd.testing.assert_series_equal(after["minutes"].iloc[50:130].reset_index(drop=True), rewritten["minutes"],
                                   check_names=False)
    assert (after_scores.loc[after_scores["ds"] == days[2], "score"] == 0.5).all()
    # a day scored by another version is not this version's
    _, other_scores, _ = monitoring._window(store, m, days, "2")
    assert other_scores.empty


def test_scores_in_the_features_order_join_their_labels_as_a_merge_would(tmp_path: Path, bikes: Project) -> None:
    """A scored day is joined to its labels row by row when the predictions are in the features' order, by key
    otherwise; both give each prediction its own row's label."""
    m = steps.monitored_spec(bikes, "duration")
    categorical = {c for c in m.columns if bikes.features.column(c).kind == "categorical"}
    store = PartitionStore((tmp_path / "root").as_uri())
    rng = np.random.default_rng(3)
    feats = _features(rng, 50, m, categorical)
    preds = pd.DataFrame({"rental_ref": feats["rental_ref"], "score": rng.random(50), "model_version": "1"})
    in_order, shuffled = DAY, DAY + dt.timedelta(days=1)
    for d, p in ((in_order, preds), (shuffled, preds.sample(frac=1, random_state=1))):
        store.write(m.features_dataset, m.version, d, feats)
        store.write(m.predictions_dataset, m.version, d, p)
    monitoring.clear_window_cache()
    joined = {d: monitoring._day_frames(store, m, d, "1")[1] for d in (in_order, shuffled)}  # type: ignore[index]
    expected = preds.assign(label=feats["minutes"].astype(float)).set_index("rental_ref")
    for d, scored in joined.items():
        got = scored.set_index("rental_ref").loc[expected.index]
        assert list(scored.columns) == ["rental_ref", "score", "model_version", "label", "ds"]
        assert np.allclose(got["label"], expected["label"]) and np.allclose(got["score"], expected["score"]), d
        assert (got["ds"] == d).all()


def test_another_process_reads_the_window_from_local_disk_until_a_day_is_re_written(
        tmp_path: Path, bikes: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each drift task is a new process reading the days the previous one read: the joined day frames are kept
    under LOOPLINE_HOME, equal to what the store gives, and a re-written day is read from the store again."""
    m = steps.monitored_spec(bikes, "duration")
    categorical = {c for c in m.columns if bikes.features.column(c).kind == "categorical"}
    store = PartitionStore((tmp_path / "root").as_uri())
    cache = monitoring.window_cache_dir(Settings(home=tmp_path / "home"))
    rng = np.random.default_rng(5)
    days = monitoring.window_days(3, DAY)
    for d in days:
        feats = _features(rng, 40, m, categorical)
        store.write(m.features_dataset, m.version, d, feats)
        store.write(m.predictions_dataset, m.version, d,
                    pd.DataFrame({"rental_ref": feats["rental_ref"], "score": rng.random(40), "model_version": "1"}))
    monitoring.clear_window_cache()
    fresh = monitoring._window(store, m, days, "1", cache)
    assert len(list(cache.glob("*.features.arrow"))) == 3 and len(list(cache.glob("*.scored.arrow"))) == 3

    reads: list[str] = []
    real_read = PartitionStore.read
    monkeypatch.setattr(PartitionStore, "read", lambda self, *a, **k: (reads.append(a[0]), real_read(self, *a, **k))[1])
    monitoring.clear_window_cache()  # as in the next task's process
    kept = monitoring._window(store, m, days, "1", cache)
    assert reads == []
    pd.testing.assert_frame_equal(kept[0], fresh[0])
    pd.testing.assert_frame_equal(kept[1], fresh[1])
    assert kept[2] == fresh[2]

    rewritten = _features(rng, 40, m, categorical)
    store.write(m.features_dataset, m.version, days[0], rewritten)  # the day is built again
    monitoring.clear_window_cache()
    again = monitoring._window(store, m, days, "1", cache)
    assert m.features_dataset in reads
    assert np.allclose(again[0]["minutes"].iloc[:40], rewritten["minutes"])


def test_the_window_cache_keeps_the_newest_files(tmp_path: Path, bikes: Project,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    m = steps.monitored_spec(bikes, "duration")
    categorical = {c for c in m.columns if bikes.features.column(c).kind == "categorical"}
    store = PartitionStore((tmp_path / "root").as_uri())
    cache = tmp_path / "cache"
    monkeypatch.setattr(monitoring, "WINDOW_CACHE_FILES", 4)
    rng = np.random.default_rng(6)
    days = monitoring.window_days(5, DAY)
    for d in days:  # features only: one file per day
        store.write(m.features_dataset, m.version, d, _features(rng, 10, m, categorical))
    monitoring.clear_window_cache()
    monitoring._window(store, m, days, "1", cache)  # the fifth file is one too many: down to three
    kept = sorted(cache.glob("*.arrow"), key=lambda f: f.stat().st_mtime)
    assert len(kept) == 3 and not list(cache.glob(".tmp-*"))
    monitoring.clear_window_cache()
    reads: list[dt.date] = []
    real_read = PartitionStore.read
    monkeypatch.setattr(PartitionStore, "read", lambda self, *a, **k: (reads.append(a[2]), real_read(self, *a, **k))[1])
    monitoring._window(store, m, days[-3:], "1", cache)
    assert reads == []  # the newest three days were kept


def test_drift_metrics_go_to_one_monitoring_run_per_version_found_once_per_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from loopline.monitoring import DayCheck, log_drift_metrics, monitoring_run
    from loopline.tracking import client

    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                        experiment_name="bikes.duration", model_name="bikes.duration")
    c = client(settings)

    def check(day: str, psi: float, version: str = "1") -> DayCheck:
        return DayCheck(day, metrics={"psi_temp": psi, "share_drifted": 0.0}, model_version=version)

    log_drift_metrics(settings, [check("2024-01-01", 0.1)])
    first = monitoring_run(settings, "1")
    # Another drift task (a new process) writes to the kept run without looking it up in MLflow.
    real_search = mlflow.search_runs
    monkeypatch.setattr(mlflow, "search_runs", lambda *a, **k: pytest.fail("searched MLflow for a kept run"))
    log_drift_metrics(settings, [check("2024-01-02", 0.3)])
    history = c.get_metric_history(first, "psi_temp")
    assert [(m.step, m.value) for m in history] == [(dt.date(2024, 1, 1).toordinal(), 0.1),
                                                    (dt.date(2024, 1, 2).toordinal(), 0.3)]
    assert c.get_run(first).data.tags["loopline.monitored_version"] == "1"
    # Someone deleted that run: the next write finds (here: creates) the version's run again and keeps it.
    monkeypatch.setattr(mlflow, "search_runs", real_search)
    c.delete_run(first)
    log_drift_metrics(settings, [check("2024-01-03", 0.5), check("2024-01-03", 0.2, version="2")])
    second = monitoring_run(settings, "1")
    assert second != first and c.get_run(second).info.lifecycle_stage == "active"
    assert [m.value for m in c.get_metric_history(second, "psi_temp")] == [0.5]
    assert [m.value for m in c.get_metric_history(monitoring_run(settings, "2"), "psi_temp")] == [0.2]
