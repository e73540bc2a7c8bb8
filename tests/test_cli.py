"""How command-line processes end: one line for user errors, exit code 143 after SIGTERM."""

import os
import signal

import pytest

from seqrank.cli import ConfigError, user_errors


class _FailsOnExit:
    """A context whose clean-up fails, like torch.save's zip writer after an interrupted write."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        raise RuntimeError("unexpected pos 46 vs 0")


def test_user_error_ends_with_one_line():
    with pytest.raises(SystemExit) as info:
        with user_errors("prog"):
            raise ConfigError("config.yaml: SOLVER.BASE_LR must be positive")
    assert info.value.code == "prog: error: config.yaml: SOLVER.BASE_LR must be positive"


def test_other_errors_pass_through_user_errors():
    with pytest.raises(KeyError):
        with user_errors("prog"):
            raise KeyError("bug")


def test_error_while_unwinding_after_sigterm_still_exits_143(sigterm_handler, caplog):
    with pytest.raises(SystemExit) as info:
        with user_errors("prog"):
            with _FailsOnExit():
                os.kill(os.getpid(), signal.SIGTERM)
    assert info.value.code == 143
    assert "Error while stopping after SIGTERM: unexpected pos 46 vs 0" in caplog.text


def test_sigterm_exit_passes_through_user_errors(sigterm_handler):
    with pytest.raises(SystemExit) as info:
        with user_errors("prog"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert info.value.code == 143
