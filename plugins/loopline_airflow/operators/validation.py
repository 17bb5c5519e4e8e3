"""GXValidationOperator: validate a partition (or a frame not yet written) against a GX suite."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from loopline_airflow.exceptions import LooplineConfigurationError, LooplineValidationError

if TYPE_CHECKING:
    from airflow.sdk import Context

_PARTITION_URI = re.compile(r"^(?P<prefix>.+)/v=(?P<version>[^/]+)/ds=(?P<ds>\d{4}-\d{2}-\d{2})/?$")
# The datasets Loopline writes (loopline.project.names): P/raw/<source>, P/M/predictions, P/M/drift, P/features.
# Tried in this order, on the last folders of the URI before v=<version>.
_NAME = r"[a-z][a-z0-9_]*"
_SEGMENT = r"[a-z0-9][a-z0-9_.\-]*"
_OWN_DATASET_PATTERNS = (
    re.compile(rf"^(?P<root>.+)/(?P<dataset>{_NAME}/raw/{_SEGMENT})$"),
    re.compile(rf"^(?P<root>.+)/(?P<dataset>{_NAME}/{_NAME}/(?:predictions|drift))$"),
    re.compile(rf"^(?P<root>.+)/(?P<dataset>{_NAME}/features)$"),
)
_EXPECTED = "<root>/<dataset>/v=<version>/ds=YYYY-MM-DD"


def _root_uri(root: str) -> str:
    """A store root as the store writes it: no trailing slash, an absolute path as its ``file://`` URI."""
    from pathlib import Path

    root = root.strip()
    if "://" not in root and root.startswith("/"):
        return Path(root).as_uri()
    return root.rstrip("/")


def parse_partition_uri(uri: str, store_root: str | None = None) -> tuple[str, str, str, str]:
    """``<root>/<dataset>/v=<version>/ds=<YYYY-MM-DD>`` → (root, dataset, version, ds).

    A dataset name may hold slashes (``bikes/features``), so where the root ends is ambiguous in general. With
    ``store_root`` the URI must lie under it and the rest (up to ``v=``) is the dataset, whatever its name.
    Without it the dataset is read by Loopline's naming scheme (:mod:`loopline.project.names`):
    ``P/raw/<source>``, ``P/M/predictions``, ``P/M/drift`` or ``P/features``; any other dataset needs
    ``store_root``.
    """
    from loopline.store import check_dataset_name

    text = uri.strip()
    m = _PARTITION_URI.match(text)
    if not m:
        raise LooplineConfigurationError(f"dataset_uri {uri!r} is not a partition URI; expected {_EXPECTED}")
    prefix, version, ds = m["prefix"], m["version"], m["ds"]
    if store_root:
        root = _root_uri(store_root)
        dataset = prefix[len(root) + 1:] if prefix.startswith(root + "/") else ""
        try:
            check_dataset_name(dataset)
        except ValueError as exc:
            raise LooplineConfigurationError(
                f"dataset_uri {uri!r} does not lie under store_root {root!r} as {_EXPECTED}: {exc}") from exc
        return root, dataset, version, ds
    for pattern in _OWN_DATASET_PATTERNS:
        found = pattern.match(prefix)
        if found:
            return found["root"], found["dataset"], version, ds
    raise LooplineConfigurationError(
        f"dataset_uri {uri!r}: cannot tell where the store root ends, as its dataset is not one Loopline names "
        f"(P/features, P/raw/<source>, P/M/predictions, P/M/drift); pass store_root= (the store's root URI) "
        f"with it, or dataset= + version= + ds=")


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
    :param dataset_uri: Partition URI, e.g. ``file:///data/store/bikes/features/v=2/ds=2013-03-01``. A dataset
        name may hold slashes, so the root is where ``store_root`` says (given, else ``LOOPLINE_STORE_ROOT`` when
        the URI lies under it); a URI outside both is split by Loopline's dataset names (``P/features``,
        ``P/raw/<source>``, ``P/M/predictions``, ``P/M/drift``), and any other dataset needs ``store_root``.
    :param dataset: Dataset name (with ``version`` and ``ds``) instead of ``dataset_uri``.
    :param version: Feature-set (or raw) version of the partition.
    :param ds: Day of the partition, usually ``"{{ ds }}"``.
    :param store_root: Store URI (default: ``LOOPLINE_STORE_ROOT``); with ``dataset_uri``, where its root ends.
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
        root = self.store_root
        if self.dataset_uri:
            uri = str(self.dataset_uri).strip()
            if not root:
                from loopline.settings import Settings

                default = Settings.from_env().store_root
                root = default if uri.startswith(default.rstrip("/") + "/") else None
            return parse_partition_uri(uri, root)
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

