"""Name -> implementation tables for the trainer's plug points.

A :class:`Registry` is filled two ways: by its decorator, which the built-in implementations
use, and by entry points of an installed distribution (group ``quadd.objectives``,
``quadd.quantizers`` or ``quadd.parameterizations``), so a third-party package adds an
implementation without touching this one::

    [project.entry-points."quadd.quantizers"]
    mine = "my_package.quant:MyQuantizer"

A registry may also know built-in names before their modules are imported (``builtins``:
name -> module whose import registers it), so listing the names, for a command line's
choices, imports nothing heavy.

Entry points are read when a name is not a registered one, and loaded only when that name
is asked for: a plugin that fails to import stops only the runs that use it, with a
:class:`PluginError` that names it. A registered name wins over an entry point of the same
name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint
from typing import Any, Generic, TypeVar

__all__ = ["PluginError", "Registry", "check_options"]

T = TypeVar("T")


class PluginError(ValueError):
    """An entry point named an implementation that could not be loaded or is not one."""


class Registry(Generic[T]):
    """Implementations of one plug point by name, in the order they were registered.

    ``kind`` names the plug point in messages ("quantizer"); ``group`` is the entry point
    group; ``base`` is the class every implementation subclasses.
    """

    def __init__(self, kind: str, group: str, base: type,
                 builtins: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self._builtins = dict(builtins or {})
        self._table: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: file the decorated implementation under ``name``."""

        def add(obj: T) -> T:
            if name in self._table and self._table[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered "
                                 f"({_qualname(self._table[name])})")
            problem = self._problem(obj)
            if problem:
                raise TypeError(f"cannot register {self.kind} {name!r}: {problem}")
            self._table[name] = obj
            return obj

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a no-op when it is not registered)."""
        self._table.pop(name, None)

    def registered(self) -> tuple[str, ...]:
        """The names registered so far, in registration order (no entry point is read)."""
        return tuple(self._table)

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order, then the entry points' other names."""
        known = (*self._builtins, *(n for n in self._table if n not in self._builtins))
        extra = sorted({ep.name for ep in self._entry_points()} - set(known))
        return (*known, *extra)

    def get(self, name: str) -> T:
        """The implementation filed under ``name``, loading its entry point on first use."""
        if name in self._table:
            return self._table[name]
        if name in self._builtins:
            importlib.import_module(self._builtins[name])
            return self._table[name]
        found = [ep for ep in self._entry_points() if ep.name == name]
        if not found:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of "
                             f"{', '.join(sorted(self.names()))}")
        ep = found[0]
        where = f"entry point {ep.name} = {ep.value} (group {self.group}{_dist(ep)})"
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(f"{self.kind} {name!r}: {where} failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
        problem = self._problem(obj)
        if problem:
            raise PluginError(f"{self.kind} {name!r}: {where} is not {_a(self.kind)}: {problem}")
        # The plugin's module may have registered it already with the decorator.
        self._table.setdefault(name, obj)
        return self._table[name]

    def _problem(self, obj: Any) -> str | None:
        """Why ``obj`` is not an implementation (None when it is one)."""
        if inspect.isclass(obj) and issubclass(obj, self.base):
            return None
        return f"{obj!r} is not a subclass of {_qualname(self.base)}"

    def _entry_points(self) -> Iterable[EntryPoint]:
        return importlib.metadata.entry_points(group=self.group)


def check_options(kind: str, name: str, fn: Callable[..., Any], options: dict[str, Any],
                  skip: int = 0) -> None:
    """Refuse keyword ``options`` that ``fn`` does not take, naming the ones it does.

    ``skip``: leading positional parameters that are not options (the sizes every
    implementation of the plug point receives).
    """
    params = list(inspect.signature(fn).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        takes = ", ".join(known) if known else "none"
        raise ValueError(f"{kind} {name!r} does not take option(s) {', '.join(unknown)}; "
                         f"its options: {takes}")


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _dist(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f", distribution {dist.name} {dist.version}" if dist is not None else ""
