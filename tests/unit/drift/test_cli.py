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
    assert set(out["features"]) == {"a", "c"}  # shared columns compared
    assert "absent from the current data" in out["skipped"]["only_ref"]  # the other one reported
    for f in out["features"].values():
        assert {"psi", "kl", "js", "severity"} <= set(f)
    assert out["features"]["a"]["severity"] == "major"
    assert out["features"]["c"]["severity"] == "none"
    assert out["decision"]["not_compared"] == {"only_ref": "in the reference, absent from the current data"}
    assert out["decision"]["share_drifted"] == pytest.approx(2 / 3)  # a, and only_ref counted as drifted
    assert out["decision"]["drifted"] is True


def test_columns_html_and_exit_codes(files: tuple[str, str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "out" / "report.html"
    code = main(["drift", *files, "--columns", "a", "--html", str(html), "--fail-on-drift"])
    assert code == 3
    assert "a" in capsys.readouterr().out
    assert html.read_text().startswith("<!doctype html>")
    assert main(["drift", *files, "--columns", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize("bands", ["0.1,inf", "nan,0.2", "0.1,nan", "0.3,0.1", "0.2,0.2", "-1,0.2", "0.1", "a,b"])
def test_bad_psi_bands_are_rejected_naming_the_option(files: tuple[str, str], bands: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drift", *files, f"--psi-bands={bands}"]) == 2
    err = capsys.readouterr().err
    assert "--psi-bands" in err and "Traceback" not in err


@pytest.mark.parametrize(("var", "value"), [("LOOPLINE_DRIFT_SMOOTHING", "-0.01"),
                                            ("LOOPLINE_DRIFT_SMOOTHING", "nan"),
                                            ("LOOPLINE_PSI_BANDS", "0.2,inf")])
def test_bad_env_config_is_rejected_naming_the_variable(files: tuple[str, str], var: str, value: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(var, value)
    assert main(["drift", *files]) == 2
    assert var in capsys.readouterr().err
