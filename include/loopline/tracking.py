"""MLflow tracking and registry: log a training run with its lineage, register it, load models back.

Conventions every other part relies on:

- metrics of the held-out window are logged as ``val_<metric>`` (``val_roc_auc``, ``val_pr_auc``,
  ``val_log_loss``, ``val_brier``);
- lineage is logged as run tags and copied onto the model version as tags, under the ``loopline.`` prefix
  (:data:`LINEAGE_TAGS`);
- the drift reference profile is the artifact ``drift/reference_profile.json``: the features binned on the
  training days, the ``score`` binned on the held-out days (out-of-sample scores, as production sees them)
  and the validation metrics, so a day's drift check never re-reads the training data;
- serving loads only ``models:/<name>@champion``;
- a model is loaded only from a skops file whose untrusted types are all in :data:`REVIEWED_SKOPS_TYPES`
  (:func:`load_model`); MLflow's own loaders, which let the artifact's ``MLmodel`` choose pickle, are never
  called, so a registered version cannot run code in a Loopline process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline import lineage
from loopline.cache import cache_dir, prune_oldest
from loopline.settings import Settings
from loopline.training import TrainResult, model_frame

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from loopline.drift import ReferenceProfile

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
REFERENCE_PROFILE_ARTIFACT = "drift/reference_profile.json"
TAG_TRIGGER = "loopline.trigger"  # what started a training run: cron, drift or manual (run and version tag)
LINEAGE_TAGS = (
    "loopline.window_start", "loopline.window_end", "loopline.validation_start", "loopline.feature_set_version",
    "loopline.train_rows", "loopline.validation_rows", "loopline.content_hash", "loopline.package_version",
    "loopline.git_revision", "loopline.seed", TAG_TRIGGER, "loopline.dag_id", "loopline.dag_run_id",
)


# What an MLflow client error says when the tracking server is down or unreachable (requests / urllib3 text,
# carried inside MlflowException messages).
_UNREACHABLE = ("Connection refused", "Max retries exceeded", "Failed to establish a new connection",
                "RemoteDisconnected", "Read timed out", "Connection aborted")


class TrackingServerUnavailableError(ConnectionError):
    """The MLflow tracking server did not answer; the message says what was being done and what is unchanged."""


@contextmanager
def tracking_server_errors(settings: Settings, doing: str, unchanged: str) -> Iterator[None]:
    """Turn "the tracking server is unreachable" into one clear error naming the server, the step, and what
    stayed as it was; any other error passes through untouched."""
    try:
        yield
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if not any(marker in text for marker in _UNREACHABLE):
            raise
        raise TrackingServerUnavailableError(
            f"MLflow tracking server {settings.mlflow_tracking_uri} did not answer while {doing} ({text[:300]}). "
            f"{unchanged} Start the server (or fix LOOPLINE_MLFLOW_TRACKING_URI) and clear the task to retry."
        ) from exc


@dataclass(frozen=True)
class RegisteredModel:
    """A model version the registry now holds."""

    name: str
    version: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "model_uri": self.model_uri,
                "metrics": self.metrics}


def point(settings: Settings) -> None:
    """Point MLflow's fluent API at the settings' tracking server (and registry), for a step that only reads.

    Setting the same URI again is skipped: each ``mlflow.set_tracking_uri`` resets MLflow's tracer provider."""
    import mlflow

    uri = settings.mlflow_tracking_uri
    if mlflow.get_tracking_uri() != uri or mlflow.get_registry_uri() != uri:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' tracking URI and make sure the experiment exists; returns its id.

    For a step that logs runs; a step that only reads the registry or artifacts calls :func:`point`."""
    import mlflow

    point(settings)
    key = (settings.mlflow_tracking_uri, settings.experiment_name)
    known = _experiment_ids.get(key)
    if known is not None:
        return known
    exp = mlflow.get_experiment_by_name(settings.experiment_name)
    if exp is not None:
        return _experiment_ids.setdefault(key, str(exp.experiment_id))
    try:
        created = str(mlflow.create_experiment(settings.experiment_name,
                                               artifact_location=_artifact_location(settings)))
    except Exception:  # another process created it first
        exp = mlflow.get_experiment_by_name(settings.experiment_name)
        if exp is None:
            raise
        created = str(exp.experiment_id)
    return _experiment_ids.setdefault(key, created)


# Experiment ids by (tracking URI, experiment name), found once per process: an experiment's id never changes
# (a deleted experiment keeps its id until it is purged, and a purged one is not recreated under Loopline).
_experiment_ids: dict[tuple[str, str], str] = {}


def _artifact_location(settings: Settings) -> str | None:
    # Against a tracking server the server decides (it may proxy artifacts); locally we pick the folder.
    if settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{settings.mlflow_artifact_root}/{settings.experiment_name}"


def client(settings: Settings) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)


def _pip_requirements() -> list[str]:
    from importlib import metadata

    return [f"{d}=={metadata.version(d)}" for d in ("scikit-learn", "pandas", "numpy", "scipy", "skops")]


# Types of Loopline's own pipeline that skops does not trust by default, reviewed: the tree nodes of
# HistGradientBoosting (their indices are not bounds-checked, so a *malicious* file could crash predict) and
# the partial(check_array) the estimator keeps. We load only models we trained and logged ourselves.
REVIEWED_SKOPS_TYPES = frozenset({
    "numpy.dtype",  # a data-type descriptor (encoders keep their output dtype); constructing one runs no code
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "functools.partial",
    "sklearn.utils.validation.check_array",
})


def _unreviewed(untrusted: list[str]) -> list[str]:
    return sorted(set(untrusted) - REVIEWED_SKOPS_TYPES)


def _unreviewed_types_error(exc: Exception) -> TypeError | None:
    """Our error for MLflow's refusal to save a model holding types outside :data:`REVIEWED_SKOPS_TYPES`.

    ``mlflow.sklearn`` saves a skops model and loads it straight back trusting only the types it was given
    (:data:`REVIEWED_SKOPS_TYPES`), so a model with any other untrusted type is refused before it is logged or
    registered — with one serialization, not a second one made only to list the types first.
    """
    text = str(exc)
    if "untrusted types" not in text:
        return None
    return TypeError(
        f"the model holds types skops does not trust and nobody reviewed ({text[text.find('Root error'):][:400]}); "
        "review them and add them to loopline.tracking.REVIEWED_SKOPS_TYPES, or change the pipeline"
    )


def log_training_run(
    result: TrainResult,
    settings: Settings,
    *,
    context: Mapping[str, str] | None = None,
    register: bool = True,
) -> RegisteredModel:
    """Log a training run (params, metrics, model, lineage, reference profiles) and register the model.

    Args:
        result: What :func:`loopline.training.train` returned.
        settings: Where to log.
        context: Extra lineage, e.g. ``{"trigger": "drift", "dag_id": ..., "dag_run_id": ...}``; each key is
            logged as the tag ``loopline.<key>``.
        register: Register the model as a new version of ``settings.model_name``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    experiment_id = configure(settings)
    version = result.feature_set_version
    tags = {
        "loopline.window_start": result.window.start.isoformat(),
        "loopline.window_end": result.window.end.isoformat(),
        "loopline.validation_start": result.window.validation_start.isoformat(),
        "loopline.feature_set_version": version,
        "loopline.train_rows": str(result.train_rows),
        "loopline.validation_rows": str(result.validation_rows),
        "loopline.content_hash": result.content_hash,
        "loopline.package_version": lineage.package_version(),
        "loopline.git_revision": lineage.git_revision(),
        "loopline.seed": str(result.seed),
    }
    tags.update({f"loopline.{k}": str(v) for k, v in (context or {}).items()})
    from loopline.tasktypes import task_type

    profile = reference_profile(result)
    columns, kinds = _inputs_of(result)
    example = model_frame(result.reference.head(5), columns, [c for c in columns if kinds[c] == "categorical"])
    try:
        active = mlflow.start_run(experiment_id=experiment_id, tags=tags)
    except MlflowException as exc:  # the id this process remembered is of an experiment that is gone
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        _experiment_ids.pop((settings.mlflow_tracking_uri, settings.experiment_name), None)
        active = mlflow.start_run(experiment_id=configure(settings), tags=tags)
    with active as run:
        mlflow.log_params({**result.params, "seed": result.seed, "feature_set_version": version})
        mlflow.log_metrics({f"val_{k}": v for k, v in result.metrics.items()})
        mlflow.log_metrics({"train_rows": result.train_rows, "validation_rows": result.validation_rows,
                            "validation_label_rate": result.validation_label_rate})
        mlflow.log_dict(json.loads(profile.to_json()), REFERENCE_PROFILE_ARTIFACT)
        mlflow.log_dict(result.window.as_dict(), "window.json")
        signature = infer_signature(example, task_type(result.task).predict(result.model, example))
        # No input_example: MLflow would validate it by loading the model through mlflow.pyfunc, which
        # MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false (set for every Loopline process) refuses, leaving a
        # misleading warning on every run; the signature already records the input schema.
        try:
            info = mlflow.sklearn.log_model(
                result.model,
                name="model",
                signature=signature,
                pip_requirements=_pip_requirements(),
                serialization_format="skops",
                skops_trusted_types=sorted(REVIEWED_SKOPS_TYPES),
                registered_model_name=settings.model_name if register else None,
                # The lineage and the validation metrics, on the logged model and on the registered version:
                # MLflow creates the version with them (one write, not one round trip per tag).
                tags={**tags, **{f"loopline.val_{key}": repr(metric) for key, metric in result.metrics.items()}},
            )
        except MlflowException as exc:
            refused = _unreviewed_types_error(exc)
            if refused is None:
                raise
            raise refused from exc
    registered_version = str(info.registered_model_version) if register else ""
    uri = f"models:/{settings.model_name}/{registered_version}" if register else info.model_uri
    if register:
        # The version this process just logged is the object it fitted: a later load_model of it in this
        # process (the gate, then scoring, in `loopline run`) takes it from the cache instead of downloading
        # and rebuilding it. Saving already proved the artifact loads (MLflow's skops save loads the file back
        # with the reviewed types); a process that did not log the version (every Airflow task) downloads it.
        _cache_model((settings.mlflow_tracking_uri, settings.model_name, registered_version, run.info.run_id),
                     result.model)
    return RegisteredModel(settings.model_name, registered_version, run.info.run_id, uri, dict(result.metrics))


_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)/?$")
MODEL_CACHE_SIZE = 4
_model_cache: OrderedDict[tuple[str, str, str, str], Any] = OrderedDict()
_model_cache_lock = threading.Lock()

# The only serialization Loopline loads, and the only model file names it downloads: one plain file name in
# the model's folder (no folder, no "..", no absolute path), so the MLmodel cannot point the download anywhere.
SKOPS_FORMAT = "skops"
_SKOPS_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.skops")
_MLMODEL = "MLmodel"
# A real MLmodel is a few kB; anything far larger is refused before YAML parses it.
MAX_MLMODEL_BYTES = 1 << 20
_WHAT_TO_DO = (
    "Loopline loads only models saved by loopline.tracking.log_training_run (skops, reviewed types). Nothing of "
    "this artifact was executed. Point the alias back at a trusted version (e.g. the MLflowModelRollbackOperator "
    "or MlflowClient.set_registered_model_alias) and find out who registered this one; if the model is genuine, "
    "retrain and log it with log_training_run"
)


class UnsafeModelError(ValueError):
    """:func:`load_model` refused a model artifact: it is not a skops file of Loopline's reviewed types (or is
    unreadable). Nothing of the artifact was deserialized; the message names the model, what was refused and
    what to do. A retry cannot fix it."""


def load_model(model_uri: str, settings: Settings) -> Any:
    """Load a scikit-learn model by URI (``models:/name@champion``, ``models:/name/3``, ``runs:/…``).

    Only a skops file is loaded, and only when every type in it that skops does not trust is in
    :data:`REVIEWED_SKOPS_TYPES`; anything else raises :class:`UnsafeModelError` before any of it is
    deserialized (see :func:`_load_reviewed_skops`). ``mlflow.sklearn.load_model`` is never used: it lets the
    artifact's own ``MLmodel`` choose pickle, and trusts the skops types that file lists.

    A version URI (``models:/name/3``) is cached in the process, keyed by the tracking server, the name,
    the version and the version's source run, so a scoring run that pins a version loads it once for all
    its days and a promotion that compares two versions loads each once. An alias URI
    (``models:/name@champion``) moves when the alias does: it is never cached and resolves on every call.
    """
    point(settings)
    pinned = _VERSION_URI.match(model_uri)
    if pinned is None:
        return _load_reviewed_skops(model_uri, settings)
    mv = client(settings).get_model_version(pinned["name"], pinned["version"])
    key = (settings.mlflow_tracking_uri, pinned["name"], str(mv.version), str(mv.run_id))
    with _model_cache_lock:
        if key in _model_cache:
            _model_cache.move_to_end(key)
            return _model_cache[key]
    model = _load_reviewed_skops(model_uri, settings)
    _cache_model(key, model)
    return model


def _cache_model(key: tuple[str, str, str, str], model: Any) -> None:
    with _model_cache_lock:
        _model_cache[key] = model
        _model_cache.move_to_end(key)
        while len(_model_cache) > MODEL_CACHE_SIZE:
            _model_cache.popitem(last=False)


def _artifact_root(model_uri: str, settings: Settings) -> tuple[str, str, bool]:
    """Where the model's files are, how to name the model in messages, and whether those files are a logged
    model's (which MLflow writes once, so a copy downloaded before is the same file).

    A registry URI is resolved to one version's download location first, so the MLmodel and the model file
    are read from the same version even if the alias moves in between; a logged-model URI
    (``models:/m-<id>``) to that model's artifact location. Other URIs (``runs:/…``, a storage URI) are read
    where they point, every time.
    """
    by_version, by_alias = _VERSION_URI.match(model_uri), _ALIAS_URI.match(model_uri)
    logged = _LOGGED_MODEL_URI.match(model_uri)
    c = client(settings)
    if logged is not None:  # what log_training_run(register=False) returns
        return str(c.get_logged_model(logged["model_id"]).artifact_location).rstrip("/"), model_uri, True
    if by_version is None and by_alias is None:
        return model_uri.rstrip("/"), model_uri, False
    if by_version is not None:
        name, version = by_version["name"], by_version["version"]
    else:
        assert by_alias is not None
        name = by_alias["name"]
        version = str(c.get_model_version_by_alias(name, by_alias["alias"]).version)
    root = str(c.get_model_version_download_uri(name, version)).rstrip("/")
    return root, f"{model_uri} (registered model {name!r} version {version})", True


def _download(uri: str, dst: Path, settings: Settings) -> Path:
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                    tracking_uri=settings.mlflow_tracking_uri))


# Files of logged models and runs, downloaded once per machine: every scoring task loads its champion and every
# drift task its reference profile in a new process, and each download took 3-5 MLflow calls (a listing, the
# server's info, the file). Only artifacts MLflow writes once are kept here (a logged model's files, a run's
# artifact by run id), under a name derived from the tracking server and the artifact's full URI. A kept file
# is checked exactly like a downloaded one: the cache saves the transfer, never a check.
ARTIFACT_CACHE_FILES = 256


def artifact_cache_dir(settings: Settings) -> Path:
    return cache_dir(settings, "mlflow-artifacts")


def _fetch(uri: str, settings: Settings) -> Path:
    """A local copy of the write-once artifact at ``uri``: the kept one, or downloaded and kept (atomically:
    a task killed mid-download leaves no partial file under the final name)."""
    folder = artifact_cache_dir(settings)
    key = hashlib.sha256(f"{settings.mlflow_tracking_uri}\n{uri}".encode()).hexdigest()[:40]
    path = folder / f"{key}-{uri.rstrip('/').rsplit('/', 1)[-1]}"
    if path.is_file():
        os.utime(path)  # most recently used: pruned last
        return path
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fetch-") as tmp:
        os.replace(_download(uri, Path(tmp), settings), path)
    prune_oldest(folder, ARTIFACT_CACHE_FILES)
    return path


def _skops_file_name(mlmodel_text: str, label: str) -> str:
    """The skops file the ``MLmodel`` text names, after checking (never trusting) what it declares.

    Raises :class:`UnsafeModelError` unless the text is YAML (parsed with the safe loader) with a ``sklearn``
    flavor whose ``serialization_format`` is ``skops`` and whose ``pickled_model`` is a plain ``*.skops``
    file name in the model's folder. The ``skops_trusted_types`` and ``code`` it lists are ignored.
    """
    import yaml

    try:
        doc = yaml.safe_load(mlmodel_text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UnsafeModelError(
            f"refusing to load {label}: its MLmodel cannot be read with a safe YAML loader ({reason}). {_WHAT_TO_DO}"
        ) from exc
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    flavor = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict):
        found = sorted(map(str, flavors)) if isinstance(flavors, dict) else "none"
        raise UnsafeModelError(
            f"refusing to load {label}: its MLmodel has no sklearn flavor (flavors: {found}), so it is not a "
            f"scikit-learn model saved as skops. {_WHAT_TO_DO}"
        )
    # MLflow reads a missing serialization_format as pickle.
    fmt = flavor.get("serialization_format", "pickle")
    if fmt != SKOPS_FORMAT:
        raise UnsafeModelError(
            f"refusing to load {label}: its MLmodel declares serialization_format {fmt!r}; Loopline loads only "
            f"'{SKOPS_FORMAT}' (pickle and cloudpickle can run any code while loading). {_WHAT_TO_DO}"
        )
    name = flavor.get("pickled_model")
    if not isinstance(name, str) or not _SKOPS_FILE_NAME.fullmatch(name):
        raise UnsafeModelError(
            f"refusing to load {label}: its MLmodel claims serialization_format 'skops' but names the model file "
            f"{name!r}, which is not a plain '*.skops' file name in the model's folder. {_WHAT_TO_DO}"
        )
    return name


def _load_reviewed_skops(model_uri: str, settings: Settings) -> Any:
    """Download and check the model's ``MLmodel``, then its skops file, and load that with reviewed types only.

    1. ``MLmodel`` alone is downloaded and checked by :func:`_skops_file_name` (safe YAML, sklearn flavor,
       skops format, a plain ``*.skops`` file name);
    2. that one file is downloaded and ``skops.io.load`` is given :data:`REVIEWED_SKOPS_TYPES` as the only
       types to trust beyond skops' defaults: skops reads the whole tree and audits it before it constructs
       anything, and refuses the file if any other type is in it. Only then is
       ``skops.io.get_untrusted_types`` asked which types those are, for the message (one read of the tree
       for a good file: the separate listing pass cost as much as the load, ~0.15 s of every scoring task).
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    root, label, write_once = _artifact_root(model_uri, settings)
    with tempfile.TemporaryDirectory(prefix="loopline-model-") as tmp:

        def get(name: str, sub: str) -> Path:
            uri = f"{root}/{name}"
            return _fetch(uri, settings) if write_once else _download(uri, Path(tmp, sub), settings)

        mlmodel = get(_MLMODEL, "meta")
        size = mlmodel.stat().st_size
        if size > MAX_MLMODEL_BYTES:
            raise UnsafeModelError(
                f"refusing to load {label}: its MLmodel is {size} bytes (a real one is a few kB). {_WHAT_TO_DO}"
            )
        name = _skops_file_name(mlmodel.read_text(errors="replace"), label)
        path = get(name, "model")
        try:
            model = sio.load(path, trusted=sorted(REVIEWED_SKOPS_TYPES))
        except UntrustedTypesFoundException as exc:
            raise UnsafeModelError(
                f"refusing to load {label}: {name} holds types skops does not trust and nobody reviewed: "
                f"{_unreviewed(sio.get_untrusted_types(file=path))}. If this model is genuine, review those types "
                f"and add them to loopline.tracking.REVIEWED_SKOPS_TYPES. {_WHAT_TO_DO}"
            ) from exc
        except Exception as exc:  # a truncated, garbage or hostile file: skops cannot read or rebuild it
            raise UnsafeModelError(
                f"refusing to load {label}: {name} is not a readable skops file ({type(exc).__name__}: "
                f"{str(exc)[:200]}). {_WHAT_TO_DO}"
            ) from exc
    log.info("loaded %s from %s (skops; trusted beyond skops' defaults: only the reviewed types)", label, name)
    return model


def clear_model_cache() -> None:
    """Forget the models :func:`load_model` cached in this process."""
    with _model_cache_lock:
        _model_cache.clear()


def resolve_alias(settings: Settings, alias: str = CHAMPION, name: str | None = None) -> str | None:
    """Version number the alias points at, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client(settings).get_model_version_by_alias(name or settings.model_name, alias)
    except MlflowException:
        return None
    return str(mv.version)


def reference_profile(result: TrainResult) -> ReferenceProfile:
    """The drift reference of a training run: features on the training days, the score on held-out days."""
    import pandas as pd

    from loopline.drift import ReferenceProfile

    columns, kinds = _inputs_of(result)
    features = ReferenceProfile.fit(
        result.reference, columns, feature_kinds=kinds, validation_metrics=result.metrics,
    )
    scores = ReferenceProfile.fit(pd.DataFrame({"score": result.validation_scores}), ["score"],
                                  feature_kinds={"score": "numeric"})
    features.features["score"] = scores.features["score"]
    return features


def _inputs_of(result: TrainResult) -> tuple[list[str], dict[str, str]]:
    """The model's input columns and their kinds."""
    return list(result.columns), {c: ("categorical" if c in result.categorical else "numeric") for c in result.columns}


def load_reference_profile(settings: Settings, version: str, name: str | None = None) -> ReferenceProfile:
    """The drift reference profile logged with a model version."""
    from loopline.drift import ReferenceProfile

    point(settings)
    mv = client(settings).get_model_version(name or settings.model_name, version)
    text = _fetch(f"runs:/{mv.run_id}/{REFERENCE_PROFILE_ARTIFACT}", settings).read_text(encoding="utf-8")
    return ReferenceProfile.from_json(text)
