"""The ``actionvos`` command: a thin typer layer over library functions.

Each subcommand lives in the package that implements it and is registered here. Errors of type
:class:`actionvos.errors.ActionVOSError` and ``OSError`` (full disk, permissions, ...) are printed as one line
(traceback with ``--debug``) and exit with a non-zero code; SIGTERM / SIGHUP are handled like Ctrl-C (:func:`run_app`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys

import typer

from actionvos import cli_options as opts
from actionvos.errors import ActionVOSError

app = typer.Typer(
    name="actionvos",
    help="ActionVOS: segment the objects involved in an action, from checkpoint to real-time runtime.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

@app.callback()
def _main(debug: opts.Debug = False, verbose: opts.Verbose = False) -> None:
    """Global options (their callbacks set the shared state and the log level)."""


def configure_logging() -> None:
    """INFO-level log lines on stderr (``--verbose`` raises them to DEBUG)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register() -> None:
    """Import the subcommand modules (each import is light: heavy deps load inside the commands)."""
    from actionvos.calibration import cli as calibration_cli
    from actionvos.export import cli as export_cli
    from actionvos.inference import cli as inference_cli
    from actionvos.runtime import cli as runtime_cli
    from actionvos.training import cli as training_cli

    for module in (inference_cli, export_cli, runtime_cli, training_cli, calibration_cli):
        module.register(app)


def run_app(typer_app: typer.Typer, args: list[str], prog_name: str | None = None) -> None:
    """Run a typer app with the one-line error policy shared by ``actionvos`` and ``actionvos-export``.

    * :class:`ActionVOSError` → ``error: <message>`` on stderr and its exit code (2).
    * ``OSError`` (ENOSPC, EACCES, EISDIR, EROFS, ...) → ``error: <what>: '<path>' (<ERRNO>); <fix>``
      (:func:`actionvos.io_utils.describe_os_error`) and exit 1: the environment refused, not a usage error.
    * Ctrl-C → exit 130; SIGTERM / SIGHUP (``timeout``, docker, systemd, a closed terminal) are handled the same way
      (:func:`actionvos.signals.termination_signals`: the command finalises its outputs) and exit ``128 + signal``
      (143, 129).
    * click usage errors → click's message and code.

    Tracebacks only with ``--debug`` (parsed by typer: :data:`actionvos.cli_options.Debug`); anything else is a bug
    and propagates with its traceback.
    """
    import click

    from actionvos.io_utils import describe_os_error
    from actionvos.signals import interrupt_exit_code, interrupt_signal_name, received_signal, termination_signals

    def interrupted(err: BaseException | None) -> None:
        code = interrupt_exit_code(err)
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            typer.echo(f"interrupted ({interrupt_signal_name(err)})" if code != 130 else "interrupted", err=True)
        sys.exit(code)

    with termination_signals():
        try:
            rc = typer_app(args=args, prog_name=prog_name, standalone_mode=False)
        except ActionVOSError as err:
            if opts.STATE["debug"]:
                raise
            typer.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except OSError as err:
            if opts.STATE["debug"]:
                raise
            typer.echo(f"error: {describe_os_error(err)}", err=True)
            sys.exit(1)
        except (KeyboardInterrupt, click.exceptions.Abort) as err:
            interrupted(err)
        except click.exceptions.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except click.exceptions.Exit as err:
            sys.exit(err.exit_code)
        except SystemExit as err:
            if err.code == 130 and received_signal() not in (None, signal.SIGINT):  # a command's Ctrl-C exit, by SIGTERM/SIGHUP
                sys.exit(interrupt_exit_code(err))
            raise
        if received_signal() not in (None, signal.SIGINT):  # stopped early on SIGTERM/SIGHUP and returned (e.g. camera;
            # Ctrl-C is a normal way to end the live view and keeps its exit 0)
            interrupted(None)
        if isinstance(rc, int) and rc:  # a command's non-zero return (typer maps Ctrl-C to 130 this way)
            sys.exit(rc)


def main() -> None:
    """Console entry point ``actionvos``."""
    _register()
    configure_logging()
    run_app(app, sys.argv[1:], prog_name="actionvos")
