"""Slow, literal re-statements of the original code: the oracles the tests (and benchmarks)
compare the project's optimised code against. Not part of the ``seqrank`` package."""
