"""Module boundaries (STYLE.md), checked on the source with ast: the plug-in stands alone."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STDLIB_OK = {"__future__", "abc", "argparse", "collections", "contextlib", "copy", "dataclasses", "enum", "functools",
             "io", "itertools", "json", "logging", "math", "os", "pathlib", "pickle", "random", "re", "statistics", "sys",
             "tempfile", "time", "types", "typing", "warnings", "numbers", "inspect", "textwrap", "difflib"}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module.split(".")[0], id(node) in top_level))
    return out


def test_meltr_imports_only_torch_stdlib_and_itself() -> None:
    for path in sorted((ROOT / "meltr").glob("*.py")):
        for mod, top in _imports(path):
            allowed = {"meltr", "torch"} | STDLIB_OK
            if path.name == "config.py":
                allowed |= {"yaml"}
            if path.name == "checkpoint.py" and not top:
                allowed |= {"numpy"}  # optional RNG state, imported lazily
            if path.name == "log.py" and not top:
                allowed |= {"tqdm"}  # optional progress bar
            assert mod in allowed, f"{path.name} imports {mod!r} ({'module level' if top else 'lazily'})"


def test_only_distributed_py_uses_torch_distributed() -> None:
    for path in sorted((ROOT / "meltr").glob("*.py")):
        if path.name == "distributed.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                names = [f"{node.value.id}.{node.attr}"]
            assert not any(n.startswith("torch.distributed") for n in names), f"{path.name}:{node.lineno} uses torch.distributed"


def test_meltr_never_imports_repo_packages() -> None:
    for path in sorted((ROOT / "meltr").glob("*.py")):
        mods = {m for m, _ in _imports(path)}
        assert not mods & {"backbones", "data", "evaluation", "scripts", "tests"}, path.name
