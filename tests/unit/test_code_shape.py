"""The code's shape holds its targets (issue "Architecture"): no module over 500 lines, no
function over 40, and the median function at most 10 lines. Every offender is listed in one
failure message, so a single run says everything there is to fix.

Scope: every module of mtls_deploy/ (its tasks.py included) and roles/ (bench/ is exempt: it measures, it does
not ship). A function's length counts its lines from ``def`` (decorators excluded) to its last
line, docstring included, as an editor shows it.
"""

import ast
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 40
MAX_MEDIAN_FUNCTION_LINES = 10


def modules() -> list[Path]:
    """Every Python module the targets hold for, in a stable order."""
    found = [*(ROOT / "mtls_deploy").rglob("*.py"), *(ROOT / "roles").rglob("*.py")]
    return sorted(found)


def function_lengths(tree: ast.AST) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, length)`` of every function and method, nested ones too."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found.append((name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def shape_offences(paths: list[Path], root: Path = ROOT) -> list[str]:
    """One line per module or function over its limit, and one for a median over its target."""
    offences, lengths = [], []
    for path in paths:
        text = path.read_text()
        shown = path.relative_to(root)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            offences.append(f"{shown}: {lines} lines (at most {MAX_MODULE_LINES} per module)")
        for name, first, length in function_lengths(ast.parse(text, str(path))):
            lengths.append(length)
            if length > MAX_FUNCTION_LINES:
                offences.append(
                    f"{shown}:{first} {name}: {length} lines (at most {MAX_FUNCTION_LINES})"
                )
    median = statistics.median(lengths) if lengths else 0
    if median > MAX_MEDIAN_FUNCTION_LINES:
        offences.append(f"median function length {median} (at most {MAX_MEDIAN_FUNCTION_LINES})")
    return offences


def test_no_module_over_500_lines_no_function_over_40_and_a_median_of_10_at_most():
    offences = shape_offences(modules())
    assert not offences, f"{len(offences)} over the targets:\n" + "\n".join(offences)


# --- the measure itself ------------------------------------------------------------------------


def test_the_measure_finds_long_functions_nested_ones_and_methods(tmp_path):
    long_body = "\n".join(f"    x{i} = {i}" for i in range(45))
    source = tmp_path / "shape.py"
    source.write_text(
        f"def long():\n{long_body}\n\n\nclass C:\n    def short(self):\n        return 1\n\n"
        "    def outer(self):\n        def inner():\n            return 2\n\n        return inner\n"
    )
    lengths = {name: length for name, _, length in function_lengths(ast.parse(source.read_text()))}
    assert lengths == {"long": 46, "C.short": 2, "C.outer": 5, "C.outer.inner": 2}


def test_the_measure_lists_every_offence_in_one_message(tmp_path):
    big = tmp_path / "big.py"
    big.write_text("\n".join(f"x{i} = {i}" for i in range(501)) + "\n")
    long = tmp_path / "long.py"
    long.write_text("def long():\n" + "\n".join(f"    x{i} = {i}" for i in range(45)) + "\n")
    offences = shape_offences([big, long], root=tmp_path)
    assert offences == [
        "big.py: 501 lines (at most 500 per module)",
        "long.py:1 long: 46 lines (at most 40)",
        "median function length 46 (at most 10)",
    ]
