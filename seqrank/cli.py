"""What every command-line entry point shares: the user-error types, how such errors end the
process (one line, exit code 1; a traceback only with ``--debug`` or ``SEQRANK_DEBUG=1``), the
logging set-up, how a process ends on SIGTERM, and the predictor arguments of the demos
(``--config-file``, ``--trust-checkpoint``, ``--precision``, ``--opts``;
:func:`add_predictor_arguments`).
"""

import argparse
import contextlib
import logging
import os
import sys
import traceback

from seqrank.utils.sigterm import SIGTERM_EXIT_CODE, exit_on_sigterm, sigterm_received

__all__ = [
    "ConfigError",
    "DEBUG_ENV",
    "MissingFileError",
    "SeqRankUserError",
    "add_debug_argument",
    "add_precision_argument",
    "add_predictor_arguments",
    "debug_requested",
    "exit_on_sigterm",
    "one_line",
    "positive_int",
    "precision_opts",
    "setup_cli_logging",
    "user_errors",
]

logger = logging.getLogger("seqrank")

DEBUG_ENV = "SEQRANK_DEBUG"
# Values of TEST.PRECISION (seqrank.modeling.precision checks them).
PRECISION_CHOICES = ("fp32", "bf16", "fp16")

_PLAIN_LOG = "%(levelname)s %(name)s: %(message)s"
_TIMED_LOG = "[%(asctime)s %(name)s] %(levelname)s: %(message)s"


class SeqRankUserError(Exception):
    """A problem with the user's input (a file, a config value, a command-line choice).

    Its message is one line that names the file, key or record and the problem; the command-line
    tools print it instead of a traceback.
    """


class MissingFileError(SeqRankUserError, FileNotFoundError):
    """An input file or folder named by the user does not exist."""


class ConfigError(SeqRankUserError, ValueError):
    """A config file or value is invalid (the message names the file or key)."""


def setup_cli_logging(timestamps: bool = False, level: int = logging.INFO) -> None:
    """Log to stderr at ``level``; ``timestamps`` prefixes each line with the time of day.

    Long-running tools (demos, the web app) use timestamps; one-shot converters do not. Like
    ``logging.basicConfig`` it leaves an already configured root logger alone.
    """
    if timestamps:
        logging.basicConfig(level=level, format=_TIMED_LOG, datefmt="%H:%M:%S")
    else:
        logging.basicConfig(level=level, format=_PLAIN_LOG)


def add_debug_argument(parser):
    """``--debug``: show the traceback of a user error instead of its one-line message."""
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"on an input error, show the full traceback (also: {DEBUG_ENV}=1)",
    )
    return parser


def positive_int(text):
    """argparse ``type`` for an integer >= 1 (``_`` separators allowed: ``100_000_000``)."""
    try:
        value = int(str(text).replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def debug_requested(args=None):
    """True when ``args.debug`` is set or the environment has ``SEQRANK_DEBUG`` set (not 0)."""
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(exc):
    """The message of ``exc`` as one line.

    An error re-raised from a data-loader worker carries the worker's traceback in its message;
    its last line (without the exception's type) is the original message.
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Traceback (most recent call last)" in text:
        last = lines[-1]
        head, sep, rest = last.partition(": ")
        return rest if sep and " " not in head else last
    return lines[0] if len(lines) == 1 else " ".join(lines)


@contextlib.contextmanager
def user_errors(prog, debug=False, also=(), exit_code=1):
    """End the process with ``"<prog>: error: <one line>"`` on stderr and ``exit_code`` when the
    block raises a :class:`SeqRankUserError` (or one of the library errors in ``also`` that the
    caller translates); with ``debug`` the traceback is printed first.

    With the default exit code 1 the line is the ``SystemExit``'s message (Python prints it);
    a tool documented to exit with another code (2 for ``sor_compare``) prints it itself.
    After a SIGTERM handled by :func:`exit_on_sigterm`, any error ends the process with 143.
    """
    try:
        yield
    except BaseException as exc:
        if sigterm_received() and not _is_sigterm_exit(exc):
            # Unwinding after SIGTERM can raise other errors (a data-loader worker that got the
            # signal too, a clean-up that fails); the process still ends the way SIGTERM is
            # documented to end it.
            logger.warning("Error while stopping after SIGTERM: %s", one_line(exc))
            raise SystemExit(SIGTERM_EXIT_CODE) from None
        if not isinstance(exc, (SeqRankUserError, *also)):
            raise
        if debug:
            traceback.print_exc()
        line = f"{prog}: error: {one_line(exc)}"
        if exit_code == 1:
            raise SystemExit(line) from None
        print(line, file=sys.stderr)
        raise SystemExit(exit_code) from None


def _is_sigterm_exit(exc):
    return isinstance(exc, SystemExit) and exc.code == SIGTERM_EXIT_CODE


def add_precision_argument(parser):
    """``--precision {fp32,bf16,fp16}``: ``TEST.PRECISION``, the precision of inference."""
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=None,
        help="inference precision (TEST.PRECISION; default: the config's, fp32). bf16 / fp16 run "
        "under autocast with the ranking decisions in float32; bf16 needs a GPU or a CPU with "
        "BF16 instructions, fp16 a GPU, else fp32 is used with a warning",
    )
    return parser


def precision_opts(precision):
    """The config overrides of a ``--precision`` value (none when it was not given)."""
    return [] if precision is None else ["TEST.PRECISION", precision]


def add_predictor_arguments(parser, default_config=None):
    """``--config-file``, ``--trust-checkpoint``, ``--precision`` and ``--opts`` (last: it takes
    the rest).

    Without ``--config-file`` the config follows the checkpoint
    (:func:`seqrank.config_resolution.resolve_config`): ``SEQRANK_CONFIG``, then ``config.yaml``
    beside the checkpoint, then its file name.
    """
    parser.add_argument(
        "--config-file",
        default=default_config,
        metavar="FILE",
        help="model config; default: $SEQRANK_CONFIG, else config.yaml in the checkpoint's "
        "folder (written by training), else by file name: *correct_ckp.pth -> "
        "configs/swinL_correct.yaml, other names -> configs/swinL.yaml",
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow checkpoints that hold arbitrary pickled objects (only files you trust)",
    )
    add_precision_argument(parser)
    parser.add_argument(
        "--opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS ckp.pth MODEL.DEVICE cpu",
    )
