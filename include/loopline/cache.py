"""Local caches under ``LOOPLINE_HOME/cache/``: what a new process would otherwise fetch or read again.

Each Airflow task is a new process, so a per-process cache does not outlive the task. The kinds kept on the
machine's disk instead, each under a name derived from everything its content depends on (a changed input is a
new name, never a stale hit), and each bounded in files:

- ``mlflow-artifacts``: files MLflow writes once, downloaded once per machine (:func:`loopline.tracking.load_model`,
  :func:`loopline.tracking.load_reference_profile`); a kept file is checked as a download is;
- ``drift-window``: the drift check's joined days, keyed by both days' manifests (:mod:`loopline.monitoring`);
- ``mlflow-monitoring-runs``: the MLflow run holding each model version's drift metrics
  (:func:`loopline.monitoring.monitoring_run`); a kept id that no longer works is looked up again.

Everything here may be deleted at any time; the next process reads from the source again.
"""

from __future__ import annotations

import os
from pathlib import Path

from loopline.settings import Settings


def cache_dir(settings: Settings, kind: str) -> Path:
    """``LOOPLINE_HOME/cache/<kind>`` (not created)."""
    return Path(settings.home) / "cache" / kind


def prune_oldest(folder: Path, limit: int, suffix: str = "") -> int:
    """Remove the least recently modified files of ``folder`` (names ending in ``suffix``, temporary ``.tmp-*`` and
    ``.fetch-*`` ones aside) once there are more than ``limit``, down to three quarters of ``limit``; the number
    removed. Counting is one directory scan; only a folder over the limit is stat-ed and sorted."""
    with os.scandir(folder) as scan:
        entries = [e for e in scan if e.name.endswith(suffix) and not e.name.startswith(".") and e.is_file()]
    if len(entries) <= limit:
        return 0

    def mtime(entry: os.DirEntry[str]) -> float:
        try:
            return entry.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    entries.sort(key=mtime)
    doomed = entries[:len(entries) - limit * 3 // 4]
    for entry in doomed:
        Path(entry.path).unlink(missing_ok=True)
    return len(doomed)
