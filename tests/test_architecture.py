"""The layer contracts of docs/ARCHITECTURE.md, checked by import-linter on the real package,
and shown to fail when a forbidden import is added (on a copy of the package)."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
LINT = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _lint(src: Path, config: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(src), "PATH": str(Path(sys.executable).parent), "LC_ALL": "C.UTF-8",
           "LANG": "C.UTF-8"}
    return subprocess.run([LINT, "--config", str(config), "--no-cache"], cwd=src.parent, env=env,
                          capture_output=True, text=True, timeout=120)


def test_contracts_hold_on_the_package():
    result = _lint(SRC, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, forbidden, contract", [
    ("pruning/selection.py", "from ..train import loop", "lnpt layers point down only"),
    ("models/lenet.py", "from ..pruning import selection", "lnpt layers point down only"),
    ("features.py", "from . import checkpoint", "lnpt layers point down only"),
    ("teachers/local.py", "from ..serve import server", "a teacher is a source of guidance"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, forbidden, contract):
    copy = tmp_path / "src"
    shutil.copytree(SRC / "lnpt", copy / "lnpt", ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    target = copy / "lnpt" / module
    target.write_text(target.read_text() + "\n" + textwrap.dedent(forbidden) + "  # noqa\n")
    config = tmp_path / "pyproject.toml"
    shutil.copy(ROOT / "pyproject.toml", config)
    result = _lint(copy, config)
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout


def _deferred_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement inside a function body."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found += [(inner.lineno, alias.name) for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom):
                    found.append((inner.lineno, "." * inner.level + (inner.module or "")))
    return found


def test_no_import_inside_functions_except_deferred_optional_dependencies():
    """Imports inside functions hide cycles. Only an optional or heavy third-party package may
    be deferred, or an lnpt module that needs one, and such a line names the extra it needs."""
    optional = {"fastapi", "uvicorn", "onnxruntime", "onnx", "onnxscript", "matplotlib", "sklearn",
                "torch_pruning", "PIL", "torchvision", "timm", "httpx", "ray", "safetensors", "yaml",
                "tomllib", "tomli", "importlib"}
    offenders = []
    for path in sorted((SRC / "lnpt").rglob("*.py")):
        lines = path.read_text().splitlines()
        for lineno, module in _deferred_imports(path):
            said = lines[lineno - 1] + lines[lineno - 2]
            if module.lstrip(".").split(".")[0] in optional or "extra" in said:
                continue
            offenders.append(f"{path.relative_to(SRC)}:{lineno}: {lines[lineno - 1].strip()}")
    assert not offenders, "imports inside functions:\n" + "\n".join(offenders)


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_functions_stay_short_and_public_ones_take_a_settings_object():
    """No function of 60 lines or more; no public function with more than 8 parameters (past
    that, callers pass a settings object): the habits that keep the main path readable."""
    long, wide = [], []
    for path in sorted((SRC / "lnpt").rglob("*.py")):
        for fn in _functions(path):
            where = f"{path.relative_to(SRC)}:{fn.lineno} {fn.name}"
            if fn.end_lineno - fn.lineno + 1 >= 60:
                long.append(f"{where} ({fn.end_lineno - fn.lineno + 1} lines)")
            a = fn.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
            public = not fn.name.startswith("_") or fn.name == "__init__"  # a public class's constructor
            if len(names) > 8 and public:
                wide.append(f"{where} ({len(names)} parameters)")
    assert not long and not wide, "\n".join(long + wide)
