"""Parse cost of the projects DAG file with 1, 10 and 50 model projects, beside Airflow's import timeout.

Each project is a copy of the tests' bikes project (two models: five DAGs) under its own name, on a
``LOOPLINE_PROJECTS_PATH`` of its own; the shipped flights project is parsed too. Every figure is the median of
three parses in a fresh interpreter with ``airflow.sdk`` already imported (the dag-processor has it loaded), so
it is what the factory and the project files cost, not Airflow's own import.

    .venv/bin/python benchmarks/parse_projects.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LIMIT_S = 30.0  # [core] dagbag_import_timeout, Airflow's default

PARSE = r"""
import importlib.util, sys, time
import airflow.sdk
from airflow.sdk import DAG
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("d", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
took = time.perf_counter() - t
print(took, sum(isinstance(v, DAG) for v in vars(m).values()))
"""


def parse(projects: Path, home: Path) -> tuple[float, int]:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_HOME": str(home / "af"),
           "LOOPLINE_HOME": str(home), "LOOPLINE_PROJECTS_PATH": str(projects),
           "PYTHONPATH": f"{REPO / 'plugins'}:{REPO / 'include'}"}
    runs = []
    dags = 0
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", PARSE, str(REPO / "dags" / "loopline_projects.py")], env=env,
                             capture_output=True, text=True, check=True, timeout=300)
        seconds, dags_text = out.stdout.strip().splitlines()[-1].split()
        runs.append(float(seconds))
        dags = int(dags_text)
    return statistics.median(runs), dags


def main() -> int:
    from tests.support.bikes_project import PROJECT_YAML, write_project

    tmp = Path(tempfile.mkdtemp(prefix="loopline-parse-"))
    try:
        template = write_project(tmp / "template", days=0)
        print(f"{'projects':>8} {'DAGs':>5} {'parse s':>8} {'per project ms':>15}  limit {LIMIT_S:.0f} s")
        for n in (1, 10, 50):
            root = tmp / f"n{n}"
            for i in range(n):
                folder = root / f"bikes{i}"
                shutil.copytree(template, folder)
                (folder / "project.yaml").write_text(PROJECT_YAML.replace("project: bikes", f"project: bikes{i}"))
            seconds, dags = parse(root, tmp)
            verdict = "PASS" if seconds <= LIMIT_S else "FAIL"
            print(f"{n:>8} {dags:>5} {seconds:>8.2f} {1000 * seconds / (n + 1):>15.1f}  {verdict}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
