"""What every command-line entry point shares: how a process ends on SIGTERM."""

import functools
import logging
import multiprocessing
import signal

__all__ = ["exit_on_sigterm"]

logger = logging.getLogger("seqrank")

SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


def _stop(forward, signum, frame):
    # A second SIGTERM while cleaning up kills the process the default way.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logger.warning("Received SIGTERM: stopping (a checkpoint being written is discarded)")
    if forward:
        for child in multiprocessing.active_children():
            child.terminate()
    raise SystemExit(SIGTERM_EXIT_CODE)


def exit_on_sigterm(forward_to_children=False):
    """End this process through Python on SIGTERM (``SystemExit(143)``) instead of at once.

    Python's default leaves ``finally`` blocks unrun, so an atomic write interrupted by SIGTERM
    (e.g. a checkpoint save when a cluster scheduler stops the job) left its temporary file behind.
    ``forward_to_children``: first pass SIGTERM on to this process's multiprocessing children
    (the launcher of several training processes; not a trainer, whose children are data-loader
    workers that torch shuts down itself). Only the main thread can install handlers; elsewhere
    this does nothing.
    """
    try:
        signal.signal(signal.SIGTERM, functools.partial(_stop, forward_to_children))
    except ValueError:
        pass
