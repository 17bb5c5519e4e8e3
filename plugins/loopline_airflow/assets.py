"""The assets that connect Loopline's DAGs (names only: cheap to import at parse time)."""

from __future__ import annotations

from airflow.sdk import Asset

FEATURES = Asset(name="loopline_features", group="loopline")
PREDICTIONS = Asset(name="loopline_predictions", group="loopline")
DRIFT_REPORTS = Asset(name="loopline_drift_reports", group="loopline")
# Drift alerts. The retrain DAG schedules on this asset with an AssetWatcher (DriftEventTrigger), so the
# triggerer — not a worker slot — waits for drifted reports; tasks compare events to it by name.
DRIFT = Asset(name="loopline_drift", group="loopline")
