"""Typed exceptions. The CLI turns any :class:`MaskinvError` into one line and exit code 2."""
from __future__ import annotations


class MaskinvError(Exception):
    """Base class of every error maskinv raises for bad input or state."""


class ConfigError(MaskinvError, ValueError):
    """A run configuration is invalid (unknown key, wrong type, bad value).

    ``key``: the dotted config key at fault (``optim.lr``) when one is, else None; callers that
    translate a key back into their own setting read it here, never from the message text."""

    def __init__(self, *args: object, key: str | None = None) -> None:
        super().__init__(*args)
        self.key = key


class CheckpointError(MaskinvError):
    """A checkpoint is missing, unreadable, or does not match the architecture."""


class UnknownNameError(MaskinvError, KeyError):
    """A registry lookup (backbone, head, mask kind, ...) failed."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DataFormatError(MaskinvError):
    """A data file (RecordIO, .bin, image, CSV) is malformed; the message names file/record/offset."""


class UnsafePickleError(DataFormatError):
    """A pickle asked for a type outside the allowed set; nothing was executed."""


class NoFaceError(MaskinvError):
    """No face was detected in an image where one was required."""


class ModelMismatchError(MaskinvError):
    """Templates or thresholds from a different model were mixed with this one."""
