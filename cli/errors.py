"""One way for every `quadd` command to fail: a single `quadd: error: ...` line, exit 1.

`QuaddGroup` (the class of the top-level `quadd` group) wraps every subcommand, so a
command only has to raise: expected failures (any `QddError`, `OSError`, `ValueError`,
which covers the training data loader's dataset-not-found error) become one line on
stderr and exit 1, with no traceback (QUADD_DEBUG=1 shows it); Ctrl-C exits 130.
Usage errors stay click's (exit 2).
Commands that want to fail explicitly call `fail(message)`.
A command that needs a package of an optional extra that is not installed says which
extra to install, in one line (`EXTRAS`).

Outputs are written through `quadd_codec.paths.atomic_open` (or
`quadd_codec.imagefolder.atomic_directory`) so a failure at any point leaves no partial
output behind.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import IO, Any, NoReturn

import click

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

#: Top-level module -> (what it is, the `quadd[...]` extra that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("PyTorch", "train"),
    "sklearn": ("scikit-learn", "train"),
    "quadd_train": ("PyTorch", "train"),
    "zarr": ("zarr", "zarr"),
    "numcodecs": ("zarr and numcodecs", "zarr"),
    "PIL": ("Pillow", "images"),
    "matplotlib": ("matplotlib", "train"),
}


class QuaddCliError(click.ClickException):
    """An expected failure: printed as `quadd: error: <message>`, exit status 1."""

    exit_code = EXIT_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"quadd: error: {self.format_message()}", err=True, file=file)


def fail(message: str) -> NoReturn:
    """Stop the command with one error line and exit status 1."""
    raise QuaddCliError(one_line(message))


def one_line(message: str) -> str:
    return " ".join(str(message).split()) or "unknown error"


def describe(exc: BaseException) -> str:
    """A one-line, user-facing description of an expected exception."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        extra = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return one_line(f"{where}{extra}: {exc.strerror}" if where else exc.strerror)
    if isinstance(exc, MemoryError):
        return "out of memory"
    return one_line(str(exc) or type(exc).__name__)


def _expected_types() -> tuple[type[BaseException], ...]:
    # Imported here, not at module import: `quadd --help` should not load numpy.
    from quadd_codec.errors import QddError

    return (QddError, OSError, ValueError, MemoryError)


def run_guarded(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call `func`, turning expected failures into `QuaddCliError` and Ctrl-C into exit 130."""
    try:
        return func(*args, **kwargs)
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except KeyboardInterrupt:
        click.echo("quadd: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader of our stdout went away (`quadd inspect f | head`): stop quietly.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_ERROR)
    except Exception as exc:
        # QUADD_DEBUG=1 keeps the traceback, for bug reports.
        if isinstance(exc, _expected_types()) and not os.environ.get("QUADD_DEBUG"):
            raise QuaddCliError(describe(exc)) from None
        raise


def missing_extra(exc: ModuleNotFoundError, command: str) -> str | None:
    """The one-line message for a module of an optional extra that is not installed, or
    None when `exc` is about another module."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    what, extra = EXTRAS[top]
    return f"{command} needs {what}: pip install 'quadd[{extra}]'"


EXIT_TERMINATED = 128 + 15


@contextlib.contextmanager
def _terminate_as_exit() -> Any:
    """SIGTERM (`kill`, a job scheduler's stop) unwinds like Ctrl-C, so writers delete
    their temp files and folders; by default Python would die on the spot."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        click.echo("quadd: terminated", err=True)
        raise SystemExit(EXIT_TERMINATED)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: signals cannot be caught here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class QuaddGroup(click.Group):
    """A click group whose subcommands all fail the same way (see module docstring)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args:
            ctx.meta["quadd.command"] = args[0]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _terminate_as_exit():
                return run_guarded(super().invoke, ctx)
        except ModuleNotFoundError as exc:
            name = ctx.meta.get("quadd.command")
            message = missing_extra(exc, f"{ctx.command_path} {name}" if name else
                                    ctx.command_path)
            if message is None or os.environ.get("QUADD_DEBUG"):
                raise
            raise QuaddCliError(message) from None
