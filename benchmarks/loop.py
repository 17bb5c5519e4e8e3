"""Loop benchmark: the full-2013 replay through Airflow, split by DAG, with per-task overhead and parse times.

Runs ``loopline_dev.demo`` (the same replay ``make demo`` runs on the flights project's generated DAGs: embedded
stack, one backfill of ``flights.features`` paced month by month, scoring, drift and drift-triggered retraining
of both models) and prints, in one table, the wall time beside the target
(≤ 15 minutes on this 2-core machine, stretch 10), then per DAG: runs, task instances, summed task time, mean
task time and the mean wait from queued to start, and the DAG file's parse time in a fresh interpreter.

    .venv/bin/python benchmarks/loop.py                 # full year (≈ 15–25 min here)
    .venv/bin/python benchmarks/loop.py --end 2013-04-30
    .venv/bin/python benchmarks/loop.py --summary .loopline/demo-summary.json   # report a finished run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S, STRETCH_S = 15 * 60, 10 * 60

PARSE = r"""
import importlib.util, sys, time
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("d", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
print(time.perf_counter() - t)
"""


def parse_times() -> dict[str, float]:
    """Median of three parses of each DAG file, each in a fresh interpreter (airflow.sdk imported first)."""
    out = {}
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_HOME": str(REPO / ".loopline/bench/af")}
    for path in sorted((REPO / "dags").glob("loopline_*.py")):
        samples = []
        for _ in range(3):
            code = "import airflow.sdk\n" + PARSE
            res = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True,
                                 check=True)
            samples.append(float(res.stdout.strip().splitlines()[-1]))
        out[path.stem] = statistics.median(samples)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summary", help="report this finished demo summary instead of running the replay")
    p.add_argument("--end", default="2013-12-31")
    args = p.parse_args()
    if args.summary:
        summary = json.loads(Path(args.summary).read_text())
    else:
        out = REPO / ".loopline/bench/loop-summary.json"
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "loopline_dev.demo", "run", "--project", "flights",
                        "--home", str(REPO / ".loopline/bench/loop"), "--end", args.end, "--summary", str(out)],
                       check=True, cwd=REPO)
        summary = json.loads(out.read_text())
        summary.setdefault("timings", {})["wall_s"] = round(time.monotonic() - t, 1)
    timings = summary["timings"]
    replay = timings.get("bootstrap_s", 0) + timings.get("replay_s", 0)
    print(f"machine: {os.cpu_count()} cores; days featured {summary['days_featured']}")
    for model, m in summary["models"].items():
        print(f"  {model}: scored {m['days_scored']}, retrains {len(m['retrains'])}, "
              f"drift alerts {len(m['drift_alerts'])}")
    print(f"{'measure':<46}{'measured':>12}{'target':>12}  result")
    full_year = summary["days_featured"] + len(summary.get("days_failed_validation", [])) >= 365
    verdict = ("PASS" if replay <= TARGET_S else "FAIL") if full_year else "partial range"
    print(f"{'replay wall time (bootstrap + months), s':<46}{replay:>12.0f}{TARGET_S:>12}  {verdict}"
          f"{' (stretch met)' if full_year and replay <= STRETCH_S else ''}")
    print(f"{'stack start, s':<46}{timings.get('stack_start_s', 0):>12.0f}")
    print(f"{'total incl. start and stop, s':<46}{timings.get('total_s', 0):>12.0f}")
    print()
    print(f"{'DAG':<32}{'runs':>6}{'tasks':>7}{'task s':>9}{'mean task s':>13}{'mean queued→start s':>22}")
    for dag_id, s in summary.get("task_stats", {}).items():
        print(f"{dag_id:<32}{s['runs']:>6.0f}{s['task_instances']:>7.0f}{s['task_seconds']:>9.0f}"
              f"{s['mean_task_s']:>13.2f}{s['mean_queued_to_start_s']:>22.2f}")
    print()
    print(f"{'DAG file parse time (fresh interpreter, after airflow.sdk), s':<64}")
    for name, secs in parse_times().items():
        print(f"  {name:<40}{secs:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
