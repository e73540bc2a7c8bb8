"""scripts/mutation.py (`make mutation`) without running mutmut: its target list still names
existing code, its name patterns are mutmut's, docs/TESTING.md's tables parse, and the report ends
with ``killed: K/N``."""

import ast
import fnmatch

from scripts import mutation
from tests.conftest import REPO


def defined_functions(path):
    """Module-level function names and ``Class.method`` names defined in ``path``."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)}
    return names


def test_targets_and_tests_name_existing_code():
    for path, functions in mutation.TARGETS.items():
        defined = defined_functions(path)
        assert all(f == "*" or f in defined for f in functions), (path, functions)
    paths = [t for t in mutation.TESTS if t.startswith("tests/")]
    assert paths and all((REPO / t).exists() for t in paths)


def matches(name):
    return any(fnmatch.fnmatchcase(name, g) for g in mutation.mutant_globs())


def test_mutant_globs_select_the_target_functions_only():
    assert matches("seqrank.modeling.meta_arch.xǁSeqRankǁrank__mutmut_12")
    assert matches("seqrank.modeling.meta_arch.xǁSeqRankǁstep_logits__mutmut_1")
    assert not matches("seqrank.modeling.meta_arch.xǁSeqRankǁencode__mutmut_1")
    assert matches("seqrank.evaluation.metrics.x_sor__mutmut_3")
    assert matches("seqrank.evaluation.results_file.x_rle_from_words__mutmut_2")
    assert not matches("seqrank.evaluation.results_file.x_check_rle__mutmut_2")


def test_documented_mutants_are_target_mutants_with_a_reason():
    equivalent = mutation.listed_mutants("Equivalent mutants")
    surviving = mutation.listed_mutants("Surviving mutants")
    assert equivalent and surviving and not set(equivalent) & set(surviving)
    for name, reason in {**equivalent, **surviving}.items():
        assert matches(name) and reason.strip(), name


def test_report_counts_equivalent_survivors_apart_and_ends_with_killed(capsys):
    equivalent = next(iter(mutation.listed_mutants("Equivalent mutants")))
    status = {
        equivalent: "survived",
        "seqrank.evaluation.metrics.x_sor__mutmut_1": "killed",
        "seqrank.evaluation.metrics.x_sor__mutmut_2": "timeout",
        "seqrank.evaluation.metrics.x_sor__mutmut_3": "survived",
        "seqrank.evaluation.metrics.x_sor__mutmut_4": "not checked",
    }
    mutation.report(status, 90.0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "survived: seqrank.evaluation.metrics.x_sor__mutmut_3" in "\n".join(lines)
    assert "1 mutants were not tested" in "\n".join(lines)
    assert lines[-2] == "non-equivalent mutants killed: 2/3 (66.7 %)"
    assert lines[-1] == "killed: 2/4"
