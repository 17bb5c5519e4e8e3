"""Data validation with Great Expectations 1.x, without Airflow.

A suite is GX's own suite format (``name`` and a list of ``{"type", "kwargs"}`` expectations): a JSON file, or
a mapping generated in memory (``loopline.steps.features_suite`` of a project). :func:`validate` runs it on a
pandas frame in an *ephemeral* GX context (nothing written to a GX project folder; one context per process, each
suite registered in it once) and returns a :class:`ValidationSummary`: the verdict, GX's statistics and one line
per failing expectation.
:func:`write_results` stores the full GX result (JSON) and a GX Data Docs page (HTML) in the store's side
tree, beside — never inside — the partition::

    <root>/_validation/<dataset>/v=<version>/ds=<ds>/gx_result.json
    <root>/_validation/<dataset>/v=<version>/ds=<ds>/data_docs.html

Great Expectations takes seconds to import, so it is imported only when a validation runs.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.store import PartitionStore, as_day

if TYPE_CHECKING:
    import pandas as pd

VALIDATION_KIND = "validation"
RESULT_JSON = "gx_result.json"
DATA_DOCS_HTML = "data_docs.html"
_QUIET_LOGGERS = ("great_expectations", "great_expectations.data_context.types.base",
                  "great_expectations._docs_decorators")


class SuiteError(ValueError):
    """An expectation suite file is missing or malformed; the message names the file and the problem."""


@dataclass
class ValidationSummary:
    """The verdict of one validation, small enough for XCom (:meth:`as_dict`).

    ``failures`` holds ``{"column", "expectation", "observed"}`` per failing expectation; ``full_result`` and
    ``data_docs_html`` (GX's complete result and its rendered page) stay out of :meth:`as_dict`.
    """

    data_name: str
    suite: str
    suite_path: str
    success: bool
    statistics: dict[str, Any]
    failures: list[dict[str, Any]]
    rows: int
    result_uri: str | None = None
    data_docs_uri: str | None = None
    full_result: dict[str, Any] = field(default_factory=dict, repr=False)
    data_docs_html: str = field(default="", repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_name": self.data_name, "suite": self.suite, "suite_path": self.suite_path,
            "success": self.success, "statistics": self.statistics, "failures": self.failures,
            "rows": self.rows, "result_uri": self.result_uri, "data_docs_uri": self.data_docs_uri,
        }

    def failure_lines(self, limit: int = 20) -> list[str]:
        """One readable line per failing expectation: ``column: expectation (observed …)``."""
        lines = [f"{f['column'] or '<table>'}: {f['expectation']} (observed {f['observed']})"
                 for f in self.failures[:limit]]
        if len(self.failures) > limit:
            lines.append(f"… and {len(self.failures) - limit} more")
        return lines


def load_suite(suite: str | Path) -> dict[str, Any]:
    """Read and check a suite file; raise :class:`SuiteError` saying what to fix."""
    path = Path(suite)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SuiteError(f"expectation suite {path} does not exist; give the path of a suite JSON file "
                         "(GX's format: a 'name' and a list of 'expectations')") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"expectation suite {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list) or not data["expectations"]:
        raise SuiteError(f"expectation suite {path} must be an object with a non-empty 'expectations' list")
    for i, exp in enumerate(data["expectations"]):
        if not isinstance(exp, dict) or not isinstance(exp.get("type"), str) or not isinstance(
            exp.get("kwargs", {}), dict
        ):
            raise SuiteError(f"expectation suite {path}: expectation #{i} needs a 'type' string and a 'kwargs' "
                             f"object, got {exp!r}")
    data.setdefault("name", path.stem)
    return data


@functools.cache
def _gx() -> Any:
    """Import GX once, with its import-time chatter turned down (it logs at INFO through Airflow's logging)."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    import great_expectations as gx

    for name in _QUIET_LOGGERS:  # some GX modules set their own level on import
        logging.getLogger(name).setLevel(logging.WARNING)
    return gx


_CONTEXT_LOCK = threading.Lock()
_DEFINITIONS: dict[tuple[str, str], Any] = {}  # (suite path, suite content) -> ValidationDefinition
_NAMES_IN_CONTEXT: set[str] = set()


@functools.cache
def _context() -> Any:
    """The process's one ephemeral GX context (nothing written to disk), built on first use.

    Why one per process: building a context and registering a suite, a data source and a validation
    definition costs as much as a small validation; a task validates two or more frames, and
    :func:`warm` builds them in the process that forks task processes so each task starts with them.
    """
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _prepare(suite: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], Path, Any]:
    """The suite's spec, path and validation definition; built once per suite *content* and process.

    A mapping is a suite generated in memory (``loopline.suites``); its "path" names it for messages.
    """
    if isinstance(suite, Mapping):
        spec = dict(suite)
        path = Path(f"<generated suite {spec.get('name')}>")
    else:
        spec = load_suite(suite)
        path = Path(suite)
    key = (str(path), json.dumps(spec, sort_keys=True, default=str))
    with _CONTEXT_LOCK:
        definition = _DEFINITIONS.get(key)
        if definition is None:
            definition = _DEFINITIONS[key] = _build(spec, path)
    return spec, path, definition


def _build(spec: dict[str, Any], path: Path) -> Any:
    gx = _gx()
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    # GX logs and *drops* an expectation it cannot build; a typo would then silently pass. Build each first.
    for i, exp in enumerate(spec["expectations"]):
        try:
            ExpectationConfiguration(**exp).to_domain_obj()
        except Exception as exc:
            raise SuiteError(f"expectation suite {path} cannot be loaded by Great Expectations: expectation "
                             f"#{i} ({exp.get('type')}): {exc}") from exc
    # Two different files (or an edited one) may share a suite name; the context needs unique names.
    name = str(spec["name"])
    unique = name if name not in _NAMES_IN_CONTEXT else f"{name}~{len(_NAMES_IN_CONTEXT)}"
    try:
        suite_obj = ExpectationSuite(name=unique, expectations=spec["expectations"], meta=spec.get("meta") or {})
    except Exception as exc:  # GX raises several types for bad kwargs
        raise SuiteError(f"expectation suite {path} cannot be loaded by Great Expectations: {exc}") from exc
    if len(suite_obj.expectations) != len(spec["expectations"]):
        raise SuiteError(f"expectation suite {path}: Great Expectations kept {len(suite_obj.expectations)} of "
                         f"{len(spec['expectations'])} expectations; check their types and kwargs")
    context = _context()
    suite_obj = context.suites.add(suite_obj)
    source = context.data_sources.add_pandas(f"loopline-{unique}")
    batch_def = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"validate-{unique}", data=batch_def, suite=suite_obj)
    )
    _NAMES_IN_CONTEXT.add(name)
    _NAMES_IN_CONTEXT.add(unique)
    return definition


def warm(suites: tuple[str | Path | Mapping[str, Any], ...] = ()) -> None:
    """Build the GX context and these suites' validation definitions now (see :func:`_context`)."""
    _context()
    for suite in suites:
        _prepare(suite)


def clear_cache() -> None:
    """Forget this process's GX context and validation definitions (the next validation builds them)."""
    with _CONTEXT_LOCK:
        _DEFINITIONS.clear()
        _NAMES_IN_CONTEXT.clear()
        _context.cache_clear()


def validate(
    frame: pd.DataFrame, suite: str | Path | Mapping[str, Any], *, data_name: str, render_docs: bool = True,
    result_format: str = "SUMMARY",
) -> ValidationSummary:
    """Validate ``frame`` against a suite file in the process's ephemeral GX context.

    The context and each suite's validation definition are built once per process and suite content
    (:func:`_prepare`); every call runs the definition on its own frame, so results never carry over.

    Args:
        frame: The data (a partition, or a frame not yet written).
        suite: Suite file path, or a suite mapping (e.g. ``loopline.steps.features_suite(project)``).
        data_name: What the data is, for messages and the GX result (e.g. the partition URI).
        render_docs: Also render the GX Data Docs page (kept in ``data_docs_html``).
        result_format: GX's result format. ``SUMMARY`` (default) says what failed and how (observed values,
            unexpected counts and examples); ``BOOLEAN_ONLY`` evaluates every expectation just the same and
            gives the same verdict and statistics without those details, for less than half the CPU time —
            for a first pass whose failure is validated again with ``SUMMARY``.
    """
    spec, path, definition = _prepare(suite)
    with _CONTEXT_LOCK:  # one GX context: validations in one process run one at a time
        result = _run(definition, frame, result_format)
    full = result.to_json_dict()
    full.setdefault("meta", {})["loopline_data_name"] = data_name
    failures = [_failure(r) for r in result.results if not r.success]
    html = _render_docs(result) if render_docs else ""
    return ValidationSummary(
        data_name=data_name, suite=str(spec["name"]), suite_path=str(path), success=bool(result.success),
        statistics={k: _plain(v) for k, v in dict(result.statistics).items()}, failures=failures,
        rows=len(frame), full_result=full, data_docs_html=html,
    )


def _run(definition: Any, frame: pd.DataFrame, result_format: str) -> Any:
    """What ``ValidationDefinition.run`` does, less keeping the result in the context's validation results store.

    The ephemeral context's store is an in-memory dict that is never read here: every result kept there (a
    whole suite's, serialised) made a long-running process grow by one per validated day and cost about
    20 ms a validation. The definition was checked once when :func:`_build` added it to the context.
    """
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.validator.v1_validator import Validator

    fmt: Any = result_format
    validator = Validator(batch_definition=definition.batch_definition, result_format=fmt,
                          batch_parameters={"dataframe": frame})
    result = validator.validate_expectation_suite(definition.suite)
    run_id = RunIdentifier(run_time=dt.datetime.now(dt.UTC))
    meta: Any = result.meta  # what ValidationDefinition.run records
    meta["validation_id"], meta["checkpoint_id"] = definition.id, None
    meta["run_id"], meta["validation_time"] = run_id, run_id.run_time
    meta["batch_parameters"] = {"dataframe": "<DATAFRAME>"}
    return result


def _failure(r: Any) -> dict[str, Any]:
    cfg = r.expectation_config
    return {"column": cfg.kwargs.get("column"), "expectation": cfg.type, "observed": _observed(r)}


def _observed(r: Any) -> str:
    info = r.exception_info or {}
    if info.get("raised_exception"):
        return f"error: {info.get('exception_message')}"
    for value in info.values():  # metric errors come keyed by metric id
        if isinstance(value, dict) and value.get("raised_exception"):
            return f"error: {value.get('exception_message')}"
    res = r.result or {}
    if "observed_value" in res:
        return f"value {_plain(res['observed_value'])!r}"
    if "unexpected_count" in res:
        examples = [_plain(v) for v in (res.get("partial_unexpected_list") or [])[:5]]
        pct = res.get("unexpected_percent")
        pct_text = f" ({pct:.3g}%)" if isinstance(pct, int | float) else ""
        return f"{res['unexpected_count']} unexpected{pct_text}, e.g. {examples}"
    return "failed"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _render_docs(result: Any) -> str:
    try:
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        return str(DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result)))
    except Exception as exc:  # the verdict matters more than its page; say why the page is missing
        logging.getLogger(__name__).warning("could not render GX Data Docs: %s", exc)
        return f"<html><body><p>Data Docs could not be rendered: {exc}</p></body></html>"


def write_results(
    summary: ValidationSummary, store: PartitionStore, dataset: str, version: str, ds: str | dt.date
) -> ValidationSummary:
    """Write the full GX result and the Data Docs page beside the partition; fills in their URIs."""
    day = as_day(ds)
    summary.data_docs_uri = store.write_side_file(VALIDATION_KIND, dataset, version, day, DATA_DOCS_HTML,
                                                  summary.data_docs_html or "<html></html>")
    summary.result_uri = f"{store.side_path(VALIDATION_KIND, dataset, version, day)}/{RESULT_JSON}"
    payload = json.dumps({"summary": summary.as_dict(), "result": summary.full_result}, indent=2,
                         sort_keys=True, default=str)
    store.write_side_file(VALIDATION_KIND, dataset, version, day, RESULT_JSON, payload)
    return summary
