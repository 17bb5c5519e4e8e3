"""An in-memory stand-in for the registry half of ``MlflowClient`` (unit tests: crashes at any write)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE


class Crash(RuntimeError):
    """Raised by :class:`FakeMlflowClient` to simulate a worker killed before a write."""


@dataclass
class _Version:
    version: str
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str = "run"
    source: str = "models:/m-x"


@dataclass
class _Model:
    name: str
    aliases: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    versions: dict[str, _Version] = field(default_factory=dict)


class FakeMlflowClient:
    """Registry calls on dicts. ``crash_at_write=n`` raises :class:`Crash` instead of the n-th write (1-based);
    ``unavailable_for=n`` answers the next n calls with a 503-like ``MlflowException``."""

    tracking_uri = "fake://registry"

    def __init__(self) -> None:
        self.models: dict[str, _Model] = {}
        self.writes = 0
        self.crash_at_write: int | None = None
        self.unavailable_for = 0
        self.calls = 0

    # helpers for tests
    def add_version(self, name: str, tags: dict[str, str] | None = None) -> str:
        model = self.models.setdefault(name, _Model(name))
        v = str(len(model.versions) + 1)
        model.versions[v] = _Version(v, dict(tags or {}))
        return v

    def state(self) -> dict[str, Any]:
        return copy.deepcopy({n: (m.aliases, m.tags, {v: x.tags for v, x in m.versions.items()})
                              for n, m in self.models.items()})

    # the client API
    def _tick(self) -> None:
        self.calls += 1
        if self.unavailable_for > 0:
            self.unavailable_for -= 1
            raise MlflowException("503 Service Unavailable", error_code=TEMPORARILY_UNAVAILABLE)

    def _write(self) -> None:
        self._tick()
        self.writes += 1
        if self.crash_at_write is not None and self.writes == self.crash_at_write:
            raise Crash(f"killed before write #{self.writes}")

    def _model(self, name: str) -> _Model:
        if name not in self.models:
            raise MlflowException(f"Registered Model with name={name} not found",
                                  error_code=RESOURCE_DOES_NOT_EXIST)
        return self.models[name]

    def _version(self, name: str, version: str) -> _Version:
        model = self._model(name)
        if str(version) not in model.versions:
            raise MlflowException(f"Model Version (name={name}, version={version}) not found",
                                  error_code=RESOURCE_DOES_NOT_EXIST)
        return model.versions[str(version)]

    def get_registered_model(self, name: str) -> Any:
        self._tick()
        return copy.deepcopy(self._model(name))

    def get_model_version(self, name: str, version: str) -> Any:
        self._tick()
        mv = copy.deepcopy(self._version(name, version))
        mv.aliases = [a for a, v in self._model(name).aliases.items() if v == mv.version]  # type: ignore[attr-defined]
        return mv

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._version(name, version)
        self._write()
        self._version(name, version).tags[key] = str(value)

    def delete_model_version_tag(self, name: str, version: str, key: str) -> None:
        self._write()
        self._version(name, version).tags.pop(key, None)

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self._model(name)
        self._write()
        self._model(name).tags[key] = str(value)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._version(name, version)
        self._write()
        self._model(name).aliases[alias] = str(version)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._model(name)
        self._write()
        self._model(name).aliases.pop(alias, None)
