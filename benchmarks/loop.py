"""Loop benchmark: the full-2013 replay through Airflow beside ``loopline run`` of the same days.

Runs ``loopline_dev.demo`` (the same replay ``make demo`` runs on the flights project's generated DAGs: embedded
stack, one backfill of ``flights.features`` paced month by month, scoring, drift and drift-triggered retraining
of both models) and prints, in one table, the wall time beside the target
(≤ 600 s on this 2-core machine; ``benchmarks/airflow_floor.py`` measures what Airflow alone needs for the same
runs with empty tasks), then per DAG: runs, task instances, summed task time, mean
task time and the mean wait from queued to start, and the DAG file's parse time in a fresh interpreter.

Then it runs ``loopline run flights`` over the same days in a fresh ``LOOPLINE_HOME`` (the same step functions,
one process per model beside the features loop, no Airflow) and prints its wall and CPU time beside the target
(≤ 3 minutes for the year), its split by step, and the replay's wall time over the runner's beside the target
(≥ 4×).

    .venv/bin/python benchmarks/loop.py                 # full year, both (≈ 15 min here)
    .venv/bin/python benchmarks/loop.py --end 2013-04-30
    .venv/bin/python benchmarks/loop.py --runner-only   # only `loopline run` (a few minutes)
    .venv/bin/python benchmarks/loop.py --summary .loopline/demo-summary.json   # a finished replay, + the runner
    .venv/bin/python benchmarks/loop.py --summary .loopline/demo-summary.json --no-runner   # the replay only
    .venv/bin/python benchmarks/loop.py --beside ../batched/.loopline/bench/loop-summary.json   # + another version's
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 600  # the partitioned replay of 2013 (one run per day per DAG), issue 'Every day a partition'
RUNNER_TARGET_S, RATIO_TARGET = 3 * 60, 4.0
START = "2013-01-01"

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


def settle_load(below: float = 1.0, timeout: float = 240) -> float:
    """Wait (at most ``timeout`` s) until the one-minute load average is under ``below``: the replay's stack
    leaves the machine busy for a minute or two after it stops, and the runner is timed on a quiet machine."""
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def run_runner(start: str, end: str) -> dict[str, object]:
    """``loopline run flights`` over start..end in a fresh LOOPLINE_HOME; its summary with wall and CPU time."""
    print(f"\nloopline run starts at a one-minute load average of {settle_load():.2f}", flush=True)
    home = REPO / ".loopline/bench/runner"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    out, log = home / "run-summary.json", home / "run.log"
    env = {**os.environ, "LOOPLINE_HOME": str(home)}
    for name in ("LOOPLINE_STORE_ROOT", "LOOPLINE_MLFLOW_TRACKING_URI"):  # everything under the fresh home
        env.pop(name, None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    with log.open("w") as fh:
        subprocess.run([sys.executable, "-m", "loopline.cli", "run", "flights", "--start", start, "--end", end,
                        "--summary", str(out)], check=True, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary: dict[str, object] = json.loads(out.read_text())
    summary["wall_s"] = wall
    summary["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary["log"] = str(log)
    return summary


def print_runner(run: dict[str, object], replay: float | None) -> None:
    wall, cpu = float(run["wall_s"]), float(run["cpu_s"])  # type: ignore[arg-type]
    seconds: dict[str, float] = run["seconds"]  # type: ignore[assignment]
    models: dict[str, dict[str, list[object]]] = run["models"]  # type: ignore[assignment]
    full_year = run["start"] == START and run["end"] == "2013-12-31"
    print()
    print(f"loopline run flights {run['start']}..{run['end']}: days featured {run['days_featured']}, failed "
          f"{len(run['days_failed'])}  (log: {run['log']})")  # type: ignore[arg-type]
    for model, m in models.items():
        print(f"  {model}: scored {m['days_scored']}, retrains {len(m['retrains'])}, promotions "
              f"{len(m['promotions'])}, rejections {len(m['rejections'])}, drift alerts {len(m['drift_alerts'])}")
    print(f"{'measure':<46}{'measured':>12}{'target':>12}  result")
    verdict = ("PASS" if wall <= RUNNER_TARGET_S else "FAIL") if full_year else "partial range"
    print(f"{'loopline run wall time, s':<46}{wall:>12.0f}{RUNNER_TARGET_S:>12}  {verdict}")
    print(f"{'loopline run CPU time (user + sys), s':<46}{cpu:>12.0f}")
    lanes = int(run.get("lanes", 1))  # type: ignore[call-overload]
    inside = float(run.get("wall_seconds", wall))  # type: ignore[arg-type]
    print(f"{'  processes (the features loop + model lanes)':<46}{1 + (lanes if lanes > 1 else 0):>12}")
    summed = f" (summed over {lanes} model lanes and the features loop)" if lanes > 1 else ""
    print(f"step time{summed}:")
    for step, secs in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"{'  step ' + step + ', s':<46}{secs:>12.1f}")
    print(f"{'  outside the loop (imports, start-up, exit), s':<46}{wall - inside:>12.1f}")
    lane_seconds: dict[str, float] = run.get("lane_seconds") or {}  # type: ignore[assignment]
    for models_of_lane, secs in lane_seconds.items():
        print(f"{'  wall time of the lane of ' + models_of_lane + ', s':<46}{secs:>12.1f}")
    if replay is not None:
        ratio = replay / wall if wall else float("inf")
        verdict = ("PASS" if ratio >= RATIO_TARGET else "FAIL") if full_year else "partial range"
        print(f"{'replay wall / loopline run wall':<46}{ratio:>11.1f}×{RATIO_TARGET:>11.0f}×  {verdict}")
    print(f"machine load now (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summary", help="report this finished demo summary instead of running the replay")
    p.add_argument("--end", default="2013-12-31")
    p.add_argument("--runner-only", action="store_true", help="run only `loopline run flights` (no replay)")
    p.add_argument("--no-runner", action="store_true", help="report only the replay (no `loopline run`)")
    p.add_argument("--beside", metavar="SUMMARY",
                   help="a finished replay of another version (e.g. the batched DAGs before partitions, run from a "
                        "worktree of that commit): its wall time is printed beside this one")
    args = p.parse_args()
    if args.runner_only:
        print_runner(run_runner(START, args.end), None)
        return 0
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
    print(f"{'replay wall time (bootstrap + months), s':<46}{replay:>12.0f}{TARGET_S:>12}  {verdict}")
    if args.beside:
        other = json.loads(Path(args.beside).read_text())
        other_replay = other["timings"].get("bootstrap_s", 0) + other["timings"].get("replay_s", 0)
        print(f"beside: {args.beside} ({other.get('range', ['?', '?'])[0]}..{other.get('range', ['?', '?'])[1]})")
        print(f"{'  its replay wall time, s':<46}{other_replay:>12.0f}")
        print(f"{'  this one / that one':<46}{replay / other_replay:>11.2f}×{1:>11}×  "
              f"{'PASS' if replay <= other_replay else 'FAIL'} (no slower)")
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
    if not args.no_runner:
        # The same days the replay covered (a finished summary says which), so the ratio compares like with like.
        start, end = summary.get("range", [START, args.end])
        print_runner(run_runner(start, end), replay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
