"""Exceptions of the Loopline Airflow layer; each message says what failed, what to do and where to look."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class LooplineValidationError(AirflowFailException):
    """Data failed its Great Expectations suite. A retry cannot fix the data, so the task fails at once.

    ``summary`` is the validation summary (what the task would have returned as XCom).
    """

    def __init__(self, message: str, summary: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.summary = summary or {}


class LooplineConfigurationError(AirflowFailException):
    """An argument, suite, model name or version cannot be used; the message says what to change."""


class LooplineRegistryUnavailable(AirflowException):
    """The MLflow server did not answer after the retries; the task's own retries may succeed later."""


class LooplineUnsafeModelError(AirflowFailException):
    """A model version is not a skops file of Loopline's reviewed types, so it was refused unexecuted
    (:class:`loopline.tracking.UnsafeModelError`). A retry cannot fix it: the message says which version and what
    to do."""
