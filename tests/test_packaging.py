"""Lean packaging: the core install prunes and trains; the server, ONNX deploy, figures/reports
and the digits set are extras, and a command that needs a missing one fails in one line naming
it. A missing extra is simulated for real in a child process (``sys.modules[name] = None`` makes
every import of that package fail exactly as when it is not installed); the full core-only
install into a fresh venv is a manual check (docs/DEPENDENCIES.md)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from test_analysis_gap import ACC, GAP, WD, write_run

from lnpt.errors import LnptError
from lnpt.extras import EXTRA_OF, MissingExtraError, require
from lnpt.teachers import SHIPPED_DIR

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = ("serve", "deploy", "plots", "digits")
# Distribution name on the index -> import name, where they differ.
IMPORT_NAME = {"scikit-learn": "sklearn", "torch-pruning": "torch_pruning", "pyyaml": "yaml", "pillow": "PIL"}


def _dist(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def _run_without(blocked: set[str], body: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh interpreter where the ``blocked`` packages cannot be imported."""
    code = f"import sys\nfor _n in {sorted(blocked)!r}:\n    sys.modules[_n] = None\n" + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


# --- pyproject.toml ---------------------------------------------------------------------------

def test_core_dependencies_hold_no_extra() -> None:
    core = {_dist(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not core & {"fastapi", "uvicorn", "onnx", "onnxscript", "onnxruntime", "matplotlib", "scikit-learn", "scipy"}
    assert {"torch", "numpy", "torch-pruning", "safetensors", "httpx"} <= core
    assert "torch==2.13.0" in PYPROJECT["project"]["dependencies"]


def test_extras_match_the_map_the_errors_use() -> None:
    """Every package of an extra is what ``lnpt.extras`` names for it, and ``all`` is them all."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    features = set(optional) - {"all", "test"}
    for extra in features:
        for requirement in optional[extra]:
            dist = _dist(requirement)
            assert EXTRA_OF[IMPORT_NAME.get(dist, dist)] == extra, requirement
    assert set(EXTRA_OF.values()) == features and set(EXTRAS) <= features
    assert optional["all"] == [f"lnpt[{','.join(EXTRAS)}]"]
    assert {_dist(r) for r in optional["test"]} == {"pytest", "import-linter"}


def test_license_is_an_spdx_string_and_its_files_exist() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] and all(list(ROOT.glob(p)) for p in project["license-files"])
    build = PYPROJECT["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in build)


def test_every_package_data_glob_matches_a_file() -> None:
    for package, globs in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        folder = SRC / package.replace(".", "/")
        for pattern in globs:
            assert list(folder.glob(pattern)), f"package-data {package}: {pattern!r} matches nothing"


def test_makefile_installs_every_extra() -> None:
    assert "pip install -q -e '.[all,test]'" in (ROOT / "Makefile").read_text()


# --- the core install: nothing optional is imported until it is needed ------------------------

# One child process per set of missing packages runs every case (each child pays for importing
# torch once); it prints one JSON object: import failures, then {case: [exit code, stderr]}.
CHILD = """
import contextlib, importlib, io, json, os, pkgutil, socket
from pathlib import Path
import numpy as np
import lnpt
from lnpt.cli import main
from lnpt.data import mnist_like
from lnpt.extras import MissingExtraError

bad = []
for m in pkgutil.walk_packages(lnpt.__path__, "lnpt."):
    # the FastAPI app (and its admission control) is loaded by `teacher serve` only; __main__ runs the command
    if m.name not in ("lnpt.serve.server", "lnpt.serve.admission", "lnpt.__main__"):
        try:
            importlib.import_module(m.name)
        except ImportError as exc:
            bad.append(f"{m.name}: {exc}")

def call(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    return [rc, err.getvalue()]

def extra_of(fn, *args):
    try:
        fn(*args)
    except MissingExtraError as exc:
        return [2, str(exc)]
    except Exception as exc:  # the package is there (a half-installed extra) and did its own thing
        return [1, repr(exc)]
    return [0, ""]

out = {"bad": bad, "cases": {}}
for name, argv in CASES.items():
    out["cases"][name] = call(argv)
from lnpt.export import ort_session
from lnpt.experiments.paired import t_interval
out["cases"]["ort_session"] = extra_of(ort_session, "model.onnx")
out["cases"]["paired_interval"] = extra_of(t_interval, np.array([1.0, 2.0, 3.0]))

# No Fashion-MNIST anywhere (no system copy, download refused): the demo falls back to digits.
os.environ.pop("LNPT_DATA", None)
os.environ["HOME"] = str(Path(TMP) / "home")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
mnist_like.SYSTEM_DIRS["fashion-mnist"] = [Path(TMP) / "nowhere"]
mnist_like.MIRRORS["fashion-mnist"] = [f"http://127.0.0.1:{port}/"]
out["cases"]["demo"] = call(["demo", "--quick", "--out", str(Path(TMP) / "demo")])
print(json.dumps(out))
"""


def _child(blocked: set[str], tmp: Path) -> dict:
    runs = [write_run(tmp / f"run{i}", crit, 0, ACC, GAP, WD) for i, crit in enumerate(["lnpt", "snip"])]
    cases = {
        "teacher_serve": ["teacher", "serve", "--port", "0"],
        "export_onnx": ["export", str(SHIPPED_DIR / "fashion-mnist.pt"), "--format", "onnx", "--out", str(tmp / "x")],
        "gap": ["gap", *map(str, runs), "--out", str(tmp / "gap")],
        "teacher_train_digits": ["teacher", "train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp / "t")],
    }
    result = _run_without(blocked, f"CASES = {cases!r}\nTMP = {str(tmp)!r}\n" + CHILD, tmp)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def core_only(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every package of every extra missing: what ``pip install lnpt`` gives."""
    return _child(set(EXTRA_OF), tmp_path_factory.mktemp("core"))


@pytest.fixture(scope="module")
def partly(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One package of an extra missing while the rest of it is there (a half-installed extra)."""
    return _child({"uvicorn", "onnxscript", "scipy"}, tmp_path_factory.mktemp("partly"))


def _assert_names_extra(case: list, extra: str) -> None:
    rc, err = case
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].endswith(f"pip install 'lnpt[{extra}]'") and "Traceback" not in err


def test_every_module_but_the_server_imports_without_any_extra(core_only: dict) -> None:
    assert core_only["bad"] == []


@pytest.mark.skipif(not (SHIPPED_DIR / "fashion-mnist.pt").is_file(), reason="no shipped teacher")
@pytest.mark.parametrize("case, extra", [
    ("teacher_serve", "serve"), ("export_onnx", "deploy"), ("ort_session", "deploy"), ("gap", "plots"),
    ("paired_interval", "plots"), ("teacher_train_digits", "digits"), ("demo", "digits"),
])
def test_a_command_without_its_extra_names_it_in_one_line(core_only: dict, case: str, extra: str) -> None:
    _assert_names_extra(core_only["cases"][case], extra)


def test_the_demo_says_why_it_needs_the_digits_fallback(core_only: dict) -> None:
    err = core_only["cases"]["demo"][1]
    assert "fashion-mnist not found" in err.lower() and "note:" not in err


@pytest.mark.skipif(not (SHIPPED_DIR / "fashion-mnist.pt").is_file(), reason="no shipped teacher")
def test_one_missing_package_of_an_extra_is_named(partly: dict) -> None:
    cases = partly["cases"]
    _assert_names_extra(cases["teacher_serve"], "serve")
    assert "needs uvicorn" in cases["teacher_serve"][1]
    _assert_names_extra(cases["export_onnx"], "deploy")
    assert "needs onnxscript" in cases["export_onnx"][1]
    _assert_names_extra(cases["paired_interval"], "plots")
    assert cases["gap"][0] == 0, cases["gap"][1]  # `lnpt gap` needs matplotlib only (numpy correlations)


def test_require_names_the_extra_and_keeps_real_import_errors(tmp_path: Path) -> None:
    assert require("matplotlib.figure", "x").Figure is not None
    with pytest.raises(KeyError, match="not a package of any lnpt extra"):
        require("numpy", "x")
    result = _run_without({"pydantic"}, """
        from lnpt.extras import MissingExtraError, require
        try:
            require("fastapi", "the server")
        except MissingExtraError:
            print("wrongly blamed the extra")
        except ImportError as exc:
            print(exc.name)
        """, tmp_path)
    assert result.stdout.strip() == "pydantic", result.stderr  # fastapi is there, broken: say so
    assert issubclass(MissingExtraError, LnptError)  # the CLI prints it in one line, exit code 2
