"""The ``loopline drift`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loopline.cli import main

pytestmark = pytest.mark.unit


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    n = 2000
    ref = pd.DataFrame({"a": rng.normal(size=n), "c": rng.choice(["x", "y"], n), "only_ref": 1.0})
    cur = pd.DataFrame({"a": rng.normal(2, size=n), "c": rng.choice(["x", "y"], n)})
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_csv(tmp_path / "cur.csv", index=False)
    return str(tmp_path / "ref.parquet"), str(tmp_path / "cur.csv")


@pytest.mark.parametrize("binning", ["reference", "evidently"])
def test_json_output_shape(files: tuple[str, str], capsys: pytest.CaptureFixture[str], binning: str) -> None:
    assert main(["drift", *files, "--format", "json", "--binning", binning]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["features"]) == {"a", "c"}  # shared columns only
    for f in out["features"].values():
        assert {"psi", "kl", "js", "severity"} <= set(f)
    assert out["features"]["a"]["severity"] == "major"
    assert out["features"]["c"]["severity"] == "none"
    assert out["decision"]["share_drifted"] == 0.5
    assert out["decision"]["drifted"] is True  # 1 of 2 drifted reaches the default drift_share of 0.5


def test_columns_html_and_exit_codes(files: tuple[str, str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "out" / "report.html"
    code = main(["drift", *files, "--columns", "a", "--html", str(html), "--fail-on-drift"])
    assert code == 3
    assert "a" in capsys.readouterr().out
    assert html.read_text().startswith("<!doctype html>")
    assert main(["drift", *files, "--columns", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
