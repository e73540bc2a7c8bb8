"""Plain, non-repeating log output: no ANSI colour codes in log files, the config printed once, and
detectron2's environment table without a false alarm about its C++ extension.

Libraries write colours into the message itself (detectron2 highlights YAML with pygments,
werkzeug colours request lines), so the codes reach ``log.txt`` and redirected server logs; the
filters here remove them from the record before any handler formats it.
"""

import logging
import re

__all__ = [
    "PURE_PYTHON_C_LINE",
    "PlainTextFilter",
    "SetupLogFilter",
    "install_setup_log_filter",
    "plain_werkzeug_log",
    "strip_ansi",
]

# CSI sequences (colours, cursor moves) and the two-character escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_C_LINE = re.compile(r"^(detectron2\._C\s+)not built correctly: .*$", re.MULTILINE)
PURE_PYTHON_C_LINE = "pure-Python detectron2: CPU/CUDA ops from torchvision"


def strip_ansi(text):
    """``text`` without ANSI escape sequences."""
    return _ANSI.sub("", text)


class PlainTextFilter(logging.Filter):
    """Removes ANSI escape sequences from every record's message (the record is rewritten with
    its arguments applied, so handlers format the plain text)."""

    def filter(self, record):
        message = record.getMessage()
        plain = self.rewrite(strip_ansi(message))
        if plain is None:
            return False
        if plain != message:
            record.msg, record.args = plain, ()
        return True

    def rewrite(self, message):
        """The message to log (``None`` drops the record)."""
        return message


class SetupLogFilter(PlainTextFilter):
    """For the ``detectron2`` logger during ``default_setup``: plain text, the config printed
    once (the full config; the contents of the config file, a subset of it, are dropped) and the
    ``detectron2._C`` row of the environment table explained instead of reported as broken."""

    def rewrite(self, message):
        if message.startswith("Contents of args.config_file="):
            return None
        return _C_LINE.sub(lambda m: m.group(1) + PURE_PYTHON_C_LINE, message)


def install_setup_log_filter(logger_name="detectron2"):
    """Attach one :class:`SetupLogFilter` to ``logger_name`` (idempotent)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, SetupLogFilter) for f in logger.filters):
        logger.addFilter(SetupLogFilter())
    return logger


def plain_werkzeug_log():
    """Make werkzeug's request lines plain text (it colours status codes whatever the stream)."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, PlainTextFilter) for f in logger.filters):
        logger.addFilter(PlainTextFilter())
    return logger
