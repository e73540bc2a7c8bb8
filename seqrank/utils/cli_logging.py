"""Kept for imports of the earlier path: the logging set-up lives in :mod:`seqrank.cli`."""

from ..cli import setup_cli_logging

__all__ = ["setup_cli_logging"]
