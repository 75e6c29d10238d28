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
ValueError: unknown objective 'no-such'; expected one of ...dm...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..registry import Registry
from .base import Objective

__all__ = ["ENTRY_POINT_GROUP", "OBJECTIVES", "get_objective", "make_objective",
           "objective_names", "options_class", "register_objective"]

ENTRY_POINT_GROUP = "quadd.objectives"

# The built-in objectives' options classes, importable without torch (for the command
# line's flags and help).
_BUILTIN_OPTIONS = {"dm": ("quadd_train.objectives.dm.options", "DMOptions"),
                    "gm": ("quadd_train.objectives.gm.options", "GMOptions")}

T = TypeVar("T", bound="type[Objective]")


OBJECTIVES: Registry[type[Objective]] = Registry(
    "objective", ENTRY_POINT_GROUP, Objective,
    builtins={"dm": "quadd_train.objectives.dm.objective",
              "gm": "quadd_train.objectives.gm.objective"})


def register_objective(name: str) -> Callable[[T], T]:
    """Class decorator: register an objective under ``name`` (also set as its ``name``)."""

    def decorate(cls: T) -> T:
        cls.name = name
        return OBJECTIVES.register(name)(cls)

    return decorate


def objective_names() -> list[str]:
    """Every objective name: built in, registered, and offered by entry points."""
    return list(OBJECTIVES.names())


def get_objective(name: str) -> type[Objective]:
    """The objective class registered as ``name``, importing its module on first use."""
    cls = OBJECTIVES.get(name)
    cls.name = name  # an entry point's class answers to the name it was installed under
    return cls


def options_class(name: str) -> type:
    """The ``Options`` dataclass of objective ``name`` (for a built-in one, without
    importing the objective itself)."""
    if name in _BUILTIN_OPTIONS and name not in OBJECTIVES.registered():
        module, attr = _BUILTIN_OPTIONS[name]
        return getattr(importlib.import_module(module), attr)
    return get_objective(name).Options


def make_objective(name: str, options: Mapping[str, Any] | None = None,
                   **kwargs: Any) -> Objective:
    """Build objective ``name`` with ``options`` (a mapping) and/or keyword options."""
    return get_objective(name)(**{**(options or {}), **kwargs})
