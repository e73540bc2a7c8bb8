"""One logging set-up for every command-line entry point (demos, converters, scripts)."""

import logging

_PLAIN = "%(levelname)s %(name)s: %(message)s"
_TIMED = "[%(asctime)s %(name)s] %(levelname)s: %(message)s"


def setup_cli_logging(timestamps: bool = False, level: int = logging.INFO) -> None:
    """Log to stderr at ``level``; ``timestamps`` prefixes each line with the time of day.

    Long-running tools (demos, the web app) use timestamps; one-shot converters do not. Like
    ``logging.basicConfig`` it leaves an already configured root logger alone.
    """
    if timestamps:
        logging.basicConfig(level=level, format=_TIMED, datefmt="%H:%M:%S")
    else:
        logging.basicConfig(level=level, format=_PLAIN)
