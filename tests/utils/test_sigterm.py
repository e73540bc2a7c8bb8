"""SIGTERM ends the process with 143 through Python, after any atomic write in progress."""

import os
import signal
import threading

import pytest

from seqrank.utils import sigterm
from seqrank.utils.sigterm import sigterm_deferred, sigterm_received


def test_sigterm_raises_system_exit_143(sigterm_handler, caplog):
    with pytest.raises(SystemExit) as info:
        os.kill(os.getpid(), signal.SIGTERM)
    assert info.value.code == 143
    assert sigterm_received()
    assert "Received SIGTERM: stopping" in caplog.text
    # A second SIGTERM would end the process the default way.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_deferred_block_runs_to_its_end_then_exits(sigterm_handler, caplog):
    done = []
    with pytest.raises(SystemExit) as info:
        with sigterm_deferred():
            with sigterm_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("inner")
            done.append("outer")
    assert info.value.code == 143
    assert done == ["inner", "outer"]
    assert "once the file being written is complete" in caplog.text


def test_deferred_block_without_sigterm_changes_nothing(sigterm_handler):
    with sigterm_deferred():
        pass
    assert not sigterm_received()
    assert sigterm._state == {"received": False, "deferring": 0, "pending": False}


def test_an_error_in_the_deferred_block_still_ends_with_143(sigterm_handler):
    with pytest.raises(SystemExit) as info:
        with sigterm_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            raise OSError("disk full")
    assert info.value.code == 143


def test_a_write_in_another_thread_does_not_defer(sigterm_handler):
    seen = []

    def write():
        with sigterm_deferred():
            seen.append(dict(sigterm._state))

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert seen == [{"received": False, "deferring": 0, "pending": False}]
    with pytest.raises(SystemExit):
        os.kill(os.getpid(), signal.SIGTERM)
