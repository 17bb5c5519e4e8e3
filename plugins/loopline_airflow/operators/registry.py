"""Registry operators: the champion/challenger promotion gate and the rollback, both speaking MLflow aliases.

The decision logic lives in :mod:`loopline.promotion` (no Airflow); these operators read their arguments,
call it with the task's context and turn its errors into Airflow's: what a retry cannot fix fails at once
(:class:`AirflowFailException`), an unreachable MLflow server leaves the task to its retries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from loopline_airflow.exceptions import (
    LooplineConfigurationError,
    LooplineRegistryUnavailable,
    LooplineUnsafeModelError,
)
from loopline_airflow.hooks.mlflow import MLflowHook
from loopline_airflow.links import MLflowModelVersionLink, MLflowRunLink

if TYPE_CHECKING:
    from airflow.sdk import Context
    from loopline.promotion import Registry


def _run_context(context: Context) -> dict[str, str]:
    """Lineage of the decision: the DAG, run and task that made it (what a retry of the same run shares)."""
    ti = context.get("ti")
    out = {
        "dag_id": getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None),
        "dag_run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "logical_date": context.get("logical_date"),
    }
    return {k: str(v) for k, v in out.items() if v is not None}


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "on"):
        return True
    if text in ("false", "0", "no", "n", "off", "", "none"):
        return False
    raise LooplineConfigurationError(f"{name}={value!r} is not a boolean; pass True/False")


def _parse_mapping(text: str) -> Any:
    import ast
    import json

    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)  # the str() of a dict: single quotes, True/False/None
    except (ValueError, SyntaxError):
        raise LooplineConfigurationError(f"validation={text[:200]!r} is neither a boolean nor a summary") from None


def validation_passed(validation: Any) -> bool:
    """Read the ``validation`` argument: a bool, ``"True"``/``"False"``, or a GX summary dict (``success``)."""
    if isinstance(validation, str):
        text = validation.strip()
        if text in ("", "None", "null"):  # an upstream task that returned nothing: it did not fail
            return True
        if text.startswith("{"):  # a summary rendered by a template without native rendering
            validation = _parse_mapping(text)
    if validation is None:
        return True
    if isinstance(validation, Mapping):
        if "success" not in validation:
            raise LooplineConfigurationError(
                "validation must be a bool or a GXValidationOperator summary with 'success'; got keys "
                f"{sorted(validation)}"
            )
        return bool(validation["success"])
    return _as_bool(validation, "validation")


class _RegistryOperator(BaseOperator):
    """Shared wiring: the hook, the model name and error translation."""

    def __init__(
        self,
        *,
        model_name: str | None = None,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        retry_attempts: int = 3,
        retry_backoff_seconds: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.mlflow_conn_id = mlflow_conn_id
        self.retry_attempts = retry_attempts
        self.retry_backoff_seconds = retry_backoff_seconds

    @cached_property
    def hook(self) -> MLflowHook:
        return MLflowHook(self.mlflow_conn_id, retry_attempts=self.retry_attempts,
                          retry_backoff_seconds=self.retry_backoff_seconds)

    def _model_name(self) -> str:
        if self.model_name:
            return str(self.model_name)
        from loopline.settings import Settings

        return Settings.from_env().model_name

    def _registry(self) -> Registry:
        try:
            return self.hook.registry(self._model_name())
        except ValueError as exc:  # a connection without a host, bad settings
            raise LooplineConfigurationError(str(exc)) from exc

    @staticmethod
    def _reraise(exc: Exception) -> None:
        """Raise the Airflow counterpart of a core error (returns for anything else)."""
        from loopline.promotion import PromotionError, RegistryUnavailableError
        from loopline.tracking import UnsafeModelError

        if isinstance(exc, RegistryUnavailableError):
            raise LooplineRegistryUnavailable(str(exc)) from exc
        if isinstance(exc, UnsafeModelError):
            raise LooplineUnsafeModelError(str(exc)) from exc
        if isinstance(exc, PromotionError):
            raise LooplineConfigurationError(str(exc)) from exc


class MLflowModelPromotionOperator(_RegistryOperator):
    """The champion/challenger gate: move the ``champion`` alias to the candidate only if it is better.

    Both models are compared on the **same** labelled window: the candidate's validation days. When the
    champion was validated on another window (or another feature-set version), both are re-evaluated on
    the candidate's validation days read from the store. Then:

    - no champion yet: promote if every guardrail holds;
    - candidate better by at least ``min_improvement`` and within the guardrails: ``champion`` moves to it,
      and the decision (metrics of both, window, reason, DAG run) and the previous champion are recorded as
      version tags and in the registered model's ``loopline.champion_history`` tag;
    - otherwise ``champion`` stays; the candidate is tagged ``loopline.decision=reject`` with the reason.

    A candidate whose data failed validation is never promoted; a worse one never either, even with
    ``force`` (which only waives ``min_improvement``). The candidate holds ``challenger`` while it is judged
    (and keeps it when rejected). A retry after a crash at any point ends in the same registry state.

    Returns (XCom) the decision record: ``{"action": "promote"|"reject", "reason", "model_name",
    "candidate_version", "champion_version" (the champion it was compared with), "metric", "delta",
    "candidate_metrics", "champion_metrics", "window", "comparison", "guardrails", "context", ...}``, plus
    ``candidate_run_id`` (the candidate's MLflow run, for the task's "MLflow run" link).

    :param candidate_version: Version to judge, usually ``"{{ ti.xcom_pull('train')['version'] }}"``.
    :param model_name: Registered model (default: ``LOOPLINE_MODEL_NAME``).
    :param metric: Metric compared (``roc_auc``, ``pr_auc``, ``log_loss``, ``brier``, …).
    :param higher_is_better: Direction of ``metric``; None takes it from the metric's name.
    :param min_improvement: How much better (in the metric's direction) the candidate must be.
    :param guardrails: Absolute bounds on the candidate's metrics, ``{"roc_auc": (0.6, None)}``.
    :param validation: Whether the training data passed validation: a bool, ``"True"``/``"False"`` or the
        summary returned by :class:`GXValidationOperator`. ``False`` always rejects.
    :param force: Waive ``min_improvement`` (manual retrain); never the guardrails, validation, or "not worse".
    :param store_root: Store URI for re-evaluation (default: ``LOOPLINE_STORE_ROOT``).
    :param project: Project whose model this is (its features dataset and task judge the models).
    :param project_model: The model's name in the project.
    :param mlflow_conn_id: Connection of the tracking server (falls back to the settings).
    """

    template_fields: Sequence[str] = (
        "model_name", "candidate_version", "metric", "min_improvement", "guardrails", "validation", "force",
        "store_root",
    )
    ui_color = "#d6eaf8"
    operator_extra_links = (MLflowRunLink(), MLflowModelVersionLink())

    def __init__(
        self,
        *,
        project: str,
        project_model: str,
        candidate_version: str,
        metric: str = "roc_auc",
        higher_is_better: bool | None = None,
        min_improvement: float | str = 0.0,
        guardrails: Mapping[str, Sequence[float | None]] | None = None,
        validation: bool | str | Mapping[str, Any] | None = None,
        force: bool | str = False,
        store_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.project_model = project_model
        self.candidate_version = candidate_version
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.min_improvement = min_improvement
        self.guardrails = guardrails
        self.validation = validation
        self.force = force
        self.store_root = store_root

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            return self._execute(context)
        except Exception as exc:
            self._reraise(exc)
            raise

    def _execute(self, context: Context) -> dict[str, Any]:
        from loopline import promotion

        from loopline_airflow.hooks.store import partition_store

        version = str(self.candidate_version or "").strip()
        if not version or version.lower() == "none":
            raise LooplineConfigurationError(
                "candidate_version is empty; pass the version the training task registered "
                "(e.g. \"{{ ti.xcom_pull(task_ids='train')['version'] }}\")"
            )
        try:
            min_improvement = float(self.min_improvement)
        except (TypeError, ValueError):
            raise LooplineConfigurationError(f"min_improvement={self.min_improvement!r} is not a number") from None
        registry = self._registry()
        store = partition_store(self.hook.settings(), root=self.store_root or None)
        with self.hook.credentials():  # the models are loaded from the server's artifact proxy
            result = promotion.judge(
                registry, version, metric=self.metric, higher_is_better=self.higher_is_better,
                min_improvement=min_improvement, guardrails=dict(self.guardrails or {}),
                validation_passed=validation_passed(self.validation), force=_as_bool(self.force, "force"),
                store=store, settings=self.hook.settings(), context=_run_context(context),
                **self._project_judging(),
            )
        self.log.info("Decision for %s v%s: %s — %s", registry.name, version, result["action"], result["reason"])
        return {**result, "candidate_run_id": self._run_id(registry, version)}

    def _run_id(self, registry: Registry, version: str) -> str | None:
        """The candidate's MLflow run (for the link only: a failed lookup costs the link, not the decision)."""
        try:
            run_id = registry.version(version).run_id
        except Exception as exc:
            self.log.warning("no MLflow run link for %s v%s: %s", registry.name, version, exc)
            return None
        return str(run_id) if run_id else None

    def _project_judging(self) -> dict[str, Any]:
        """Where the project model's features are and how its task judges it."""
        from loopline.project import load_project, project_names
        from loopline.steps import model_inputs
        from loopline.training import evaluate_inputs

        project = load_project(self.project)
        if self.project_model not in project.models:
            raise LooplineConfigurationError(f"project {self.project!r} has no model {self.project_model!r}")
        inputs = model_inputs(project, self.project_model)
        return {"dataset": project_names(project).features_dataset,
                "evaluate": lambda model, frame, fsv: evaluate_inputs(model, frame, inputs)}


class MLflowModelRollbackOperator(_RegistryOperator):
    """Move ``champion`` back to the previous champion recorded in the history, or to ``to_version``.

    The rolled-back version is tagged ``loopline.rolled_back=true`` with the reason, and the rollback is
    appended to ``loopline.champion_history``; the alias move is the last write. A retry of the same DAG run
    returns the recorded rollback instead of rolling back one step further.

    Returns (XCom) ``{"action": "rollback", "version" (new champion), "previous" (old champion), "reason",
    "dag_id", "dag_run_id", "id"}``.

    :param to_version: Version to make champion; None takes the previous champion from the history.
    :param reason: Why (recorded on the version and in the history).
    """

    template_fields: Sequence[str] = ("model_name", "to_version", "reason")
    ui_color = "#fadbd8"
    operator_extra_links = (MLflowModelVersionLink(),)

    def __init__(self, *, to_version: str | None = None, reason: str = "manual rollback", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.to_version = to_version
        self.reason = reason

    def execute(self, context: Context) -> dict[str, Any]:
        from loopline import promotion

        target = None if self.to_version in (None, "", "None") else str(self.to_version).strip()
        try:
            registry = self._registry()
            entry = promotion.rollback(registry, registry.name, target, str(self.reason), _run_context(context))
        except Exception as exc:
            self._reraise(exc)
            raise
        self.log.info("champion of %s is now v%s (was v%s): %s", registry.name, entry["version"],
                      entry.get("previous"), entry.get("reason"))
        return entry
