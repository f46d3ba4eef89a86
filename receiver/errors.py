"""The one exception root of alertmail and its leaves.

Leaves carry the data a caller needs to act on (and to print one clear message);
causes are chained with ``raise ... from``.
"""

from __future__ import annotations


class AlertmailError(Exception):
    """Root of every error alertmail raises on purpose."""


class ConfigError(AlertmailError):
    """A config file (or template) is unusable: which file, which key, what is wrong."""

    def __init__(self, file: str, key_path: str, problem: str) -> None:
        self.file = file
        self.key_path = key_path
        self.problem = problem
        where = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{where}: {problem}")


class PayloadError(AlertmailError):
    """A webhook body is not an Alertmanager v4 notification."""


class StoreError(AlertmailError):
    """The store cannot read or write (the webhook answers 503 so Alertmanager retries)."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer alertmail; refusing to touch it."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"{path}: schema version {found} is newer than this alertmail supports "
            f"({supported}); upgrade alertmail or point storage.path elsewhere"
        )


class TemplateError(AlertmailError):
    """A template failed to load or render."""


class DeliveryError(AlertmailError):
    """A message could not be delivered on a channel."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(message)
