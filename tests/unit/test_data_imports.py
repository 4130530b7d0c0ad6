"""data/ module boundaries (STYLE.md): no backbones, no trainer, no scripts; transformers only lazily."""

from __future__ import annotations

import ast
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data"
FORBIDDEN = {"backbones", "evaluation", "scripts", "tests", "meltr"}
THIRD_PARTY_OK = {"torch", "numpy"}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(dotted module, imported at module level?) for every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, id(node) in top))
    return out


def test_data_modules_respect_the_boundaries() -> None:
    files = sorted(DATA.glob("*.py"))
    assert {p.name for p in files} >= {"__init__.py", "safe_pickle.py", "text.py", "masking.py", "youcook2.py",
                                       "msrvtt.py", "synthetic.py"}
    for path in files:
        for module, at_top in _imports(path):
            root = module.split(".")[0]
            assert root not in FORBIDDEN, f"{path.name} imports {module}"
            if root == "transformers":
                assert not at_top and path.name == "text.py", f"{path.name} imports transformers at module level"


def test_no_plain_pickle_load_in_readers() -> None:
    for path in sorted(DATA.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pickle":
                assert node.attr not in {"load", "loads"}, f"{path.name}:{node.lineno} uses pickle.{node.attr}"
