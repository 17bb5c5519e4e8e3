"""The README's walk-through ("Bring your own model"), run exactly as written in a fresh folder.

The walk-through lies between ``<!-- tutorial:begin -->`` and ``<!-- tutorial:end -->``; HTML comments (not
shown on GitHub) mark what this test does with the fenced block that follows each of them:

- ``<!-- tutorial:run -->``: run it. All run blocks go, in order, to one ``bash -euo pipefail`` started in the
  repository's root (so ``cd`` and ``export`` carry over), with ``HOME`` a temporary folder;
- ``<!-- tutorial:output -->``: what the run block before it printed on stdout, exactly;
- ``<!-- tutorial:output trimmed -->``: lines of it, in order; decimals are not compared and a line ``…`` stands
  for any lines, as does the ``wall time`` line of ``loopline run``;
- ``<!-- tutorial:file PATH -->``: the content of PATH right after the run block before it.

The README writes the temporary ``HOME`` as ``/home/you``. Every path the walk-through names in backticks under
``.loopline/``, ``projects/`` or ``data/`` must exist at the end. Re-run with ``-rP`` to print the transcript.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SHOWN_HOME = "/home/you"
BLOCK = re.compile(r"<!-- tutorial:(?P<kind>run|output|file)(?: (?P<arg>[^>]*?))? -->\n```[a-z]*\n(?P<body>.*?)```\n",
                   re.DOTALL)
DECIMAL = re.compile(r"\d+\.\d+")
NAMED_PATH = re.compile(r"`((?:\.loopline|projects|data)/[^`\s]*)`")


@dataclass(frozen=True)
class Block:
    kind: str
    arg: str
    body: str
    after: int  # index of the run block it follows (-1: none)


@dataclass(frozen=True)
class Walk:
    blocks: list[Block]
    outputs: list[str]  # stdout of each run block, the temporary HOME written as the README shows it
    files: dict[int, str]  # content of each file block's PATH, by the block's index
    folder: Path  # the folder the walk-through ended in


def tutorial_text() -> str:
    text = README.read_text(encoding="utf-8")
    assert "<!-- tutorial:begin -->" in text and "<!-- tutorial:end -->" in text, "README lost its walk-through"
    return text.split("<!-- tutorial:begin -->", 1)[1].split("<!-- tutorial:end -->", 1)[0]


def blocks(text: str) -> list[Block]:
    out: list[Block] = []
    runs = -1
    for m in BLOCK.finditer(text):
        if m["kind"] == "run":
            runs += 1
        out.append(Block(m["kind"], (m["arg"] or "").strip(), m["body"], runs))
    return out


def script(found: list[Block], snapshots: Path) -> str:
    lines = ["set -euo pipefail"]
    runs = [b for b in found if b.kind == "run"]
    for i, run in enumerate(runs):
        lines += [f"echo '@@block {i}@@'", run.body.rstrip("\n")]
        for j, b in enumerate(found):
            if b.kind == "file" and b.after == i:
                lines.append(f"cp {shlex.quote(b.arg)} {shlex.quote(str(snapshots / str(j)))}")
    lines.append('echo "@@folder $PWD@@"')
    return "\n".join(lines) + "\n"


def matches_trimmed(shown: str, actual: str) -> list[str]:
    """README lines (decimals masked) not found in order in the actual output; ``…`` and ``time`` lines skip."""
    have = [DECIMAL.sub("#", line.rstrip()) for line in actual.splitlines()]
    at, missing = 0, []
    for line in shown.splitlines():
        if line.strip() in ("…", "...") or line.lstrip().startswith(("time ", "wall time ")):
            continue
        want = DECIMAL.sub("#", line.rstrip())
        try:
            at = have.index(want, at) + 1
        except ValueError:
            missing.append(line)
    return missing


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Walk:
    tmp = tmp_path_factory.mktemp("tutorial")
    home, snapshots = tmp / "home", tmp / "snapshots"
    home.mkdir()
    snapshots.mkdir()
    found = blocks(tutorial_text())
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "loopline").exists(), f"run the tests with the repository's .venv, not {sys.executable}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOOPLINE_", "AIRFLOW__", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}
    env.update({
        "HOME": str(home),
        # The interpreter running the tests is the repository's .venv (CI: `make test` in a fresh clone); first on
        # PATH in case the README's `$PWD/.venv/bin` is another checkout's, and this checkout's code first.
        "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO / "plugins")]),
        "PYTHONUNBUFFERED": "1",  # stdout and stderr interleaved as a terminal shows them
    })
    proc = subprocess.run(["bash", "-c", script(found, snapshots)], cwd=REPO, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=900, check=False)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, f"the walk-through failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n" \
                                 f"{proc.stderr[-6000:]}"
    folder = Path(re.findall(r"^@@folder (.*)@@$", proc.stdout, re.MULTILINE)[-1])
    parts = re.split(r"^@@block \d+@@\n", proc.stdout.split("\n@@folder ", 1)[0] + "\n", flags=re.MULTILINE)[1:]
    outputs = [p.replace(str(home), SHOWN_HOME) for p in parts]
    files = {j: (snapshots / str(j)).read_text(encoding="utf-8").replace(str(home), SHOWN_HOME)
             for j, b in enumerate(found) if b.kind == "file"}
    return Walk(found, outputs, files, folder)


@pytest.fixture(scope="module")
def folder(walked: Walk) -> Path:
    return walked.folder


def test_the_walk_through_is_marked() -> None:
    found = blocks(tutorial_text())
    assert sum(b.kind == "run" for b in found) >= 5
    assert any(b.kind == "file" for b in found) and any(b.kind == "output" for b in found)
    assert all(b.after >= 0 for b in found), "an output or file block before any run block"


def test_the_outputs_shown_are_what_the_commands_print(walked: Walk) -> None:
    found, outputs, files = walked.blocks, walked.outputs, walked.files
    assert len(outputs) == sum(b.kind == "run" for b in found)
    for j, b in enumerate(found):
        if b.kind == "file":
            assert files[j] == b.body, f"README is stale: {b.arg} after run block {b.after} is now:\n{files[j]}"
        elif b.kind == "output" and b.arg == "trimmed":
            missing = matches_trimmed(b.body, outputs[b.after])
            assert not missing, f"README is stale: run block {b.after} no longer prints {missing}; it printed:\n" \
                                f"{outputs[b.after]}"
        elif b.kind == "output":
            assert outputs[b.after] == b.body, f"README is stale: run block {b.after} printed:\n{outputs[b.after]}"


def test_the_project_was_written_and_passes_check(folder: Path) -> None:
    from loopline.project import load_file

    project = load_file(folder / "projects" / "shop" / "project.yaml")
    assert project.project == "shop" and list(project.models) == ["returned"]
    assert project.models["returned"].training.window_days < 60  # the edit the walk-through teaches


def test_the_run_trained_scored_and_checked_drift(folder: Path) -> None:
    summary = json.loads((folder / "shop-summary.json").read_text(encoding="utf-8"))
    model = summary["models"]["returned"]
    assert model["champion"] is not None
    assert model["days_scored"] > 0
    assert model["drift_alerts"], "the sale of the last weeks should drift"
    assert model["retrains"][0]["trigger"] == "manual" and model["retrains"][0]["action"] == "promote"
    assert not summary["days_failed"]


def test_every_path_the_walk_through_names_exists(folder: Path) -> None:
    named = sorted(set(NAMED_PATH.findall(tutorial_text())))
    assert any(p.endswith("report.html") for p in named) and any("predictions" in p for p in named)
    missing = [p for p in named if not any(folder.glob(p.rstrip("/")))]
    assert not missing, f"the README names paths the walk-through does not make: {missing}"


def test_the_failed_day_was_run_again_and_every_partition_verifies(folder: Path) -> None:
    from loopline.store import PartitionStore

    store = PartitionStore((folder / ".loopline" / "store").as_uri())
    last = {"2024-02-14", "2024-02-15", "2024-02-16"}
    assert last <= {d.isoformat() for d in store.days("shop/features", "1")}
    assert last <= {d.isoformat() for d in store.days("shop/returned/predictions", "1")}
    report = store.verify()
    assert report.ok and all(c.committed and not c.leftovers for c in report.partitions)
