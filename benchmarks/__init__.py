"""Benchmarks: each script times the project's path against a straightforward baseline."""

import warnings

# detectron2 scripts a few helpers at import time; the deprecation notice is noise in reports.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")
