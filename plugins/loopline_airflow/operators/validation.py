"""GXValidationOperator: validate a partition (or a frame not yet written) against a GX suite."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from loopline_airflow.exceptions import LooplineConfigurationError, LooplineValidationError

if TYPE_CHECKING:
    from airflow.sdk import Context

_PARTITION_URI = re.compile(r"^(?P<root>.+)/(?P<dataset>[^/]+)/v=(?P<version>[^/]+)/ds=(?P<ds>\d{4}-\d{2}-\d{2})/?$")


def parse_partition_uri(uri: str) -> tuple[str, str, str, str]:
    """``<root>/<dataset>/v=<version>/ds=<YYYY-MM-DD>`` → (root, dataset, version, ds)."""
    m = _PARTITION_URI.match(uri.strip())
    if not m:
        raise LooplineConfigurationError(
            f"dataset_uri {uri!r} is not a partition URI; expected <root>/<dataset>/v=<version>/ds=YYYY-MM-DD"
        )
    return m["root"], m["dataset"], m["version"], m["ds"]


class GXValidationOperator(BaseOperator):
    """Validate one day of a dataset against a Great Expectations suite: a JSON file (GX's suite format), or a
    suite mapping such as the one generated from a project (``loopline.steps.features_suite(project)``).

    The data is either a committed partition — ``dataset_uri`` or ``dataset`` + ``version`` + ``ds`` in the
    store at ``store_root`` — or the DataFrame returned by ``frame_callable(**op_kwargs)`` (validate before
    writing, so bad data never lands). GX is imported and its objects are built only when the task runs.

    The full GX result (``gx_result.json``) and a GX Data Docs page (``data_docs.html``) are written beside
    the partition, in ``<root>/_validation/<dataset>/v=<version>/ds=<ds>/`` — never inside it — whenever the
    partition coordinates are known.

    On failure, ``on_failure="fail"`` raises :class:`LooplineValidationError` (a failed task, no retry) whose
    message lists each failing expectation (column, expectation, observed summary) and where the full result
    is; ``on_failure="warn"`` logs the same and returns. ``delete_on_failure=True`` removes the validated
    partition after a failure (validate-after-write: readers never see the bad day; the reports stay).

    Returns (XCom) the summary: ``{"success", "statistics", "failures": [{"column", "expectation",
    "observed"}], "rows", "suite", "suite_path", "data_name", "result_uri", "data_docs_uri"}``.

    :param suite: Path to a suite JSON file, or a suite mapping (``{"name", "expectations"}``).
    :param dataset_uri: Partition URI, e.g. ``file:///data/store/features/v=1/ds=2013-03-01``.
    :param dataset: Dataset name (with ``version`` and ``ds``) instead of ``dataset_uri``.
    :param version: Feature-set (or raw) version of the partition.
    :param ds: Day of the partition, usually ``"{{ ds }}"``.
    :param store_root: Store URI (default: ``LOOPLINE_STORE_ROOT``; ignored with ``dataset_uri``).
    :param frame_callable: Returns the DataFrame to validate, called with ``op_kwargs``.
    :param op_kwargs: Keyword arguments of ``frame_callable`` (templated).
    :param on_failure: ``"fail"`` or ``"warn"``.
    :param delete_on_failure: Delete the validated partition when it fails (partition mode only).
    """

    template_fields: Sequence[str] = ("suite", "dataset_uri", "dataset", "version", "ds", "store_root", "op_kwargs")
    ui_color = "#fdebd0"

    def __init__(
        self,
        *,
        suite: str | Mapping[str, Any],
        dataset_uri: str | None = None,
        dataset: str | None = None,
        version: str | None = None,
        ds: str | None = None,
        store_root: str | None = None,
        frame_callable: Callable[..., Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        on_failure: str = "fail",
        delete_on_failure: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.dataset_uri = dataset_uri
        self.dataset = dataset
        self.version = version
        self.ds = ds
        self.store_root = store_root
        self.frame_callable = frame_callable
        self.op_kwargs = op_kwargs
        self.on_failure = on_failure
        self.delete_on_failure = delete_on_failure

    def _coordinates(self) -> tuple[str | None, str | None, str | None, str | None]:
        if self.dataset_uri:
            return parse_partition_uri(str(self.dataset_uri))
        root = self.store_root
        if not root:
            from loopline.settings import Settings

            root = Settings.from_env().store_root
        return root, self.dataset, self.version, self.ds

    def execute(self, context: Context) -> dict[str, Any]:
        from loopline import validation
        from loopline.store import CorruptPartitionError, PartitionNotFoundError

        from loopline_airflow.hooks.store import partition_store

        if self.on_failure not in ("fail", "warn"):
            raise LooplineConfigurationError(f"on_failure={self.on_failure!r}; use 'fail' or 'warn'")
        root, dataset, version, ds = self._coordinates()
        located = bool(root and dataset and version and ds)
        if self.frame_callable is None and not located:
            raise LooplineConfigurationError(
                "nothing to validate: pass dataset_uri, or dataset + version + ds, or frame_callable"
            )
        store = partition_store(root=str(root)) if located else None
        name = store.uri(str(dataset), str(version), str(ds)) if store else f"{self.task_id}:frame"
        try:
            if not isinstance(self.suite, Mapping):
                validation.load_suite(self.suite)  # a clear error for a bad suite before reading any data
            if self.frame_callable is not None:
                frame = self.frame_callable(**dict(self.op_kwargs or {}))
            else:
                assert store is not None
                frame = store.read(str(dataset), str(version), str(ds), verify_hash=True)
        except validation.SuiteError as exc:
            raise LooplineConfigurationError(str(exc)) from exc
        except PartitionNotFoundError as exc:
            raise LooplineConfigurationError(f"cannot validate: {exc}") from exc
        except CorruptPartitionError as exc:  # a retry reads the same broken files
            raise LooplineValidationError(f"cannot validate {name}: {exc}") from exc
        self.log.info("Validating %s (%s rows) against suite %s", name, len(frame),
                      self.suite.get("name") if isinstance(self.suite, Mapping) else self.suite)
        try:
            summary = validation.validate(frame, self.suite, data_name=name)
        except validation.SuiteError as exc:
            raise LooplineConfigurationError(str(exc)) from exc
        if store is not None:
            validation.write_results(summary, store, str(dataset), str(version), str(ds))
            self.log.info("Full result: %s; Data Docs: %s", summary.result_uri, summary.data_docs_uri)
        result = summary.as_dict()
        if summary.success:
            self.log.info("%s passed %s: %s", name, summary.suite, summary.statistics)
            return result
        message = self._failure_message(name, summary)
        if self.delete_on_failure and store is not None and self.frame_callable is None:
            store.delete(str(dataset), str(version), str(ds))
            message += f"\nThe partition {name} was deleted (delete_on_failure=True); its reports were kept."
        if self.on_failure == "warn":
            self.log.warning("%s", message)
            return result
        raise LooplineValidationError(message, result)

    @staticmethod
    def _failure_message(name: str, summary: Any) -> str:
        stats = summary.statistics
        lines = [
            f"{name} failed expectation suite {summary.suite} "
            f"({stats.get('unsuccessful_expectations')} of {stats.get('evaluated_expectations')} expectations "
            "failed):",
            *[f"  - {line}" for line in summary.failure_lines()],
        ]
        if summary.result_uri:
            lines.append(f"Full result: {summary.result_uri}")
            lines.append(f"Data Docs: {summary.data_docs_uri}")
        else:
            lines.append("The full result was not stored: pass the partition coordinates (dataset, version, ds) "
                         "to keep it beside the partition.")
        lines.append("Fix the data (or the suite, if the expectation is wrong) and rerun the task.")
        return "\n".join(lines)

