"""loopline.validation: one GX context per process, each suite prepared once, no result carried over."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from loopline import validation

pytestmark = pytest.mark.unit

SUITE = {
    "name": "tiny",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "min_value": 0, "max_value": 10}},
    ],
}
GOOD = pd.DataFrame({"x": [1, 2, 3]})
BAD = pd.DataFrame({"x": [1, 20, None]})


@pytest.fixture
def contexts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every GX context built while the test runs."""
    gx = validation._gx()
    real = gx.get_context
    built: list[Any] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(real(*args, **kwargs))
        return built[-1]

    validation.clear_cache()
    monkeypatch.setattr(gx, "get_context", counting)
    yield built
    validation.clear_cache()


def write_suite(path: Path, suite: dict[str, Any]) -> Path:
    path.write_text(json.dumps(suite))
    return path


def test_context_and_definition_built_once_per_process(contexts: list[Any], tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "tiny.json", SUITE)
    generated = {"name": "generated", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "min_value": 0, "max_value": 5}}]}
    validation.warm((generated,))
    assert len(contexts) == 1 and len(validation._DEFINITIONS) == 1  # warm built the context and the suite
    for _ in range(3):
        assert validation.validate(GOOD, suite, data_name="good", render_docs=False).success
    assert validation.validate(GOOD, dict(generated), data_name="p", render_docs=False).success
    assert len(contexts) == 1
    assert len(validation._DEFINITIONS) == 2  # the generated suite warmed, the tmp suite on first use


def test_results_never_carry_over_between_frames(contexts: list[Any], tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "tiny.json", SUITE)
    verdicts = [validation.validate(f, suite, data_name=n, render_docs=False) for f, n in
                ((GOOD, "good"), (BAD, "bad"), (GOOD, "good again"), (BAD, "bad again"))]
    assert [v.success for v in verdicts] == [True, False, True, False]
    assert {f["expectation"] for f in verdicts[3].failures} == {"expect_column_values_to_not_be_null",
                                                              "expect_column_values_to_be_between"}
    assert verdicts[2].rows == 3 and verdicts[2].statistics["unsuccessful_expectations"] == 0


def test_edited_or_same_named_suites_get_their_own_definition(contexts: list[Any], tmp_path: Path) -> None:
    path = write_suite(tmp_path / "tiny.json", SUITE)
    assert not validation.validate(BAD, path, data_name="bad", render_docs=False).success
    # Same file, new content (the range now admits 20; nulls are still rejected).
    looser = {**SUITE, "expectations": [SUITE["expectations"][0], {
        "type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "min_value": 0, "max_value": 99}}]}
    write_suite(path, looser)
    edited = validation.validate(BAD, path, data_name="bad", render_docs=False)
    assert [f["expectation"] for f in edited.failures] == ["expect_column_values_to_not_be_null"]
    # Another file with the same suite name.
    other = write_suite(tmp_path / "other.json", {**SUITE, "expectations": SUITE["expectations"][1:]})
    assert validation.validate(pd.DataFrame({"x": [1, None]}), other, data_name="n", render_docs=False).success
    assert edited.suite == "tiny" and len(contexts) == 1


def test_a_broken_suite_is_not_cached(contexts: list[Any], tmp_path: Path) -> None:
    path = write_suite(tmp_path / "broken.json", {"name": "broken", "expectations": [
        {"type": "expect_column_values_to_be_frobnicated", "kwargs": {"column": "x"}}]})
    for _ in range(2):
        with pytest.raises(validation.SuiteError, match="expectation #0"):
            validation.validate(GOOD, path, data_name="x")
    assert validation._DEFINITIONS == {}


def test_boolean_only_gives_the_summary_verdict(contexts: list[Any], tmp_path: Path) -> None:
    mostly = {**SUITE, "expectations": [*SUITE["expectations"], {
        "type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "min_value": 0, "max_value": 5,
                                                                  "mostly": 0.6}}]}
    suite = write_suite(tmp_path / "tiny.json", mostly)
    frames = [GOOD, BAD, pd.DataFrame({"x": [1, 2, 7]}), pd.DataFrame({"x": [1, 7, 8]})]
    for frame in frames:
        full = validation.validate(frame, suite, data_name="f", render_docs=False)
        quick = validation.validate(frame, suite, data_name="f", render_docs=False, result_format="BOOLEAN_ONLY")
        assert quick.success == full.success and quick.statistics == full.statistics
        assert [f["expectation"] for f in quick.failures] == [f["expectation"] for f in full.failures]
