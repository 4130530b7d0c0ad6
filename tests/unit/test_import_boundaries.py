"""Module boundaries (STYLE.md), checked on the source with ast: the plug-in stands alone."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STDLIB_OK = {"__future__", "abc", "argparse", "collections", "contextlib", "copy", "dataclasses", "enum", "functools",
             "io", "itertools", "json", "logging", "math", "os", "pathlib", "pickle", "random", "re", "statistics", "sys",
             "tempfile", "time", "types", "typing", "warnings", "numbers", "inspect", "textwrap", "difflib",
             "resource",  # resource: peak RSS for the epoch records (POSIX; log.py falls back without it)
             "datetime",  # datetime: the trainer's ETA in its progress log lines
             "hashlib", "ctypes",  # buffer.py: sha256 fingerprints of buffered batches, over the tensors' bytes in place
             "threading"}  # hypergrad.full_precision: a thread-local flag


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


# Third-party imports a file of meltr may make beyond torch and the stdlib: (modules, lazily only?).
# The integrations import their framework at module level: importing one is opting in to it.
OPTIONAL = {
    "config.py": ({"yaml"}, False),
    "checkpoint.py": ({"numpy", "safetensors"}, True),  # optional RNG state; weights-only export (meltr[export])
    "log.py": ({"tqdm"}, True),  # optional progress bar
    "plot.py": ({"matplotlib"}, True),  # optional extra meltr[plot], imported when a figure is built
    "integrations/hf.py": ({"transformers", "accelerate"}, False),  # meltr[hf]
    "integrations/lightning.py": ({"pytorch_lightning", "lightning"}, False),  # meltr[lightning]
}


def _meltr_files() -> list[tuple[str, Path]]:
    """(path relative to meltr/, path) of every module of the package, subpackages included."""
    return [(path.relative_to(ROOT / "meltr").as_posix(), path) for path in sorted((ROOT / "meltr").rglob("*.py"))]


def test_meltr_imports_only_torch_stdlib_and_itself() -> None:
    for name, path in _meltr_files():
        extra, lazy_only = OPTIONAL.get(name, (set(), False))
        for mod, top in _imports(path):
            allowed = {"meltr", "torch"} | STDLIB_OK
            if not (lazy_only and top):
                allowed |= extra
            assert mod in allowed, f"{name} imports {mod!r} ({'module level' if top else 'lazily'})"


def test_import_meltr_imports_no_integration() -> None:
    # With the rule above, this keeps `import meltr` free of transformers and Lightning: only the
    # integrations import them, and nothing else in meltr imports an integration at module level.
    for name, path in _meltr_files():
        if name.startswith("integrations/"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names = [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            assert not any(m.startswith("meltr.integrations") for m in mods + names), f"{name}:{node.lineno} imports an integration"


def test_only_distributed_py_uses_torch_distributed() -> None:
    for name, path in _meltr_files():
        if name == "distributed.py":
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
            assert not any(n.startswith("torch.distributed") for n in names), f"{name}:{node.lineno} uses torch.distributed"


def test_meltr_never_imports_repo_packages() -> None:
    for name, path in _meltr_files():
        mods = {m for m, _ in _imports(path)}
        assert not mods & {"backbones", "data", "evaluation", "scripts", "tests"}, name


def _package_imports(package: str) -> dict[str, set[str]]:
    """Repo-level packages imported by each file of ``package`` (full dotted names for backbones)."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        mods = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module)
        out[str(path.relative_to(ROOT))] = mods
    return out


def test_backbones_depend_only_on_common_and_the_meltr_interface() -> None:
    for path, mods in _package_imports("backbones").items():
        for m in mods:
            top = m.split(".")[0]
            assert top not in {"data", "evaluation", "scripts", "tests"}, f"{path} imports {m}"
            if top == "meltr":
                # the contract, and the stdlib-only helper that keeps renamed config fields working
                assert m in {"meltr.interface", "meltr.deprecation"}, f"{path} imports {m} (backbones may use meltr.interface only)"
            if m.startswith("backbones."):
                parts = path.split("/")
                own = parts[1] if len(parts) > 2 else ""
                target = m.split(".")[1]
                assert target in {"common", own}, f"{path} imports {m}: a backbone may not import another backbone"


def test_data_and_evaluation_do_not_import_backbones_or_the_trainer() -> None:
    for package in ("data", "evaluation"):
        for path, mods in _package_imports(package).items():
            for m in mods:
                assert m.split(".")[0] not in {"backbones", "scripts"}, f"{path} imports {m}"
                assert not m.startswith("meltr.trainer"), f"{path} imports {m}"
