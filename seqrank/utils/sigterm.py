"""How a process ends on SIGTERM (what cluster schedulers send to stop a job): through Python,
with exit code 143, never in the middle of an atomic write.

The handler raises ``SystemExit(143)`` in the main thread wherever it happens to be, so that
``finally`` blocks run. Inside :func:`sigterm_deferred` (every atomic write) it only takes note,
and the block raises when it ends: an exception raised asynchronously inside ``torch.save``
leaves its C++ zip writer half-finished, which then fails in its ``__exit__`` ("unexpected pos")
or, when the writer is destroyed after its file was closed, aborts the process (exit code -6).
"""

import contextlib
import functools
import logging
import multiprocessing
import signal
import threading

__all__ = [
    "SIGTERM_EXIT_CODE",
    "exit_on_sigterm",
    "sigterm_deferred",
    "sigterm_received",
]

logger = logging.getLogger("seqrank")

SIGTERM_EXIT_CODE = 128 + signal.SIGTERM

_state = {"received": False, "deferring": 0, "pending": False}


def sigterm_received():
    """Whether the handler of :func:`exit_on_sigterm` has run in this process."""
    return _state["received"]


def _stop(forward, signum, frame):
    _state["received"] = True
    # A second SIGTERM while cleaning up kills the process the default way.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if forward:
        for child in multiprocessing.active_children():
            child.terminate()
    if _state["deferring"]:
        logger.warning("Received SIGTERM: stopping once the file being written is complete")
        _state["pending"] = True
        return
    logger.warning("Received SIGTERM: stopping")
    raise SystemExit(SIGTERM_EXIT_CODE)


def exit_on_sigterm(forward_to_children=False):
    """End this process through Python on SIGTERM (``SystemExit(143)``) instead of at once.

    Python's default leaves ``finally`` blocks unrun, so an atomic write interrupted by SIGTERM
    left its temporary file behind. ``forward_to_children``: first pass SIGTERM on to this
    process's multiprocessing children (the launcher of several training processes; not a
    trainer, whose children are data-loader workers that torch shuts down itself). Only the main
    thread can install handlers; elsewhere this does nothing.
    """
    try:
        signal.signal(signal.SIGTERM, functools.partial(_stop, forward_to_children))
    except ValueError:
        pass


@contextlib.contextmanager
def sigterm_deferred():
    """Hold back the ``SystemExit`` of a SIGTERM that arrives inside the block until it ends.

    Blocks may nest; the outermost one raises. Without :func:`exit_on_sigterm` installed this
    changes nothing (the default action ends the process at once). Only the main thread defers:
    Python runs signal handlers there, and a SystemExit raised in another thread would end only
    that thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
        if not _state["deferring"] and _state["pending"]:
            _state["pending"] = False
            raise SystemExit(SIGTERM_EXIT_CODE)
