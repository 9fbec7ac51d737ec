"""The service's error: an HTTP status, a machine-readable code and a message naming the field."""
from __future__ import annotations

from ..errors import MaskinvError

__all__ = ["ServeError"]


class ServeError(MaskinvError):
    """A request the service refuses: answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message
        self.headers = headers or {}
