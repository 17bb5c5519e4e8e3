"""Hostile model artifacts for the load-safety tests: each one runs code (touches a marker file) if it is ever
deserialized by a loader that trusts the artifact, and each is registered as an ordinary model version.

``hostile_variants(marker, genuine)`` returns the class of the gap, not one example: pickle and cloudpickle
artifacts, an ``MLmodel`` without a sklearn flavor or without a format, a "skops" claim pointing at a pickle
file, path traversal in ``pickled_model``, a YAML tag that runs code under ``yaml.load``, pickle bytes named
``.skops``, garbage and truncated skops files, and skops files holding types outside the reviewed list (one
listing them in its own ``skops_trusted_types``).
"""

from __future__ import annotations

import pathlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TouchOnUnpickle:
    """Unpickling it creates ``marker``: the stand-in for arbitrary code in a pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return pathlib.Path.touch, (self.marker,)


class TouchOnSkopsLoad:
    """A custom class skops does not trust: building it from a skops file (``__setstate__``) creates the marker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        Path(state["marker"]).touch()

    def fit(self, X: Any, y: Any = None) -> TouchOnSkopsLoad:
        return self

    def transform(self, X: Any) -> Any:
        return X


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(TouchOnUnpickle(marker))


def skops_with_custom_class(marker: Path, genuine_model: Any) -> bytes:
    """A pipeline that predicts like the genuine model, with a marker-touching custom step in front."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    return sio.dumps(Pipeline([("touch", TouchOnSkopsLoad(str(marker))), ("model", genuine_model)]))


def skops_with_os_system() -> bytes:
    """A scikit-learn type holding a function outside the reviewed list (``posix.system``)."""
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    return sio.dumps(FunctionTransformer(func=os.system))


def sklearn_mlmodel(serialization_format: str | None, pickled_model: str, **extra: Any) -> str:
    flavor: dict[str, Any] = {"pickled_model": pickled_model, "sklearn_version": "1.9.1", "code": None, **extra}
    if serialization_format is not None:
        flavor["serialization_format"] = serialization_format
    return yaml.safe_dump({
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": pickled_model,
                                "env": {"virtualenv": "python_env.yaml"}, "python_version": "3.11"},
            "sklearn": flavor,
        },
        "mlflow_version": "3.17.2",
    })


@dataclass(frozen=True)
class Variant:
    """A model folder (``MLmodel`` text + files) and what the refusal must say about it."""

    mlmodel: str
    files: dict[str, bytes]
    says: tuple[str, ...]
    extra_dirs: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "MLmodel").write_text(self.mlmodel)
        for name, data in self.files.items():
            (folder / name).write_bytes(data)
        return folder


def hostile_variants(marker: Path, genuine_model: Any) -> dict[str, Variant]:
    """Every way an artifact may try to get code run by the loader; each touches ``marker`` if it succeeds."""
    import skops.io as sio

    evil = pickle_payload(marker)
    genuine = sio.dumps(genuine_model)
    custom = skops_with_custom_class(marker, genuine_model)
    custom_type = "tests.support.hostile_models.TouchOnSkopsLoad"
    pyfunc_only = yaml.safe_dump({"flavors": {"python_function": {
        "loader_module": "mlflow.pyfunc.model", "cloudpickle_version": "3.1.1",
        "python_model": "python_model.pkl", "env": {"virtualenv": "python_env.yaml"}}}})
    return {
        "pickle": Variant(sklearn_mlmodel("pickle", "model.pkl"), {"model.pkl": evil},
                          ("serialization_format 'pickle'",)),
        "cloudpickle": Variant(sklearn_mlmodel("cloudpickle", "model.pkl"), {"model.pkl": evil},
                               ("serialization_format 'cloudpickle'",)),
        "no_format": Variant(sklearn_mlmodel(None, "model.pkl"), {"model.pkl": evil},
                             ("serialization_format 'pickle'",)),
        "no_sklearn_flavor": Variant(pyfunc_only, {"python_model.pkl": evil},
                                     ("no sklearn flavor", "python_function")),
        "skops_claim_pkl_file": Variant(sklearn_mlmodel("skops", "model.pkl"), {"model.pkl": evil},
                                        ("'model.pkl'", "not a plain '*.skops' file name")),
        "path_traversal": Variant(sklearn_mlmodel("skops", "../x.skops"), {"model.skops": genuine},
                                  ("'../x.skops'", "not a plain '*.skops' file name")),
        "absolute_path": Variant(sklearn_mlmodel("skops", str(marker.parent / "x.skops")), {"model.skops": genuine},
                                 ("not a plain '*.skops' file name",)),
        "subfolder_traversal": Variant(sklearn_mlmodel("skops", "data/../../x.skops"), {"model.skops": genuine},
                                       ("not a plain '*.skops' file name",)),
        "yaml_python_tag": Variant(f"flavors: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n",
                                   {"model.skops": genuine}, ("safe YAML loader",)),
        "not_a_mapping": Variant("- just\n- a list\n", {"model.skops": genuine}, ("no sklearn flavor",)),
        "pickle_named_skops": Variant(sklearn_mlmodel("skops", "model.skops"), {"model.skops": evil},
                                      ("model.skops is not a readable skops file",)),
        "garbage_skops": Variant(sklearn_mlmodel("skops", "model.skops"), {"model.skops": b"\x00garbage" * 50},
                                 ("model.skops is not a readable skops file",)),
        "truncated_skops": Variant(sklearn_mlmodel("skops", "model.skops"),
                                   {"model.skops": genuine[: len(genuine) // 2]},
                                   ("model.skops is not a readable skops file",)),
        "skops_custom_class": Variant(sklearn_mlmodel("skops", "model.skops"), {"model.skops": custom},
                                      ("nobody reviewed", custom_type)),
        # The artifact's own allow-list is ignored: only Loopline's reviewed list counts.
        "skops_self_trusted": Variant(
            sklearn_mlmodel("skops", "model.skops", skops_trusted_types=sio.get_untrusted_types(data=custom)),
            {"model.skops": custom}, ("nobody reviewed", custom_type)),
        "skops_os_system": Variant(sklearn_mlmodel("skops", "model.skops"), {"model.skops": skops_with_os_system()},
                                   ("nobody reviewed", "posix.system")),
    }


def register_folder(client: Any, name: str, experiment_id: str, folder: Path) -> str:
    """Log ``folder`` as a run's ``model`` artifacts and register it as a new version of ``name``."""
    run = client.create_run(experiment_id, tags={"loopline.test": "hostile"})
    client.log_artifacts(run.info.run_id, str(folder), "model")
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(name)
    except Exception:  # already registered
        pass
    mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return str(mv.version)
