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
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Module path -> functions whose mutants are tested ("*": all; "Class.method" for methods).
TARGETS = {
    # The ranking decisions: the inference loops, the stop rule and the per-image results.
    "seqrank/modeling/meta_arch.py": ("SeqRank.rank", "SeqRank.step_logits"),
    "seqrank/modeling/postprocessing.py": ("image_result", "empty_result"),
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
    "tests/modeling/test_box_ops.py",
    "tests/evaluation",
)

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


def run_mutmut(jobs, names):
    from mutmut.__main__ import cli
    from mutmut.configuration import config

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
