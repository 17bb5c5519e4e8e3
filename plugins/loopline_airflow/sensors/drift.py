"""DriftSensor: wait until the drift decision for a model says "drifted"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from loopline_airflow.triggers.drift import DriftTrigger, check_drift

if TYPE_CHECKING:
    from airflow.sdk import Context


class DriftSensor(BaseSensorOperator):
    """Succeed when the drift report for a model says drifted; return the report summary (XCom).

    Two ways to ask:

    - ``ds="{{ ds }}"``: that day's report decides. Drifted: success. Not drifted: the task is **skipped**
      (``skip_when_not_drifted=True``, the default; downstream retraining is skipped) or keeps waiting for
      the report to be rewritten (``False``). No report yet: keep waiting.
    - ``since="<ISO time>"`` (and no ``ds``): success on the oldest drifted report created after that time;
      reports that say "not drifted" are ignored.

    Waiting: with ``deferrable=True`` (default: ``[operators] default_deferrable``) the sensor looks once and
    then defers to :class:`~loopline_airflow.triggers.drift.DriftTrigger`, freeing its worker slot;
    otherwise it pokes every ``poke_interval`` seconds (``mode="poke"`` or ``"reschedule"``).

    Timeout and soft fail: after ``timeout`` seconds without an answer the task fails with
    ``AirflowSensorTimeout`` (deferred: the trigger's timeout, reported the same way); with
    ``soft_fail=True`` it is skipped instead. A malformed report fails the task with a message naming it
    (skipped too under ``soft_fail``).

    Returns (XCom): ``{"ds", "model_name", "model_version", "feature_set_version", "created_at", "drifted",
    "reasons", "top_features", "uri", "dedupe_key"}``.

    :param model_name: Only reports about this model (default: ``LOOPLINE_MODEL_NAME``).
    :param feature_set_version: Report tree to read (default: ``LOOPLINE_FEATURE_SET_VERSION``).
    :param ds: Day whose report decides.
    :param since: Any drifted report created after this time (ISO string or datetime).
    :param store_root: Store URI (default: ``LOOPLINE_STORE_ROOT``).
    """

    template_fields: Sequence[str] = ("model_name", "feature_set_version", "ds", "since", "store_root")
    ui_color = "#e8daef"

    def __init__(
        self,
        *,
        model_name: str | None = None,
        feature_set_version: str | None = None,
        ds: str | None = None,
        since: str | dt.datetime | None = None,
        store_root: str | None = None,
        skip_when_not_drifted: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.feature_set_version = feature_set_version
        self.ds = ds
        self.since = since
        self.store_root = store_root
        self.skip_when_not_drifted = skip_when_not_drifted
        self.deferrable = deferrable

    def _query(self) -> dict[str, Any]:
        from loopline.settings import Settings

        settings = Settings.from_env()
        since = self.since.isoformat() if isinstance(self.since, dt.datetime) else (self.since or None)
        return {
            "store_root": str(self.store_root or settings.store_root),
            "feature_set_version": str(self.feature_set_version or settings.feature_set_version),
            "model_name": str(self.model_name or settings.model_name),
            "ds": str(self.ds)[:10] if self.ds else None,
            "since": since,
        }

    def _outcome(self, found: dict[str, Any] | None) -> PokeReturnValue:
        if not found:
            return PokeReturnValue(is_done=False)
        if found["status"] == "drifted":
            report = found["report"]
            self.log.info("Drift detected for %s v%s on %s: %s (%s)", report["model_name"],
                          report["model_version"], report["ds"], report["reasons"], report["uri"])
            return PokeReturnValue(is_done=True, xcom_value=report)
        if found["status"] == "not_drifted" and self.skip_when_not_drifted:
            report = found["report"]
            raise AirflowSkipException(f"the drift report for {report['ds']} says not drifted ({report['uri']})")
        if found["status"] == "error":
            raise AirflowException(f"drift report unreadable: {found.get('message')}; fix or rewrite it")
        return PokeReturnValue(is_done=False)

    def poke(self, context: Context) -> PokeReturnValue:
        from loopline.reports import ReportError

        q = self._query()
        self.log.info("Looking for a drift report of %s in %s (v=%s, ds=%s, since=%s)", q["model_name"],
                      q["store_root"], q["feature_set_version"], q["ds"], q["since"])
        try:
            found = check_drift(q["store_root"], q["feature_set_version"], model_name=q["model_name"],
                                ds=q["ds"], since=q["since"])
        except ReportError as exc:
            raise AirflowException(f"{exc}; fix or rewrite the report") from exc
        return self._outcome(found)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        result = self.poke(context)  # the answer may already be there: no need to defer
        if result.is_done:
            return result.xcom_value
        q = self._query()
        self.defer(
            trigger=DriftTrigger(
                store_root=q["store_root"], feature_set_version=q["feature_set_version"],
                model_name=q["model_name"], ds=q["ds"], since=q["since"], poll_interval=self.poke_interval,
                stop_when_not_drifted=self.skip_when_not_drifted,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if not isinstance(event, dict) or "status" not in event:
            raise AirflowException(f"DriftTrigger sent an event the sensor cannot read: {event!r}")
        result = self._outcome(event)
        if not result.is_done:
            raise AirflowException(f"DriftTrigger fired without a drift decision: {event!r}")
        return result.xcom_value
