"""The paper and review packages import only the engine core and each other (review on paper, never back)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[3] / "operator" / "kubescientist"
ALLOWED = {"paper": ("kubescientist.core", "kubescientist.paper"),
           "review": ("kubescientist.core", "kubescientist.paper", "kubescientist.review")}


def imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_paper_and_review_import_only_the_core_below_them():
    for package, allowed in ALLOWED.items():
        for path in (PACKAGE / package).rglob("*.py"):
            for module in imports(path):
                if module.startswith("kubescientist"):
                    assert module.startswith(allowed), f"{path.name} imports {module}"
