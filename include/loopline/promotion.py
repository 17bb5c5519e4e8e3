"""The champion/challenger gate: decide whether a candidate model replaces the champion, and record it.

Three layers, each usable without Airflow:

- :func:`decide` is pure: candidate metrics, champion metrics (or none), the comparison rule and the
  guardrails in; a :class:`PromotionDecision` out. It never promotes a candidate that failed data
  validation, breaks a guardrail or is worse than the champion.
- :func:`compare_on_same_window` gathers the two metric sets so that both models are judged on the **same**
  labelled days: the logged ``loopline.val_<metric>`` tags when both versions were validated on the same
  window and feature-set version, otherwise both models re-evaluated now on the candidate's validation days.
- :func:`apply_decision` / :func:`promote` / :func:`reject` / :func:`rollback` write the result to the MLflow
  registry with aliases (``champion``, ``challenger``), version tags and a registered-model tag holding the
  champion history. Every write is retried on transient errors; the ``champion`` alias move is the last
  write, and running any of them again after a crash converges to the same registry state.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from loopline.tracking import CHALLENGER, CHAMPION
from loopline.training import METRIC_DIRECTION

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from loopline.settings import Settings
    from loopline.store import PartitionStore

log = logging.getLogger(__name__)

T = TypeVar("T")

TAG_DECISION = "loopline.decision"
TAG_DECISION_REASON = "loopline.decision_reason"
TAG_DECISION_JSON = "loopline.decision_json"
TAG_PREVIOUS_CHAMPION = "loopline.previous_champion"
TAG_ROLLED_BACK = "loopline.rolled_back"
TAG_ROLLBACK_REASON = "loopline.rollback_reason"
TAG_VALIDATION_PASSED = "loopline.validation_passed"
TAG_HISTORY = "loopline.champion_history"
# Registry tag values are stored in VARCHAR(5000) columns on SQL backends; stay well inside.
MAX_TAG_CHARS = 4800
_EPS = 1e-12
_TRANSIENT_CODES = frozenset({
    "INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED",
    "RESOURCE_EXHAUSTED", "ABORTED",
})


# -- errors ---------------------------------------------------------------------------------------------
class PromotionError(ValueError):
    """The gate cannot decide with what it was given; the message says what to fix (a retry will not)."""


class UnknownModelError(PromotionError):
    """The registered model or model version does not exist."""


class MetricMissingError(PromotionError):
    """A model version has no value for the metric the gate compares or guards."""


class RegistryUnavailableError(RuntimeError):
    """The MLflow server did not answer (down, timeout, 5xx) after the retries; a later retry may work."""


# -- the pure decision ------------------------------------------------------------------------------------
Guardrails = Mapping[str, Sequence[float | None]]


@dataclass(frozen=True)
class PromotionDecision:
    """What the gate decided and why.

    ``delta`` is the candidate's improvement in the metric's better direction (positive: candidate better);
    it is None when there is no champion to compare with.
    """

    action: Literal["promote", "reject"]
    reason: str
    metric: str
    higher_is_better: bool
    min_improvement: float
    candidate: dict[str, float]
    champion: dict[str, float] | None
    delta: float | None
    guardrails: dict[str, list[float | None]] = field(default_factory=dict)
    validation_passed: bool = True
    forced: bool = False

    @property
    def promote(self) -> bool:
        return self.action == "promote"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromotionDecision:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


def metric_direction(metric: str) -> bool:
    """True when larger values of ``metric`` are better (known metrics only; others default to True)."""
    return METRIC_DIRECTION.get(metric, 1) > 0


def _check_metric(metrics: Mapping[str, float], name: str, whose: str) -> float:
    if name not in metrics:
        raise MetricMissingError(
            f"{whose} has no value for metric {name!r} (it has {sorted(metrics) or 'no metrics'}); "
            f"log it as the model-version tag 'loopline.val_{name}' (loopline.tracking.log_training_run does) "
            "or choose one of the metrics it has"
        )
    return float(metrics[name])


def _parse_guardrails(guardrails: Guardrails | None) -> dict[str, list[float | None]]:
    rails: dict[str, list[float | None]] = {}
    for name, bounds in (guardrails or {}).items():
        lo, hi = [*list(bounds), None, None][:2]
        if lo is not None and hi is not None and lo > hi:
            raise PromotionError(f"guardrail {name!r}: min {lo} is above max {hi}")
        rails[name] = [None if lo is None else float(lo), None if hi is None else float(hi)]
    return rails


def _broken_guardrail(metrics: Mapping[str, float], rails: Mapping[str, list[float | None]]) -> str | None:
    for name, (lo, hi) in rails.items():
        got = _check_metric(metrics, name, "the candidate (guardrail)")
        if math.isnan(got) or (lo is not None and got < lo) or (hi is not None and got > hi):
            bound = " and ".join(b for b in (f">= {lo}" if lo is not None else "",
                                             f"<= {hi}" if hi is not None else "") if b)
            return f"guardrail failed: {name} = {got:.6g}, required {bound}"
    return None


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    metric: str = "roc_auc",
    higher_is_better: bool = True,
    min_improvement: float = 0.0,
    guardrails: Guardrails | None = None,
    validation_passed: bool = True,
    force: bool = False,
) -> PromotionDecision:
    """Decide whether ``candidate`` replaces ``champion``; both metric sets must come from the same data.

    Rules, in order: a candidate whose data failed validation is rejected; every guardrail
    ``name: (min, max)`` (either bound may be None) must hold on the candidate's metrics; with no champion
    the candidate is promoted; otherwise it must beat the champion by more than zero **and** by at least
    ``min_improvement``. ``force`` waives ``min_improvement`` (a manual retrain may replace an equal
    champion) but never validation, the guardrails, or the rule that a worse candidate is not promoted.

    Raises:
        MetricMissingError: ``metric`` or a guarded metric is missing from a metric set.
        PromotionError: a negative ``min_improvement`` or a guardrail whose min exceeds its max.
    """
    if min_improvement < 0:
        raise PromotionError(f"min_improvement must be ≥ 0, got {min_improvement}")
    rails = _parse_guardrails(guardrails)
    cand = {k: float(v) for k, v in candidate.items()}
    champ = None if champion is None else {k: float(v) for k, v in champion.items()}

    def result(action: Literal["promote", "reject"], reason: str, delta: float | None = None) -> PromotionDecision:
        return PromotionDecision(
            action=action, reason=reason, metric=metric, higher_is_better=higher_is_better,
            min_improvement=float(min_improvement), candidate=cand, champion=champ, delta=delta,
            guardrails=rails, validation_passed=validation_passed, forced=force,
        )

    value = _check_metric(cand, metric, "the candidate")
    if not validation_passed:
        return result("reject", "the candidate's training data failed validation; it is never promoted")
    if math.isnan(value):
        return result("reject", f"the candidate's {metric} is NaN")
    broken = _broken_guardrail(cand, rails)
    if broken:
        return result("reject", broken)
    if champ is None:
        return result("promote", "no champion yet and every guardrail holds")
    best = _check_metric(champ, metric, "the champion")
    delta = (value - best) if higher_is_better else (best - value)
    if math.isnan(best):
        return result("promote", f"the champion's {metric} is NaN; the candidate's is {value:.6g}", None)
    versus = f"candidate {metric} {value:.6g} vs champion {best:.6g} (improvement {delta:+.6g})"
    if delta < -_EPS:
        return result("reject", f"worse than the champion: {versus}", delta)
    if force:
        return result("promote", f"forced (min_improvement waived), not worse than the champion: {versus}", delta)
    if delta <= _EPS:
        return result("reject", f"no improvement over the champion: {versus}", delta)
    if delta + _EPS < min_improvement:
        return result("reject", f"improvement below the minimum {min_improvement:g}: {versus}", delta)
    return result("promote", f"better than the champion by at least {min_improvement:g}: {versus}", delta)


# -- registry access with retries ---------------------------------------------------------------------------
def is_transient(exc: BaseException) -> bool:
    """True for errors a retry may cure: connection failures, timeouts, 5xx / unavailable answers."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    try:
        import requests

        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return True
    except ImportError:  # pragma: no cover - requests comes with mlflow
        pass
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in _TRANSIENT_CODES


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


class Registry:
    """One registered model in an MLflow registry, with every call retried on transient errors."""

    def __init__(
        self,
        client: MlflowClient,
        name: str,
        *,
        attempts: int = 3,
        backoff_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.name = name
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep

    @property
    def tracking_uri(self) -> str:
        return str(getattr(self.client, "_registry_uri", None) or getattr(self.client, "tracking_uri", ""))

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == self.attempts:
                    raise RegistryUnavailableError(
                        f"MLflow registry at {self.tracking_uri or '<default>'} did not answer while trying to "
                        f"{what} ({self.attempts} attempts): {exc}. Check that the MLflow server is up and "
                        "reachable; nothing after this step was written, so a retry is safe"
                    ) from exc
                delay = self.backoff_seconds * 2 ** (attempt - 1)
                log.warning("MLflow call to %s failed (attempt %s/%s), retrying in %.1fs: %s",
                            what, attempt, self.attempts, delay, exc)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # reads
    def model(self) -> Any:
        try:
            return self.call(f"read registered model {self.name!r}", self.client.get_registered_model, self.name)
        except RegistryUnavailableError:
            raise
        except Exception as exc:
            if _error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND"):
                raise UnknownModelError(
                    f"registered model {self.name!r} does not exist in {self.tracking_uri}; check the model "
                    "name (LOOPLINE_MODEL_NAME) and the MLflow connection"
                ) from exc
            raise

    def aliases(self) -> dict[str, str]:
        return {k: str(v) for k, v in (self.model().aliases or {}).items()}

    def champion(self) -> str | None:
        return self.aliases().get(CHAMPION)

    def model_tags(self) -> dict[str, str]:
        return dict(self.model().tags or {})

    def version(self, version: str) -> ModelVersion:
        self.model()  # a clear error for an unknown model before an unknown version
        try:
            return self.call(f"read version {version} of {self.name!r}", self.client.get_model_version,
                             self.name, str(version))
        except RegistryUnavailableError:
            raise
        except Exception as exc:
            if _error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
                raise UnknownModelError(
                    f"version {version!r} of registered model {self.name!r} does not exist; pass an existing "
                    "version (usually the training task's XCom)"
                ) from exc
            raise

    # writes
    def set_version_tags(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.call(f"tag version {version} ({key})", self.client.set_model_version_tag,
                      self.name, str(version), key, value)

    def set_model_tag(self, key: str, value: str) -> None:
        self.call(f"tag model {self.name!r} ({key})", self.client.set_registered_model_tag, self.name, key, value)

    def set_alias(self, alias: str, version: str) -> None:
        self.call(f"point alias {alias!r} at version {version}", self.client.set_registered_model_alias,
                  self.name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        self.call(f"delete alias {alias!r}", self.client.delete_registered_model_alias, self.name, alias)


# -- metrics of a version, same-window comparison ----------------------------------------------------------
WINDOW_TAGS = ("loopline.validation_start", "loopline.window_end", "loopline.feature_set_version")


def logged_metrics(mv: Any) -> dict[str, float]:
    """The ``loopline.val_<metric>`` tags of a model version as ``{metric: value}``."""
    out: dict[str, float] = {}
    for key, value in (mv.tags or {}).items():
        if key.startswith("loopline.val_"):
            try:
                out[key.removeprefix("loopline.val_")] = float(value)
            except ValueError:
                continue
    return out


def logged_window(mv: Any) -> dict[str, str] | None:
    """``{"validation_start", "window_end", "feature_set_version"}`` of a version, or None if not logged."""
    tags = mv.tags or {}
    if not all(tags.get(t) for t in WINDOW_TAGS):
        return None
    return {t.removeprefix("loopline."): str(tags[t]) for t in WINDOW_TAGS}


@dataclass(frozen=True)
class Comparison:
    """Both models' metrics on one labelled window, and how they were obtained."""

    candidate: dict[str, float]
    champion: dict[str, float] | None
    window: dict[str, Any]
    method: Literal["logged", "re-evaluated", "no-champion"]


def compare_on_same_window(
    registry: Registry,
    candidate_version: str,
    champion_version: str | None,
    *,
    store: PartitionStore | None = None,
    settings: Settings | None = None,
    dataset: str,
    evaluate: Callable[[Any, Any, str], dict[str, float]],
    load_model: Callable[[str], Any] | None = None,
) -> Comparison:
    """Metrics of the candidate and the champion on the candidate's validation window.

    Equal logged windows (validation start, end, feature-set version): the logged metrics are compared.
    Different windows: both models are loaded and evaluated now on the candidate's validation days read from
    ``store`` (``dataset``: the project's features dataset) — each on its own feature-set version of those days,
    with ``evaluate(model, frame, feature_set_version)`` (the model's task's metrics).
    """
    cand_mv = registry.version(candidate_version)
    cand_window = logged_window(cand_mv)
    if cand_window is None:
        raise PromotionError(
            f"version {candidate_version} of {registry.name!r} has no data-window tags {list(WINDOW_TAGS)}; "
            "register candidates with loopline.tracking.log_training_run so they can be compared on the "
            "same data"
        )
    cand_metrics = logged_metrics(cand_mv)
    if champion_version is None:
        return Comparison(cand_metrics, None, cand_window, "no-champion")
    champ_mv = registry.version(champion_version)
    if logged_window(champ_mv) == cand_window:
        return Comparison(cand_metrics, logged_metrics(champ_mv), cand_window, "logged")
    if store is None:
        raise PromotionError(
            f"champion v{champion_version} was validated on a different window than candidate "
            f"v{candidate_version}; a store is needed to re-evaluate both on the same days"
        )
    champ_fsv = (champ_mv.tags or {}).get("loopline.feature_set_version") or cand_window["feature_set_version"]
    loader = load_model or _default_loader(settings, registry)
    from loopline.training import TrainingDataError

    features, judge = dataset, evaluate

    frames: dict[str, Any] = {}

    def days(fsv: str) -> Any:
        if fsv not in frames:
            try:
                frames[fsv] = store.read_range(features, fsv, cand_window["validation_start"],
                                               cand_window["window_end"])
            except FileNotFoundError as exc:
                raise PromotionError(
                    f"cannot evaluate both models on the same days: {exc}. Backfill the features of "
                    f"{cand_window['validation_start']}..{cand_window['window_end']} (v={fsv}) first"
                ) from exc
        return frames[fsv]

    try:
        cand_eval = judge(loader(f"models:/{registry.name}/{candidate_version}"),
                          days(cand_window["feature_set_version"]), cand_window["feature_set_version"])
        champ_eval = judge(loader(f"models:/{registry.name}/{champion_version}"), days(champ_fsv), champ_fsv)
    except TrainingDataError as exc:
        raise PromotionError(f"cannot evaluate on {cand_window['validation_start']}..{cand_window['window_end']}: "
                             f"{exc}") from exc
    window = {**cand_window, "champion_feature_set_version": champ_fsv,
              "rows": len(days(cand_window["feature_set_version"]))}
    return Comparison(cand_eval, champ_eval, window, "re-evaluated")


def _default_loader(settings: Settings | None, registry: Registry) -> Callable[[str], Any]:
    from loopline import tracking
    from loopline.settings import Settings

    cfg = settings or Settings.from_env(mlflow_tracking_uri=registry.tracking_uri)

    def load(uri: str) -> Any:
        return registry.call(f"load {uri}", tracking.load_model, uri, cfg)

    return load


# -- writing the decision -------------------------------------------------------------------------------------
def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def recorded_decision(registry: Registry, version: str) -> dict[str, Any] | None:
    """The decision record stored on a version by an earlier run of the gate, if any."""
    raw = (registry.version(version).tags or {}).get(TAG_DECISION_JSON)
    if not raw:
        return None
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


def history(registry: Registry) -> list[dict[str, Any]]:
    """Champion changes recorded on the registered model, oldest first."""
    raw = registry.model_tags().get(TAG_HISTORY)
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError:
        log.warning("tag %s of %s is not JSON; starting a new history", TAG_HISTORY, registry.name)
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _append_history(registry: Registry, entry: dict[str, Any]) -> None:
    entries = history(registry)
    if any(e.get("id") == entry["id"] for e in entries):
        return  # written by an earlier attempt of the same run
    entries.append(entry)
    text = _dumps(entries)
    while len(text) > MAX_TAG_CHARS and len(entries) > 1:
        entries.pop(0)  # keep the newest changes; the version tags keep the full record
        text = _dumps(entries)
    registry.set_model_tag(TAG_HISTORY, text)


def _compact_tag(record: Mapping[str, Any]) -> str:
    text = _dumps(record)
    if len(text) <= MAX_TAG_CHARS:
        return text
    slim = {k: v for k, v in record.items() if k not in ("candidate_metrics", "champion_metrics")}
    slim["metrics_truncated"] = True
    return _dumps(slim)[:MAX_TAG_CHARS]


def build_record(
    decision: PromotionDecision,
    name: str,
    candidate_version: str,
    champion_version: str | None,
    *,
    window: Mapping[str, Any] | None = None,
    comparison: str = "logged",
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The decision as one JSON-able dict: what goes into the version tag, the history and the XCom."""
    return {
        "model_name": name,
        "candidate_version": str(candidate_version),
        "champion_version": None if champion_version is None else str(champion_version),
        "action": decision.action,
        "reason": decision.reason,
        "metric": decision.metric,
        "higher_is_better": decision.higher_is_better,
        "min_improvement": decision.min_improvement,
        "delta": decision.delta,
        "candidate_metrics": decision.candidate,
        "champion_metrics": decision.champion,
        "guardrails": decision.guardrails,
        "validation_passed": decision.validation_passed,
        "forced": decision.forced,
        "window": dict(window or {}),
        "comparison": comparison,
        "context": {k: str(v) for k, v in (context or {}).items() if v is not None},
    }


def judge(
    registry: Registry,
    version: str,
    *,
    metric: str,
    higher_is_better: bool | None = None,
    min_improvement: float = 0.0,
    guardrails: Guardrails | None = None,
    validation_passed: bool = True,
    force: bool = False,
    store: PartitionStore | None = None,
    settings: Settings | None = None,
    context: Mapping[str, Any] | None = None,
    dataset: str,
    evaluate: Callable[[Any, Any, str], dict[str, float]],
    load_model: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """The champion/challenger gate, end to end: the one implementation the promotion operator and
    ``loopline run`` share.

    A version that already is the champion by a recorded promotion returns that decision (a retry after a crash
    changes nothing). Otherwise the version becomes ``challenger``, both models are compared on the candidate's
    held-out days (:func:`compare_on_same_window`; ``dataset`` and ``evaluate`` say where a project's features
    are and how its task judges a model), :func:`decide` rules, and :func:`apply_decision` records it.
    A version tagged as trained on data that failed validation is never promoted.

    Returns:
        The decision record (:func:`build_record`), as written to the registry.
    """
    version = str(version)
    run = {k: str(v) for k, v in (context or {}).items() if v is not None}
    candidate = registry.version(version)  # unknown model / version: a clear error before any write
    champion = registry.champion()
    if champion == version:
        prior = recorded_decision(registry, version)
        if prior and prior.get("action") == "promote":
            return promote(registry, registry.name, version, prior, run)
        return {"action": "promote", "reason": f"v{version} already is the champion; nothing changed",
                "model_name": registry.name, "candidate_version": version, "champion_version": version,
                "context": run}
    if (candidate.tags or {}).get(TAG_VALIDATION_PASSED, "").lower() == "false":
        validation_passed = False
    mark_challenger(registry, version)
    comparison = compare_on_same_window(registry, version, champion, store=store, settings=settings,
                                        load_model=load_model, dataset=dataset, evaluate=evaluate)
    higher = metric_direction(metric) if higher_is_better is None else bool(higher_is_better)
    decision = decide(comparison.candidate, comparison.champion, metric=metric, higher_is_better=higher,
                      min_improvement=min_improvement, guardrails=guardrails, validation_passed=validation_passed,
                      force=force)
    record = build_record(decision, registry.name, version, champion, window=comparison.window,
                          comparison=comparison.method, context=run)
    result = apply_decision(registry, registry.name, version, record, run)
    log.info("decision for %s v%s: %s — %s (%s on %s: candidate %s, champion %s)", registry.name, version,
             result["action"], result["reason"], comparison.method, comparison.window, comparison.candidate,
             comparison.champion)
    return result


def mark_challenger(registry: Registry, version: str) -> None:
    """Point ``challenger`` at the version under evaluation (idempotent)."""
    if registry.aliases().get(CHALLENGER) != str(version):
        registry.set_alias(CHALLENGER, str(version))


def promote(
    client: MlflowClient | Registry,
    name: str,
    candidate_version: str,
    record: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Make ``candidate_version`` the champion and record why.

    Writes, in order: the version tags (decision, reason, full record, previous champion), the history entry
    on the registered model, removal of ``challenger`` from the candidate, and last the ``champion`` alias
    move. A retry after a crash between any two writes ends in the same state; if the candidate already is
    the champion with a recorded promotion, that recorded decision is returned untouched.
    """
    reg = _registry(client, name)
    version = str(candidate_version)
    if record.get("action") != "promote":
        raise PromotionError(f"promote() was given a {record.get('action')!r} decision for version {version}")
    current = reg.champion()
    if current == version:
        prior = recorded_decision(reg, version)
        if prior and prior.get("action") == "promote":
            _finish_promotion(reg, version)
            return prior
    full = dict(record)
    full.setdefault("context", {}).update({k: str(v) for k, v in (context or {}).items() if v is not None})
    previous = full.get("champion_version")
    if previous is None and current not in (None, version):
        previous = current
    full["champion_version"] = previous
    reg.version(version)  # a clear error for an unknown version before any write
    reg.set_version_tags(version, {
        TAG_DECISION: "promote",
        TAG_DECISION_REASON: str(full["reason"])[:MAX_TAG_CHARS],
        TAG_PREVIOUS_CHAMPION: previous or "",
        TAG_DECISION_JSON: _compact_tag(full),
    })
    ctx = full.get("context", {})
    _append_history(reg, {
        "id": f"promote:{version}:{previous or '-'}:{ctx.get('dag_run_id', '-')}",
        "action": "promote", "version": version, "previous": previous, "reason": full["reason"],
        "metric": full.get("metric"), "candidate": (full.get("candidate_metrics") or {}).get(full.get("metric", "")),
        "champion": (full.get("champion_metrics") or {}).get(full.get("metric", "")),
        "window": {k: full.get("window", {}).get(k) for k in ("validation_start", "window_end")},
        "dag_id": ctx.get("dag_id"), "dag_run_id": ctx.get("dag_run_id"),
    })
    _finish_promotion(reg, version)
    log.info("promoted %s v%s to %s (previous %s): %s", name, version, CHAMPION, previous, full["reason"])
    return full


def _finish_promotion(reg: Registry, version: str) -> None:
    aliases = reg.aliases()
    if aliases.get(CHALLENGER) == version:
        reg.delete_alias(CHALLENGER)
    if aliases.get(CHAMPION) != version:
        reg.set_alias(CHAMPION, version)  # the last write: serving switches only when all else is recorded


def reject(
    client: MlflowClient | Registry,
    name: str,
    candidate_version: str,
    record: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Leave ``champion`` untouched and tag the candidate as rejected with the reason."""
    reg = _registry(client, name)
    version = str(candidate_version)
    full = dict(record)
    full.setdefault("context", {}).update({k: str(v) for k, v in (context or {}).items() if v is not None})
    reg.set_version_tags(version, {
        TAG_DECISION: "reject",
        TAG_DECISION_REASON: str(full["reason"])[:MAX_TAG_CHARS],
        TAG_DECISION_JSON: _compact_tag(full),
    })
    log.info("rejected %s v%s: %s", name, version, full["reason"])
    return full


def apply_decision(
    client: MlflowClient | Registry,
    name: str,
    candidate_version: str,
    record: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`promote` or :func:`reject`, as the record says."""
    fn = promote if record.get("action") == "promote" else reject
    return fn(client, name, candidate_version, record, context)


def rollback(
    client: MlflowClient | Registry,
    name: str,
    to_version: str | None = None,
    reason: str = "manual rollback",
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Move ``champion`` back to the previous champion (from the history), or to ``to_version``.

    Records the rollback in the history and on both versions' tags before the alias move (the last
    write). Retrying the same run (same ``dag_run_id`` in ``context``) after it completed returns the
    recorded rollback instead of rolling back one step further.
    """
    reg = _registry(client, name)
    ctx = {k: str(v) for k, v in (context or {}).items() if v is not None}
    run_id = ctx.get("dag_run_id")
    current = reg.champion()
    entries = history(reg)
    if run_id:
        done = [e for e in entries if e.get("action") == "rollback" and e.get("dag_run_id") == run_id
                and (to_version is None or e.get("version") == str(to_version))]
        if done:
            entry = done[-1]
            if current != entry["version"]:
                reg.set_alias(CHAMPION, entry["version"])
            return entry
    if current is None:
        raise PromotionError(f"{name!r} has no champion to roll back; promote a version first")
    target = str(to_version) if to_version is not None else _previous_champion(reg, current, entries)
    if target == current:
        if to_version is not None:  # asked for the state the registry is already in: nothing to do
            return {"id": f"rollback:{current}->{target}:noop", "action": "rollback", "version": target,
                    "previous": current, "reason": f"v{target} already is the champion; nothing changed",
                    "dag_id": ctx.get("dag_id"), "dag_run_id": run_id}
        raise PromotionError(f"the recorded previous champion of {name!r} is v{target}, which already is "
                             "the champion; pass the version to roll back to")
    reg.version(target)  # must exist
    entry = {
        "id": f"rollback:{current}->{target}:{run_id or '-'}",
        "action": "rollback", "version": target, "previous": current, "reason": reason,
        "dag_id": ctx.get("dag_id"), "dag_run_id": run_id,
    }
    reg.set_version_tags(current, {TAG_ROLLED_BACK: "true", TAG_ROLLBACK_REASON: reason[:MAX_TAG_CHARS]})
    _append_history(reg, entry)
    reg.set_alias(CHAMPION, target)
    log.info("rolled %s back from v%s to v%s: %s", name, current, target, reason)
    return entry


def _previous_champion(reg: Registry, current: str, entries: list[dict[str, Any]]) -> str:
    for e in reversed(entries):  # the champion that ``current`` replaced when it was promoted
        if e.get("action") == "promote" and e.get("version") == current and e.get("previous"):
            return str(e["previous"])
    tag = (reg.version(current).tags or {}).get(TAG_PREVIOUS_CHAMPION)
    if tag:
        return str(tag)
    raise PromotionError(
        f"no previous champion of {reg.name!r} is recorded for v{current}; pass the version to roll back to"
    )


def _registry(client: MlflowClient | Registry, name: str) -> Registry:
    return client if isinstance(client, Registry) else Registry(client, name)
