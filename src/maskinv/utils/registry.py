"""One registry style for every pluggable name: backbones, heads, detectors, recognisers, benchmark
loaders, precision modes (and the mask kinds of :mod:`maskinv.masks`).

A :class:`Registry` maps canonical lower-case names (plus aliases) to entries; ``names()`` is what
CLI choices and help texts are built from, so a registered entry is reachable from the command
line without editing the CLI. Third-party packages register through an entry-point group
(``[project.entry-points."maskinv.recognizers"]`` etc.): each entry point names a callable that is
called once with the registry, the first time the registry is read.
"""
from __future__ import annotations

import difflib
import threading
from typing import Any, Callable, Generic, Iterator, TypeVar

from maskinv.errors import ConfigError, UnknownNameError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` names it in errors: "unknown detector 'x'").

    ``entry_points``: an entry-point group whose callables ``fn(registry)`` register third-party
    entries (loaded lazily, once; a broken plug-in raises :class:`ConfigError` naming it).
    """

    def __init__(self, kind: str, *, entry_points: str | None = None):
        self.kind = kind
        self.group = entry_points
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = entry_points is None
        self._lock = threading.RLock()

    @staticmethod
    def _key(name: str) -> str:
        return str(name).strip().lower()

    def register(self, name: str, entry: T | None = None, *, aliases: tuple[str, ...] = (),
                 replace: bool = False) -> Any:
        """Register ``entry`` as ``name`` (and ``aliases``); without ``entry``, a decorator.

        Registering a taken name raises :class:`ConfigError` unless ``replace=True``."""
        if entry is None:
            def deco(obj: T) -> T:
                self.register(name, obj, aliases=aliases, replace=replace)
                return obj
            return deco
        key = self._key(name)
        if not key:
            raise ConfigError(f"{self.kind} registry: empty name")
        with self._lock:
            if not replace and (key in self._entries or key in self._aliases):
                raise ConfigError(f"{self.kind} {name!r} is already registered (pass replace=True to override)")
            self._aliases.pop(key, None)
            self._entries[key] = entry
            for a in aliases:
                self._aliases[self._key(a)] = key
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases (tests, plug-in reloads)."""
        key = self.canonical(name)
        with self._lock:
            self._entries.pop(key, None)
            for a in [a for a, k in self._aliases.items() if k == key]:
                del self._aliases[a]

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        with self._lock:
            if self._plugins_loaded:
                return
            self._plugins_loaded = True
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.group):
                try:
                    ep.load()(self)
                except Exception as exc:  # a plug-in's own error: name the plug-in, keep the cause
                    raise ConfigError(f"{self.kind} plug-in {ep.name!r} ({ep.value}) failed to register: {exc}") from exc

    def canonical(self, name: str) -> str:
        """The canonical name of ``name`` or an alias; :class:`UnknownNameError` (with a
        suggestion when one name is close) otherwise."""
        self._load_plugins()
        key = self._key(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            close = self.suggest(key)
            hint = f" (did you mean {close!r}?)" if close else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; known: {', '.join(self.names())}")
        return key

    def suggest(self, name: str) -> str | None:
        """The registered name closest to a misspelt ``name`` (``"dilb"`` -> ``"dlib"``), if any."""
        self._load_plugins()
        close = difflib.get_close_matches(self._key(name), list(self._entries) + list(self._aliases), n=1, cutoff=0.6)
        return self._aliases.get(close[0], close[0]) if close else None

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        """Canonical names in registration order (what CLI choices list)."""
        self._load_plugins()
        return list(self._entries)

    def aliases(self) -> dict[str, str]:
        self._load_plugins()
        return dict(self._aliases)

    def move_to_front(self, name: str) -> None:
        """Make ``name`` the first entry (registries read in order, e.g. benchmark loaders)."""
        key = self.canonical(name)
        with self._lock:
            self._entries = {key: self._entries[key], **{k: v for k, v in self._entries.items() if k != key}}

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        key = self._key(str(name))
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, T]]:
        self._load_plugins()
        return list(self._entries.items())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def choices_help(registry: Registry[Any], default: str | None = None) -> str:
    """``"mtcnn, dlib (default: mtcnn)"`` for a CLI help text built from the registry."""
    names = ", ".join(registry.names())
    return f"{names} (default: {default})" if default else names


Factory = Callable[..., Any]
