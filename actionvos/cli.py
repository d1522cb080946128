"""The ``actionvos`` command: a thin typer layer over library functions.

Each subcommand lives in the package that implements it and is registered here. Errors of type
:class:`actionvos.errors.ActionVOSError` are printed as one line (traceback with ``--debug``) and
exit with a non-zero code.
"""

from __future__ import annotations

import logging
import sys

import typer

from actionvos.errors import ActionVOSError

app = typer.Typer(
    name="actionvos",
    help="ActionVOS: segment the objects involved in an action, from checkpoint to real-time runtime.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _register() -> None:
    """Import the subcommand modules (each import is light: heavy deps load inside the commands)."""
    from actionvos.calibration import cli as calibration_cli
    from actionvos.export import cli as export_cli
    from actionvos.inference import cli as inference_cli
    from actionvos.runtime import cli as runtime_cli
    from actionvos.training import cli as training_cli

    for module in (inference_cli, export_cli, runtime_cli, training_cli, calibration_cli):
        module.register(app)


def main() -> None:
    """Console entry point with the one-line error policy."""
    _register()
    debug = "--debug" in sys.argv
    try:
        rc = app(standalone_mode=False)
    except ActionVOSError as err:
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors carry their own exit code
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Exit):
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            sys.exit(130)
        raise
    if isinstance(rc, int) and rc:  # a command's non-zero return (typer maps Ctrl-C to 130 this way)
        sys.exit(rc)
