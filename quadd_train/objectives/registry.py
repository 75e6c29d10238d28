"""The objective registry: names to :class:`~quadd_train.objectives.Objective` classes.

Filled by ``@register_objective`` when an objective's module is imported: the built-in
modules are imported the first time a name is asked for, and a third-party package's
through its entry point in the ``quadd.objectives`` group.

>>> from quadd_train.objectives import get_objective, objective_names
>>> "dm" in objective_names()
True
>>> get_objective("dm").name
'dm'
>>> get_objective("no-such")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: unknown method 'no-such'; available: [...'dm'...]
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from . import Objective

__all__ = ["ENTRY_POINT_GROUP", "get_objective", "make_objective", "objective_names",
           "options_class", "register_objective"]

ENTRY_POINT_GROUP = "quadd.objectives"

# Modules whose import registers the built-in objectives, and their options classes
# (importable without torch, for the command line).
_BUILTIN_MODULES = {"dm": "quadd_train.objectives.dm.objective"}
_BUILTIN_OPTIONS = {"dm": ("quadd_train.objectives.dm.options", "DMOptions")}

_REGISTRY: dict[str, type[Objective]] = {}

T = TypeVar("T", bound="type[Objective]")


def register_objective(name: str) -> Callable[[T], T]:
    """Class decorator: register an objective under ``name`` (also set as its ``name``)."""

    def decorate(cls: T) -> T:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def objective_names() -> list[str]:
    """Every objective name: built in, registered, and offered by entry points."""
    return sorted(set(_BUILTIN_MODULES) | set(_REGISTRY) | set(_entry_points()))


def get_objective(name: str) -> type[Objective]:
    """The objective class registered as ``name``, importing its module on first use."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
        return _REGISTRY[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise ValueError(f"unknown method {name!r}; available: {objective_names()}")
    try:
        cls = ep.load()
    except Exception as exc:  # noqa: BLE001 - whatever the plugin's import raises
        raise ValueError(f"objective plugin {name!r} ({ep.value}) failed to load: "
                         f"{type(exc).__name__}: {exc}") from exc
    from . import Objective

    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise ValueError(f"objective plugin {name!r} ({ep.value}) is not an Objective "
                         "subclass")
    # A plugin may register itself under its name on import; if not, its entry point does.
    _REGISTRY.setdefault(name, cls)
    if getattr(cls, "name", None) != name:
        cls.name = name
    return _REGISTRY[name]


def options_class(name: str) -> type:
    """The ``Options`` dataclass of objective ``name`` (for a built-in one, without
    importing the objective itself)."""
    if name in _BUILTIN_OPTIONS and name not in _REGISTRY:
        module, attr = _BUILTIN_OPTIONS[name]
        return getattr(importlib.import_module(module), attr)
    return get_objective(name).Options


def make_objective(name: str, options: Mapping[str, Any] | None = None,
                   **kwargs: Any) -> Objective:
    """Build objective ``name`` with ``options`` (a mapping) and/or keyword options."""
    return get_objective(name)(**{**(options or {}), **kwargs})
