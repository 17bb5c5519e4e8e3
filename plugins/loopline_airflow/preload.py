"""Warm the process that forks task processes (the LocalExecutor's scheduler, or a Celery worker).

Airflow forks each task process from a long-lived parent. Importing pandas, pyarrow, scikit-learn, scipy,
MLflow and Great Expectations there once means every task starts with them loaded (copy-on-write) instead
of paying ~12 s of imports per task. ``loopline.stack`` enables it with ``LOOPLINE_PRELOAD=1`` through
``airflow_local_settings``. Importing does not start threads or open connections, so forking stays safe.
"""

from __future__ import annotations

import importlib
import logging
import time

MODULES = (
    "numpy", "pandas", "pyarrow", "pyarrow.parquet", "scipy.stats", "sklearn.ensemble", "sklearn.compose",
    "sklearn.metrics", "mlflow", "mlflow.sklearn", "mlflow.tracking", "great_expectations",
    "loopline.features", "loopline.training", "loopline.scoring", "loopline.drift",
)


def preload() -> None:
    log = logging.getLogger(__name__)
    start = time.monotonic()
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional module must never stop the scheduler
            log.warning("loopline preload: could not import %s: %s", name, exc)
    log.info("loopline preload: imported %d modules in %.1fs", len(MODULES), time.monotonic() - start)
