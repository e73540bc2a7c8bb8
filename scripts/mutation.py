"""Mutation testing of the ranking decisions, the metric rules and the box conversions.

    make mutation        # = .venv/bin/python -m scripts.mutation [--jobs N] [--keep]

Runs mutmut (pinned in requirements-dev.txt) over the functions of TARGETS with the fast tests of
TESTS, prints the mutants that survived and ends with ``killed: K/N``. Survivors that cannot be
killed (equivalent mutants) are listed with the reason in docs/TESTING.md, whose table this
script reads to tell them apart. Inspect a mutant with ``.venv/bin/mutmut show NAME``.

To mutate another module or function (e.g. after a module is split), edit TARGETS only.
"""

import argparse
import fnmatch
import gc
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Module path -> functions whose mutants are tested ("*": all; "Class.method" for methods).
TARGETS = {
    # The ranking decisions: the inference loop, the stop rule and the per-image results (with the
    # mask logits -> binary masks conversion).
    "seqrank/modeling/meta_arch.py": ("SeqRank.rank", "SeqRank.step_logits"),
    "seqrank/modeling/postprocessing.py": ("*",),
    # Box conversions.
    "seqrank/modeling/box_ops.py": ("*",),
    # The metric rules of the three protocols.
    "seqrank/evaluation/bitmaps.py": ("*",),
    "seqrank/evaluation/stats.py": ("*",),
    "seqrank/evaluation/metrics.py": ("*",),
    "seqrank/evaluation/protocols.py": ("*",),
}

# The fast tests that exercise TARGETS (mutmut runs, per mutant, those that call its function).
# The inference loop is tested on scripted logits here; the parity-model tests of the same code
# (tests/modeling/test_meta_arch.py, test_fast_inference.py) cost seconds per mutant.
TESTS = (
    "tests/modeling/test_stop_rule.py",
    "tests/modeling/test_postprocessing.py",
    "tests/modeling/test_box_ops.py",
    "tests/evaluation",
    # The end-to-end tests run the code in subprocesses (which mutmut cannot trace) for seconds.
    "-m",
    "not e2e",
)

MUTMUT_VERSION = "3.8.1"  # the internals adapt_mutmut() changes are those of this version
DOCS = REPO / "docs" / "TESTING.md"
DETECTED = {"killed", "timeout", "segfault"}


def mutant_globs():
    """mutmut's mutant-name patterns for TARGETS (``pkg.mod.x_func__mutmut_3``,
    ``pkg.mod.xǁClassǁmethod__mutmut_3``)."""
    globs = []
    for path, functions in TARGETS.items():
        module = path[: -len(".py")].replace("/", ".")
        for function in functions:
            if function == "*":
                globs.append(f"{module}.*")
                continue
            *owner, name = function.split(".")
            mangled = f"xǁ{owner[0]}ǁ{name}" if owner else f"x_{name}"
            globs.append(f"{module}.{mangled}__mutmut_*")
    return globs


def listed_mutants(section):
    """Mutant names in the table of ``section`` ("Equivalent mutants" ...) of docs/TESTING.md."""
    if not DOCS.is_file():
        return {}
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    rows = re.findall(r"^\| `([^`]+)` \| (.*?) \|$", match.group(1) if match else "", re.M)
    return dict(rows)


def adapt_mutmut():
    """Three changes to how mutmut runs the tests of a mutant.

    * Default signal handlers in each forked test run. mutmut's fork server handles SIGTERM by
      SIGKILLing every mutant run in flight, and its forked runs inherit that handler; so does
      any process a test forks (``compare`` worker pools): when the pool ended its workers
      with SIGTERM, they killed the other mutant's run, which counted as a kill ("segfault").
    * Fastest tests first. mutmut passes a mutant's tests to ``pytest -x`` in set order; most
      mutants fail one of their quick tests, so sorting them by the durations mutmut measured
      ends most runs after a few milliseconds of tests instead of after a slow one.
    * ``gc.freeze()`` in the fork server once it has imported torch and collected the tests: the
      collector of every forked run then skips that heap instead of walking (and copying) it.
    """
    import mutmut
    from mutmut.runners.harness import PytestRunner
    from mutmut.state import state
    from mutmut.workers.isolation import ForkServerRunner

    if mutmut.__version__ != MUTMUT_VERSION:
        sys.exit(
            f"mutmut {mutmut.__version__} found, {MUTMUT_VERSION} expected (requirements-dev.txt)"
        )
    warm_up, submit, run_tests = (
        PytestRunner.warm_up,
        ForkServerRunner.submit,
        PytestRunner.run_tests,
    )

    def frozen_warm_up(self):
        warm_up(self)
        gc.freeze()

    def fastest_first(self, mutant_name, tests, *args):
        durations = state().duration_by_test
        tests = sorted(tests, key=lambda test: (durations.get(test, 0.0), test))
        return submit(self, mutant_name, tests, *args)

    def run_tests_with_default_signals(self, *, mutant_name, tests):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        return run_tests(self, mutant_name=mutant_name, tests=tests)

    PytestRunner.warm_up = frozen_warm_up
    PytestRunner.run_tests = run_tests_with_default_signals
    ForkServerRunner.submit = fastest_first


def run_mutmut(jobs, names):
    from mutmut.__main__ import cli
    from mutmut.configuration import config

    adapt_mutmut()
    cfg = config()  # [tool.mutmut] of pyproject.toml, then TARGETS / TESTS of this script
    cfg.only_mutate = list(TARGETS)
    cfg.pytest_add_cli_args_test_selection = list(TESTS)
    try:
        cli.main(["run", "--max-children", str(jobs), *names], standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            sys.exit(f"mutmut run failed (exit {exc.code})")


def results():
    """``{mutant name: status}`` of every mutant of TARGETS."""
    from mutmut.stats import status_by_exit_code

    globs = mutant_globs()
    status = {}
    for path in TARGETS:
        meta = json.loads((REPO / "mutants" / f"{path}.meta").read_text())
        for name, code in meta["exit_code_by_key"].items():
            if any(fnmatch.fnmatchcase(name, g) for g in globs):
                status[name] = status_by_exit_code[code]
    return status


def report(status, seconds):
    equivalent = listed_mutants("Equivalent mutants")
    unchecked = sum(s == "not checked" for s in status.values())
    status = {n: s for n, s in status.items() if s != "not checked"}
    survivors = sorted(n for n, s in status.items() if s not in DETECTED)
    killed = len(status) - len(survivors)
    counts = {}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    print(f"\nmutation testing: {len(status)} mutants in {seconds / 60:.1f} min: {counts}")
    if unchecked:
        print(f"  {unchecked} mutants were not tested (interrupted run): not counted below")
    real = [n for n in survivors if n not in equivalent]
    for name in survivors:
        reason = equivalent.get(name)
        print(f"  survived: {name}" + (f"  [equivalent: {reason}]" if reason else ""))
    stale = sorted(n for n in equivalent if status.get(n) in DETECTED or n not in status)
    for name in stale:
        print(f"  note: {name} is listed as equivalent in docs/TESTING.md but was not a survivor")
    meaningful = len(status) - (len(survivors) - len(real))
    share = 100.0 * killed / meaningful if meaningful else 100.0
    print(f"non-equivalent mutants killed: {killed}/{meaningful} ({share:.1f} %)")
    print(f"killed: {killed}/{len(status)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="parallel mutant runs (default 2)")
    parser.add_argument(
        "--keep", action="store_true", help="reuse mutants/ of the last run (default: start anew)"
    )
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="test again only the mutants that survived the last run (implies --keep), e.g. "
        "after adding tests; the source files must be unchanged",
    )
    parser.add_argument(
        "--report", action="store_true", help="only print the results of the last run"
    )
    args = parser.parse_args(argv)
    os.chdir(REPO)
    # The tests run inside mutants/, where ../shared is not the reference data's folder.
    os.environ.setdefault("SEQRANK_SHARED", str(REPO.parent / "shared"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    names = mutant_globs()
    if args.report:
        report(results(), 0.0)
        return
    if args.survivors:
        names = sorted(n for n, s in results().items() if s not in DETECTED | {"not checked"})
    elif not args.keep:
        shutil.rmtree(REPO / "mutants", ignore_errors=True)
    start = time.monotonic()
    if names:
        run_mutmut(args.jobs, names)
    report(results(), time.monotonic() - start)


if __name__ == "__main__":
    main()
