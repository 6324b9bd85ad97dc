"""Domain errors of lotlens, in one tree.

    LotlensError
     +-- FetchError         an image that could not be downloaded (reason code)
     +-- ImageDecodeError   bytes that are not a usable image (reason code)
     +-- ManifestError      a dataset manifest that cannot be read
     +-- ModelError         a model folder that is missing, incomplete or incompatible
     +-- ConfigError        a `LOTLENS_*` setting that is malformed, out of range or unusable

Only the edges (CLI, later the API) turn these into exit codes or HTTP statuses.
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


class ConfigError(LotlensError):
    """One or more settings are wrong. The message names each `LOTLENS_*` variable and the rule it
    breaks, never the value, since values may be keys or passwords."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{variable}: {rule}" for variable, rule in problems))
