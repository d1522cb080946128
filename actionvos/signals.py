"""SIGTERM and SIGHUP handled like Ctrl-C, for every long command.

``timeout``, ``docker stop``, systemd and a closed terminal end a process with SIGTERM or SIGHUP, whose default
action kills Python at once: no ``finally`` runs, no summary is written, temporary files stay. Inside
:func:`termination_signals` those signals raise :class:`Terminated`, a :class:`KeyboardInterrupt` subclass, in
the main thread, so every place that already handles Ctrl-C (finalise the overlay, keep the finished PNGs, write
``summary.json`` with ``interrupted: true``) handles them the same way. The CLI's error policy
(:func:`actionvos.cli.run_app`) wraps every command in it and exits with ``128 + signal`` (143 for SIGTERM,
129 for SIGHUP; 130 for Ctrl-C) via :func:`interrupt_exit_code`.

The frame in flight is finished: while a frame's outputs are written (:func:`hold_termination`, called when its
label PNG is written, until the next :func:`check_termination`: the next frame, the next chunk of frames read) the
signal is held, so the PNGs on disk and the counts in ``summary.json`` always agree; if no check point comes within
:data:`GRACE_S` seconds (a long model step) the signal is raised wherever the main thread is. SIGINT (Ctrl-C) goes
through the same path. Only the first signal raises; repeats while the command cleans up are logged and ignored,
so a second SIGTERM cannot cut the summary write in half (SIGKILL still ends the process; the next run into the
same folder removes what it left: :func:`actionvos.io_utils.clean_stale_temps`).
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
    "hold_termination",
    "check_termination",
    "interrupt_exit_code",
    "interrupt_signal_name",
    "received_signal",
    "HANDLED_SIGNALS",
]

log = logging.getLogger(__name__)

#: Signals turned into :class:`Terminated` (SIGHUP does not exist on Windows). SIGINT is included so that Ctrl-C
#: gets the same frame-consistent stop (it is still a ``KeyboardInterrupt`` and exits 130).
HANDLED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


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
        self.hold = False  # a frame is being written (hold_termination() .. check_termination())
        self.pending: int | None = None  # signal held until a check point
        self.escalate = False  # the grace period ran out: raise wherever the main thread is
        self.grace_s = GRACE_S
        self.timer: threading.Timer | None = None


#: Seconds a held signal waits for a check point before it is raised wherever the main thread is.
GRACE_S = 2.0

_state = _State()


def _raise(signum: int) -> None:
    _state.raised, _state.pending, _state.escalate, _state.hold = True, None, False, False
    if _state.timer is not None:
        _state.timer.cancel()
        _state.timer = None
    raise Terminated(signum)


def _escalate(signum: int) -> None:
    """Watchdog (another thread): no check point came within the grace period; deliver the signal again."""
    if _state.raised or _state.pending is None:
        return
    _state.escalate = True
    import _thread

    _thread.interrupt_main(signum)  # runs _handler(signum) in the main thread (Python >= 3.10)


def _handler(signum, frame) -> None:
    if _state.raised:
        log.warning("received %s again while stopping; finishing the clean-up (SIGKILL ends at once)",
                    signal.Signals(signum).name)
        return
    if _state.received is None:
        _state.received = signum
    if _state.depth > 0 or (_state.hold and not _state.escalate):
        if _state.pending is None:
            _state.pending = signum
            if _state.depth == 0:
                _state.timer = threading.Timer(_state.grace_s, _escalate, args=(signum,))
                _state.timer.daemon = True
                _state.timer.start()
        return
    _raise(_state.pending if _state.pending is not None else signum)


@contextlib.contextmanager
def termination_signals(signals: tuple[int, ...] | None = None, grace_s: float = GRACE_S) -> Iterator[None]:
    """Turn ``signals`` (default SIGINT, SIGTERM, SIGHUP) into :class:`Terminated` while the block runs.

    The signal is raised at once, except while a frame is being written (:func:`hold_termination` ..
    :func:`check_termination`) or inside :func:`deferred_termination`: then it is raised at the next check point,
    or after ``grace_s`` seconds wherever the main thread is (so a stop is never delayed by more than that).
    A no-op outside the main thread (Python delivers signals only there). A signal that the parent set to be
    ignored (e.g. SIGHUP under ``nohup``, SIGINT for a background job) stays ignored. The previous handlers are
    restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = HANDLED_SIGNALS if signals is None else signals
    previous = {}
    for s in signals:
        old = signal.getsignal(s)
        if old == signal.SIG_IGN:  # nohup and friends: respect the parent's choice
            continue
        previous[s] = old
        signal.signal(s, _handler)
    _state.__init__()
    _state.grace_s = float(grace_s)
    try:
        yield
    finally:
        if _state.timer is not None:
            _state.timer.cancel()
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)


def hold_termination() -> None:
    """A frame's outputs are about to be written: raise a signal that arrived before (the previous frame is complete),
    then hold new ones until the next :func:`check_termination` (or the grace period), so the frame's PNG, overlay
    frame and statistics are written as a whole. Called by :func:`actionvos.inference.writers.write_label_png`."""
    check_termination()
    _state.hold = True


def check_termination() -> None:
    """A check point (a consistent state, e.g. between frames or clips): raise a held signal, stop holding."""
    _state.hold = False
    if _state.pending is not None and _state.depth == 0 and not _state.raised:
        _raise(_state.pending)


@contextlib.contextmanager
def deferred_termination() -> Iterator[None]:
    """Hold a termination signal until the block ends, then raise :class:`Terminated` (if the block succeeded).

    For short sections that must run as a whole (the summary write); nestable; no grace period applies.
    """
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if _state.depth == 0 and _state.pending is not None and not _state.raised and not _state.hold:
        _raise(_state.pending)


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
