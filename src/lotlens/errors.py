"""Domain errors of lotlens, in one tree.

    LotlensError
     +-- FetchError         an image that could not be downloaded (reason code)
     +-- ImageDecodeError   bytes that are not a usable image (reason code)
     +-- ManifestError      a dataset manifest that cannot be read
     +-- ModelError         a model folder that is missing, incomplete or incompatible
     +-- NotFound           an image, model, review item or job that does not exist
     +-- Conflict           the request contradicts the state (nothing to roll back, a reused key)
     +-- InvalidInput       a value the domain refuses (an unknown label, a fix without a field)
     +-- PermissionDenied   the caller may not see or change this
     +-- ConfigError        a `LOTLENS_*` setting that is malformed, out of range or unusable
     +-- StorageError       the storage root (a folder or S3) refused a read or a write

Only the edges (CLI, API, pages) turn these into exit codes or HTTP statuses, each in one table.
"""

from __future__ import annotations


class LotlensError(Exception):
    """Base of every error lotlens raises on purpose."""


class ReasonError(LotlensError):
    """An error whose `reason` is a short machine-readable code, shown to callers as is."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class FetchError(ReasonError):
    """A download failed; `reason` is a code such as `timeout`, `http_404`, `too_large`."""


class ImageDecodeError(ReasonError):
    """The bytes could not be decoded into a usable image.

    `reason` is a short machine-readable code: `empty`, `not_an_image`, `truncated`,
    `too_many_pixels`, `unsupported_mode`, `corrupt`.
    """


class ManifestError(LotlensError):
    """A manifest CSV is missing columns, has bad labels or names missing files."""


class ModelError(LotlensError):
    """A model folder is missing, incomplete, or was written for other label sets."""


class NotFound(LotlensError, KeyError):
    """Something named by the caller does not exist; `code` says what (`unknown_image`, ...).

    Also a `KeyError`, for callers written before the domain errors; edges catch `NotFound`.
    """

    def __init__(self, message: str, code: str = "not_found") -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Conflict(LotlensError):
    """The request cannot apply to the current state."""

    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(message)
        self.code = code


class InvalidInput(LotlensError, ValueError):
    """A value the domain refuses. A `ValueError` too, so older callers keep working."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


class PermissionDenied(LotlensError):
    """The caller's role or advertiser does not allow this."""

    def __init__(self, message: str, code: str = "forbidden") -> None:
        super().__init__(message)
        self.code = code


class ConfigError(LotlensError):
    """One or more settings are wrong. The message names each `LOTLENS_*` variable and the rule it
    breaks, never the value, since values may be keys or passwords."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{variable}: {rule}" for variable, rule in problems))


class StorageError(LotlensError):
    """The storage root (`LOTLENS_STORAGE_URL`) could not be read or written: a missing bucket,
    refused credentials, an unreachable endpoint, a full disk. The message names the setting and the
    path, never a credential."""
