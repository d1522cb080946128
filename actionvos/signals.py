"""SIGTERM and SIGHUP handled like Ctrl-C, for every long command.

``timeout``, ``docker stop``, systemd and a closed terminal end a process with SIGTERM or SIGHUP, whose default
action kills Python at once: no ``finally`` runs, no summary is written, temporary files stay. Inside
:func:`termination_signals` those signals raise :class:`Terminated`, a :class:`KeyboardInterrupt` subclass, in
the main thread, so every place that already handles Ctrl-C (finalise the overlay, keep the finished PNGs, write
``summary.json`` with ``interrupted: true``) handles them the same way. The CLI's error policy
(:func:`actionvos.cli.run_app`) wraps every command in it and exits with ``128 + signal`` (143 for SIGTERM,
129 for SIGHUP; 130 for Ctrl-C) via :func:`interrupt_exit_code`.

Only the first termination signal raises; repeats while the command cleans up are logged and ignored, so a
second SIGTERM cannot cut the summary write in half (SIGKILL still ends the process; the next run into the same
folder removes what it left: :func:`actionvos.io_utils.clean_stale_temps`). Code that must not be cut between
two statements (e.g. "write this frame's PNG and count it") can hold the signal with :func:`deferred_termination`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator

__all__ = [
    "Terminated",
    "termination_signals",
    "deferred_termination",
    "interrupt_exit_code",
    "interrupt_signal_name",
    "received_signal",
    "HANDLED_SIGNALS",
]

log = logging.getLogger(__name__)

#: Signals turned into :class:`Terminated` (SIGHUP does not exist on Windows).
HANDLED_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGTERM, SIGHUP); handled wherever Ctrl-C is.

    Attributes:
        signum: the signal number, e.g. ``signal.SIGTERM`` (15).
        signame: its name, e.g. ``"SIGTERM"``.
        exit_code: ``128 + signum``, the shell convention for "ended by signal".
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.signame = signal.Signals(self.signum).name
        self.exit_code = 128 + self.signum
        super().__init__(f"terminated by {self.signame}")


class _State:
    def __init__(self) -> None:
        self.received: int | None = None  # first termination signal of this process (for the exit code)
        self.raised = False  # a Terminated was raised (later signals are ignored)
        self.depth = 0  # nesting of deferred_termination()
        self.pending: int | None = None  # signal held by deferred_termination()


_state = _State()


def _handler(signum, frame) -> None:
    if _state.raised or _state.pending is not None:
        log.warning("received %s again while stopping; finishing the clean-up (SIGKILL ends at once)",
                    signal.Signals(signum).name)
        return
    if _state.received is None:
        _state.received = signum
    if _state.depth > 0:
        _state.pending = signum
        return
    _state.raised = True
    raise Terminated(signum)


@contextlib.contextmanager
def termination_signals(signals: tuple[int, ...] = HANDLED_SIGNALS) -> Iterator[None]:
    """Turn ``signals`` (default SIGTERM, SIGHUP) into :class:`Terminated` while the block runs.

    A no-op outside the main thread (Python delivers signals only there). A signal that the parent set to be
    ignored (e.g. SIGHUP under ``nohup``) stays ignored. The previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for s in signals:
        old = signal.getsignal(s)
        if old == signal.SIG_IGN:  # nohup and friends: respect the parent's choice
            continue
        previous[s] = old
        signal.signal(s, _handler)
    _state.received, _state.raised, _state.pending, _state.depth = None, False, None, 0
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def deferred_termination() -> Iterator[None]:
    """Hold a termination signal until the block ends, then raise :class:`Terminated` (if the block succeeded).

    For short sections that must run as a whole, e.g. writing one frame's outputs and counting them; nestable.
    Ctrl-C (SIGINT) is not held.
    """
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if _state.depth == 0 and _state.pending is not None and not _state.raised:
        signum, _state.pending = _state.pending, None
        _state.raised = True
        raise Terminated(signum)


def received_signal() -> int | None:
    """The first termination signal this process received inside :func:`termination_signals`, or ``None``."""
    return _state.received


def _find_terminated(err: BaseException | None) -> Terminated | None:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, Terminated):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def interrupt_exit_code(err: BaseException | None = None) -> int:
    """Exit status for an interrupted command: ``128 + signum`` for :class:`Terminated` (also when it is the cause
    or context of ``err``, e.g. click's ``Abort``, or when only :func:`received_signal` knows), else 130 (Ctrl-C)."""
    term = _find_terminated(err)
    if term is not None:
        return term.exit_code
    if _state.received is not None:
        return 128 + _state.received
    return 130


def interrupt_signal_name(err: BaseException | None = None) -> str:
    """``"SIGTERM"`` / ``"SIGHUP"`` for a termination signal (see :func:`interrupt_exit_code`), else ``"SIGINT"``."""
    code = interrupt_exit_code(err)
    return signal.Signals(code - 128).name if code != 130 else "SIGINT"
