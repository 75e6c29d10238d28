"""Command line flags generated from the objectives' ``Options`` dataclasses.

Every registered objective's options become a section of ``quadd distill --help``, one
flag per field that names one (see ``quadd_train.objectives``); ``--opt KEY=VALUE``
reaches every field of the ``--method``'s options. A flag of another objective than the
one ``--method`` names is a usage error that names both.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

import click
from click.core import ParameterSource

__all__ = ["ObjectiveCommand", "RegistryChoice", "ObjectiveOption",
           "collect_objective_options", "objective_flag_options"]

OPT_HELP = ("An option of the --method's objective, as KEY=VALUE (repeatable): any field "
            "of its options, those without a flag of their own included (named in its "
            "section below). The value is read as the option's type (none: unset).")


class ObjectiveOption(click.Option):
    """A flag that sets one option of one objective."""

    def __init__(self, decls: list[str], *, objective: str, field_name: str,
                 negates: bool = False, **kwargs: Any) -> None:
        super().__init__(decls, **kwargs)
        self.objective = objective
        self.field_name = field_name
        self.negates = negates  # a flag that turns a default-true option off (--no-dsa)


class RegistryChoice(click.Choice):
    """The names a plug point's registry knows when the command runs (entry points and
    parts registered after the command was built included): ``--method``, ``--quantizer``.
    ``names`` is ``"module:function"``, imported on use."""

    def __init__(self, names: str) -> None:
        super().__init__([])
        self._names = names

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        import importlib

        module, attr = self._names.split(":")
        return tuple(getattr(importlib.import_module(module), attr)())

    @choices.setter
    def choices(self, value: Any) -> None:
        pass


class ObjectiveCommand(click.Command):
    """A command that takes every registered objective's flags (built when it runs, so
    plugins count) and lists each objective's in a ``--help`` section of its own."""

    _flags: list[click.Option] = []
    _flags_for: tuple[str, ...] | None = None

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        from quadd_train.objectives import objective_names

        names = tuple(objective_names())
        if self._flags_for != names:
            self._flags, self._flags_for = objective_flag_options(names), names
        params = super().get_params(ctx)
        help_option = self.get_help_option(ctx)
        at = len(params) - 1 if help_option is not None and params[-1] is help_option else None
        return [*params[:at], *self._flags, *params[at:]] if at is not None else [
            *params, *self._flags]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from quadd_train.objectives import option_fields, options_class

        sections: dict[str, list[tuple[str, str]]] = {"": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            key = param.objective if isinstance(param, ObjectiveOption) else ""
            sections.setdefault(key, []).append(record)
        for key, records in sections.items():
            if key:
                # Options without a flag of their own are reached through --opt only.
                cls = options_class(key)
                records += [_opt_record(cls, f) for f in option_fields(cls)
                            if f.metadata.get("flag", "") is None]
            title = "Options" if not key else f"Options of --method {key}"
            with formatter.section(title):
                formatter.write_dl(records)


def _opt_record(options_cls: type, f: dataclasses.Field[Any]) -> tuple[str, str]:
    """The help row of an option reached through ``--opt`` only: its key, type, help and
    default."""
    kind = _base_type(options_cls, f.name)
    default = f.default if f.default is not dataclasses.MISSING else None
    text = f.metadata.get("help") or ""
    shown = "none" if default is None else default
    return (f"--opt {f.name}={getattr(kind, '__name__', 'VALUE').upper()}",
            f"{text}  [default: {shown}]".strip())


def _base_type(options_cls: type, name: str) -> type:
    hint = typing.get_type_hints(options_cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _flag_option(objective: str, options_cls: type, f: dataclasses.Field[Any]
                 ) -> ObjectiveOption | None:
    meta = f.metadata
    flag = meta.get("flag", f"--{objective}-{f.name.replace('_', '-')}")
    if flag is None:
        return None
    kind = _base_type(options_cls, f.name)
    default = f.default if f.default is not dataclasses.MISSING else None
    decls = [flag, f"{objective.replace('-', '_')}__{f.name}"]
    common: dict[str, Any] = {"objective": objective, "field_name": f.name,
                              "help": meta.get("help")}
    if kind is bool:
        return ObjectiveOption(decls, is_flag=True, default=False, negates=bool(default),
                               **common)
    if "choices" in meta:
        ptype: Any = click.Choice(list(meta["choices"]))
    elif kind is int:
        ptype = click.IntRange(min=meta["min"]) if "min" in meta else int
    elif kind is float:
        ptype = click.FloatRange(min=meta["min"]) if "min" in meta else float
    else:
        ptype = kind
    show = meta.get("show_default", default is not None)
    return ObjectiveOption(decls, type=ptype, default=default, show_default=show, **common)


def objective_flag_options(names: Iterable[str]) -> list[click.Option]:
    """The flags of the named objectives' options, then ``--opt``."""
    from quadd_train.objectives import option_fields, options_class

    params: list[click.Option] = []
    for name in names:
        try:
            cls = options_class(name)
        except ValueError:
            continue  # a plugin that fails to load is named when --method asks for it
        for f in option_fields(cls):
            option = _flag_option(name, cls, f)
            if option is not None:
                params.append(option)
    params.append(click.Option(["--opt", "opt_items"], multiple=True, metavar="KEY=VALUE",
                               help=OPT_HELP))
    return params


def collect_objective_options(ctx: click.Context, method: str, values: dict[str, Any]
                              ) -> dict[str, Any]:
    """The options of objective ``method`` given on the command line: its flags and
    ``--opt`` items; a flag of another objective is a usage error."""
    from quadd_train.objectives import options_class, parse_option_text

    chosen: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for param in ctx.command.get_params(ctx):
        if not isinstance(param, ObjectiveOption) or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) in (None, ParameterSource.DEFAULT):
            continue
        value = values.get(param.name)
        if param.is_flag and not value:
            continue
        flag = param.opts[0]
        if param.objective != method:
            raise click.UsageError(f"{flag} is an option of --method {param.objective}, "
                                   f"not of --method {method}", ctx)
        chosen[param.field_name] = (not param.negates if param.is_flag else value)
        flags[param.field_name] = flag
    try:
        cls = options_class(method)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from exc
    for text in values.get("opt_items") or ():
        try:
            key, value = parse_option_text(cls, text)
        except ValueError as exc:
            raise click.UsageError(f"--opt {text}: {exc} (options of --method {method})",
                                   ctx) from exc
        if key in flags:
            raise click.UsageError(f"--opt {text} repeats {flags[key]}", ctx)
        chosen[key] = value
    # The objective checks its values when built: a bad --opt value is a usage error, as
    # the same value given to the option's own flag is.
    from quadd_train.objectives import make_objective

    try:
        make_objective(method, chosen)
    except ValueError as exc:
        raise click.UsageError(f"{exc} (options of --method {method})", ctx) from exc
    return chosen
