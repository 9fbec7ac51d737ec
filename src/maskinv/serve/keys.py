"""API keys: random tokens, stored only as SHA-256 hashes, each with scopes and a rate limit.

Scopes: ``verify`` (verify, identify), ``enrol`` (enrol, list, remove identities), ``admin``
(everything, and raw scores in answers). Keys are 32 random bytes (``secrets``): a plain SHA-256
is enough to store them (no dictionary to attack), and lookups compare hashes in constant time.

File (``--keys``)::

    {"format": "maskinv-api-keys", "format_version": 1,
     "keys": [{"name": "door-1", "sha256": "...", "scopes": ["verify"], "rate_per_minute": 120}]}
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataFormatError
from ..utils.io import atomic_write_json, read_json_file
from .errors import ServeError

__all__ = ["SCOPES", "ApiKey", "KeyStore", "add_key", "hash_key"]

SCOPES = ("verify", "enrol", "admin")
FORMAT = "maskinv-api-keys"
DEFAULT_RATE = 120


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class ApiKey:
    name: str
    sha256: str
    scopes: tuple[str, ...]
    rate_per_minute: float


def _check_scopes(scopes) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(str(s).strip() for s in scopes if str(s).strip()))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ConfigError(f"scopes must be some of {', '.join(SCOPES)}, got {list(scopes) or 'none'}")
    return scopes


def _read(path: Path) -> dict:
    data = read_json_file(path, "API keys file", DataFormatError)
    if data is None:
        return {"format": FORMAT, "format_version": 1, "keys": []}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("keys"), list):
        raise DataFormatError(f"{path}: not a maskinv API keys file")
    return data


def add_key(path: str | Path, name: str, scopes, rate_per_minute: float = DEFAULT_RATE) -> str:
    """Create a key, store its hash in ``path`` (created if missing) and return the key (shown once)."""
    p = Path(path)
    if not name or not isinstance(name, str):
        raise ConfigError("a key needs a name")
    if not rate_per_minute > 0:
        raise ConfigError(f"rate_per_minute must be > 0, got {rate_per_minute}")
    data = _read(p)
    if any(k.get("name") == name for k in data["keys"]):
        raise ConfigError(f"{p}: a key named {name!r} exists")
    key = "mk_" + secrets.token_urlsafe(32)
    data["keys"].append({"name": name, "sha256": hash_key(key), "scopes": list(_check_scopes(scopes)),
                         "rate_per_minute": float(rate_per_minute),
                         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    atomic_write_json(p, data)
    return key


class KeyStore:
    """Keys of a file, with a token bucket per key (``rate_per_minute``, burst of the same size)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        data = _read(self.path)
        if not self.path.is_file():
            raise DataFormatError(f"{self.path}: API keys file not found (create a key with "
                                  "`maskinv serve --keys FILE --add-key NAME --scopes verify`)")
        self.keys: dict[str, ApiKey] = {}
        for i, k in enumerate(data["keys"]):
            try:
                ak = ApiKey(str(k["name"]), str(k["sha256"]), _check_scopes(k["scopes"]), float(k.get("rate_per_minute", DEFAULT_RATE)))
            except (KeyError, TypeError, ConfigError) as exc:
                raise DataFormatError(f"{self.path}: key {i}: {exc}") from None
            self.keys[ak.sha256] = ak
        if not self.keys:
            raise DataFormatError(f"{self.path}: holds no keys")
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def authenticate(self, key: str | None, scope: str) -> ApiKey:
        if not key:
            raise ServeError(401, "missing_key", "no API key: send it in the X-API-Key header",
                             {"WWW-Authenticate": "X-API-Key"})
        h = hash_key(key)
        found = None
        for known, ak in self.keys.items():  # constant time per comparison; the set is small
            if hmac.compare_digest(known, h):
                found = ak
        if found is None:
            raise ServeError(401, "wrong_key", "the API key is not valid", {"WWW-Authenticate": "X-API-Key"})
        if scope not in found.scopes and "admin" not in found.scopes:
            raise ServeError(403, "out_of_scope", f"key {found.name!r} lacks the {scope!r} scope "
                             f"(it has: {', '.join(found.scopes)})")
        self._take(found)
        return found

    def _take(self, ak: ApiKey) -> None:
        now = time.monotonic()
        cap = max(1.0, ak.rate_per_minute)
        with self._lock:
            tokens, last = self._buckets.get(ak.sha256, [cap, now])
            tokens = min(cap, tokens + (now - last) * ak.rate_per_minute / 60.0)
            if tokens < 1.0:
                self._buckets[ak.sha256] = [tokens, now]
                wait = (1.0 - tokens) * 60.0 / ak.rate_per_minute
                raise ServeError(429, "rate_limited", f"key {ak.name!r} is over its {ak.rate_per_minute:g} "
                                 "requests per minute", {"Retry-After": str(max(1, int(wait + 0.999)))})
            self._buckets[ak.sha256] = [tokens - 1.0, now]
