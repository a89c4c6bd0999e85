"""The one error family: every failure a user can cause says what went wrong and how to fix it.

Raise these at the edge where bad input enters. The CLI prints ``message`` and ``hint`` without a
traceback (``--debug`` shows it); the HTTP API maps ``status`` onto its error shape.
"""

from __future__ import annotations


class HearthError(Exception):
    """A failure with a plain-language message and a hint that names the fix."""

    status: int = 400  # the HTTP status the API answers with
    code: str = "hearth_error"  # a stable machine-readable name

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(HearthError):
    """A config file, override or environment variable that cannot be used."""

    code = "invalid_config"


class ModelError(HearthError):
    """A model that cannot be found, read or loaded."""

    code = "model_error"


class ModelNotFound(ModelError):
    status = 404
    code = "model_not_found"


class GenerationError(HearthError):
    """Bad sampling parameters or a generation that cannot proceed."""

    code = "invalid_request"


class BackendError(HearthError):
    """A backend (remote server, llama.cpp) that failed or is not installed."""

    status = 502
    code = "backend_error"


class TrainError(HearthError):
    """A training or fine-tuning run that cannot start or cannot go on."""

    code = "train_error"


class DataError(HearthError):
    """A dataset or corpus that is missing, empty or malformed."""

    code = "data_error"


class KBError(HearthError):
    """A knowledge-base operation that cannot be done."""

    code = "kb_error"


class NotFound(HearthError):
    """A named thing (run, collection, document, job) that does not exist."""

    status = 404
    code = "not_found"
