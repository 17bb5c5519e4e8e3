"""The ``loopline store`` commands."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from loopline.cli import EXIT_BROKEN, EXIT_INPUT, EXIT_OK, main
from loopline.store import MANIFEST, PartitionStore

pytestmark = pytest.mark.unit
D1, D2 = dt.date(2013, 1, 1), dt.date(2013, 1, 2)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PartitionStore:
    for key in list(os.environ):
        if key.startswith("LOOPLINE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path / "home"))
    store = PartitionStore((tmp_path / "root").as_uri())
    monkeypatch.setenv("LOOPLINE_STORE_ROOT", store.root)
    for dataset in ("features", "shop/predictions"):
        for day in (D1, D2):
            store.write(dataset, "1", day, pd.DataFrame({"id": range(4), "x": [0.5] * 4}))
    return store


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["store", "verify", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_healthy_store_verifies_ok(store: PartitionStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = verify(capsys)
    assert code == EXIT_OK
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * 4
    assert f"ok       {store.root}/shop/predictions/v=1/ds=2013-01-02  (4 rows)" in lines
    assert lines[-1] == f"4 partition(s) checked under {store.root}: 0 broken"
    code, out, _ = verify(capsys, "--dataset", "shop/predictions", "--quick")
    assert code == EXIT_OK and len(out.splitlines()) == 3


def test_a_broken_day_exits_non_zero_and_fix_quarantines_it(store: PartitionStore,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = Path(store._path("features", "1", D2))
    part = store.manifest("features", "1", D2).files[0]
    (folder / part).write_bytes(b"")  # zero bytes
    code, out, _ = verify(capsys, "--dataset", "features")
    assert code == EXIT_BROKEN
    assert f"BROKEN   {store.root}/features/v=1/ds=2013-01-02  (committed)" in out
    assert f"  {part}: not a readable Parquet file (ArrowInvalid: Parquet file size is 0 bytes)" in out
    assert out.splitlines()[-1].endswith("1 broken; run `loopline store verify --dataset features --fix`")

    code, out, _ = verify(capsys, "--dataset", "features", "--fix")
    assert code == EXIT_BROKEN  # it was broken: the day must be rebuilt
    assert f"  fixed: quarantined to {store.root}/_quarantine/features/v=1/ds=2013-01-02/" in out
    assert not store.exists("features", "1", D2) and store.days("features", "1") == [D1]
    code, out, _ = verify(capsys)
    assert code == EXIT_OK and "3 partition(s) checked" in out


def test_manifest_garbage_and_hash_mismatch_are_reported(store: PartitionStore,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (Path(store._path("features", "1", D1)) / MANIFEST).write_text("{not json")
    manifest = Path(store._path("shop/predictions", "1", D2)) / MANIFEST
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "content_hash": "f" * 64}))
    code, out, _ = verify(capsys)
    assert code == EXIT_BROKEN
    assert f"  {MANIFEST}: unreadable: not valid JSON" in out
    assert "content hash" in out and "differs from the manifest's ffffffffffffffff…" in out
    assert out.splitlines()[-1].endswith("2 broken; run `loopline store verify --fix`")
    code, out, _ = verify(capsys, "--quick")  # the footers only: the hash mismatch is not seen
    assert code == EXIT_BROKEN and "content hash" not in out and "1 broken" in out


def test_leftovers_are_listed_and_removed_after_the_grace_period(store: PartitionStore,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    leftover = Path(store._path("features", "1", D1)) / "part-00000-killed.parquet"
    leftover.write_bytes(b"half")
    code, out, _ = verify(capsys, "--fix")
    assert code == EXIT_OK and "  leftover of a killed write: part-00000-killed.parquet" in out
    assert leftover.exists() and "fixed:" not in out  # too fresh: it may be a running writer's
    then = time.time() - 2 * 3600
    os.utime(leftover, (then, then))
    code, out, _ = verify(capsys, "--fix", "--grace-minutes", "90")
    assert code == EXIT_OK and "  fixed: removed part-00000-killed.parquet" in out
    assert not leftover.exists()


def test_bad_input_exits_2(store: PartitionStore, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = verify(capsys, "--dataset", "nope")
    assert code == EXIT_INPUT and "no partitions of dataset 'nope'" in err
    code, _, err = verify(capsys, "--dataset", "Bad/Name")
    assert code == EXIT_INPUT and "is not a dataset name" in err
    code, out, _ = verify(capsys, "--root", (tmp_path / "empty").as_uri())
    assert code == EXIT_OK and "0 partition(s) checked" in out
    with pytest.raises(SystemExit):
        main(["store"])
