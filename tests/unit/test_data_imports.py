"""data/ module boundaries (STYLE.md): no backbones, no trainer, no scripts; of meltr only the atomic file writer;
transformers only lazily; no import cycle between data modules; every pickle read goes through safe_pickle."""

from __future__ import annotations

import ast
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data"
FORBIDDEN = {"backbones", "evaluation", "scripts", "tests", "meltr"}
MELTR_ALLOWED = {"meltr.checkpoint"}  # atomic_write: the project's one atomic file writer (torch + stdlib only)
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


def _files() -> list[Path]:
    """Every module of the package, subpackages included."""
    return sorted(DATA.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(DATA).as_posix()


def test_data_modules_respect_the_boundaries() -> None:
    files = _files()
    assert {_name(p) for p in files} >= {"__init__.py", "safe_pickle.py", "text.py", "masking.py", "univl/youcook2.py",
                                         "univl/msrvtt.py", "violet/datasets.py", "allinone/msrvtt.py",
                                         "synthetic/univl.py"}
    for path in files:
        for module, at_top in _imports(path):
            root = module.split(".")[0]
            assert root not in FORBIDDEN or module in MELTR_ALLOWED, f"{_name(path)} imports {module}"
            if root == "transformers":
                assert not at_top and path.name == "text.py", f"{_name(path)} imports transformers at module level"


def _module(path: Path) -> str:
    parts = ("data", *path.relative_to(DATA).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_between_data_modules() -> None:
    # Lazy imports count too: a cycle hidden inside a function still ties the two modules together. A package
    # importing its own submodules from __init__ is how it re-exports, not a cycle.
    graph = {_module(p): {m for m, _ in _imports(p) if m.split(".")[0] == "data"} for p in _files()}
    graph = {k: {m for m in v if m in graph and not m.startswith(k + ".")} for k, v in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_no_plain_pickle_load_in_readers() -> None:
    for path in _files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pickle":
                assert node.attr not in {"load", "loads"}, f"{_name(path)}:{node.lineno} uses pickle.{node.attr}"
