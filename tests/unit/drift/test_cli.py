"""The ``loopline drift`` command."""

from __future__ import annotations

import json
import os
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
    out = tmp_path / "out"
    out.mkdir()
    html = out / "report.html"
    code = main(["drift", *files, "--columns", "a", "--html", str(html), "--fail-on-drift"])
    assert code == 3
    assert "a" in capsys.readouterr().out
    assert html.read_text().startswith("<!doctype html>")
    assert [p.name for p in out.iterdir()] == ["report.html"]  # no temporary file left
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


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("existing_dir", "is a folder"),
        ("existing_dir/", "is a folder"),
        ("new_dir/", "is a folder"),
        ("new_dir/report.html", "not an existing folder"),
        ("new_dir/deeper/report.html", "not an existing folder"),
        ("a_file/report.html", "not an existing folder"),
        (".", "is a folder"),
    ],
)
def test_bad_html_target_is_an_error_before_any_work(target: str, match: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    before = _listing(tmp_path)
    # the inputs do not exist: the --html error coming first shows nothing was read or computed
    assert main(["drift", "missing_ref.parquet", "missing_cur.csv", "--html", target]) == 2
    err = capsys.readouterr().err
    assert "--html" in err and match in err and "Traceback" not in err
    assert _listing(tmp_path) == before  # nothing created, nothing left behind


def test_html_write_failure_leaves_nothing(files: tuple[str, str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    assert main(["drift", *files, "--html", str(out / "r.html")]) == 2
    assert "No space left" in capsys.readouterr().err
    assert list(out.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_html_into_a_read_only_folder(files: tuple[str, str], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["drift", *files, "--html", str(ro / "r.html")]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_no_column_in_common_and_empty_current_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame({"a": [1.0, 2.0]}).to_csv(tmp_path / "ref.csv", index=False)
    pd.DataFrame({"b": [1.0, 2.0]}).to_csv(tmp_path / "cur.csv", index=False)
    pd.DataFrame({"a": []}).to_csv(tmp_path / "empty.csv", index=False)
    assert main(["drift", str(tmp_path / "ref.csv"), str(tmp_path / "cur.csv")]) == 2
    err = capsys.readouterr().err
    assert "no column in common" in err and "['a']" in err and "['b']" in err
    assert main(["drift", str(tmp_path / "ref.csv"), str(tmp_path / "empty.csv")]) == 2
    assert "no rows" in capsys.readouterr().err


def test_table_names_what_was_not_compared(files: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drift", *files]) == 0
    out = capsys.readouterr().out
    assert "not compared, counted as drifted: only_ref" in out
    assert "skipped only_ref:" in out
