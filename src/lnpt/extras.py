"""Optional dependencies ("extras"): which extra of ``lnpt`` brings which package, and the
one-line error a command gives when a package it needs is not installed.

Core ``lnpt`` prunes and trains. The teacher server (FastAPI, uvicorn), ONNX export and the
ONNX Runtime benchmark, figures and sweep reports (matplotlib, scipy) and scikit-learn's
bundled digits set are extras, so a training machine installs none of them. A command that
reaches for a missing one stops with ``... needs fastapi, which is not installed: pip install
'lnpt[serve]'`` (exit code 2, like every :class:`~lnpt.errors.LnptError`) instead of a
traceback. ``pyproject.toml`` declares the same map; ``tests/test_packaging.py`` keeps the two
in step.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import LnptError

# Top-level import name -> the extra that installs it.
EXTRA_OF: dict[str, str] = {
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "onnx": "deploy",
    "onnxscript": "deploy",
    "onnxruntime": "deploy",
    "matplotlib": "plots",
    "scipy": "plots",
    "sklearn": "digits",
    "timm": "timm",  # models by name (lnpt.models.user); not part of `all`
    "torchvision": "torchvision",
    "ray": "ray",  # lnpt sweep --backend ray (lnpt.experiments.ray_backend); not part of `all`
}


class MissingExtraError(LnptError):
    """A package of an optional extra is needed but not installed; the message names the extra."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs {package}, which is not installed: pip install 'lnpt[{extra}]'")
        self.package = package
        self.extra = extra


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (a package of an extra, e.g. ``"matplotlib.figure"``) and return it;
    raise :class:`MissingExtraError` naming ``purpose`` and the extra when it is not installed.

    Only the package itself being absent becomes the one-line error: a package that is there
    but fails inside (a broken install, a missing transitive dependency) keeps its traceback.
    """
    top = module.split(".")[0]
    if top not in EXTRA_OF:
        raise KeyError(f"{top!r} is not a package of any lnpt extra; known: {', '.join(sorted(EXTRA_OF))}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise  # something the package itself imports is missing
        raise MissingExtraError(top, EXTRA_OF[top], purpose) from None


def missing_extra(exc: ModuleNotFoundError, purpose: str = "this command") -> MissingExtraError | None:
    """The :class:`MissingExtraError` that ``exc`` stands for, or None when the missing module
    belongs to no extra (a real bug or a broken install, which should keep its traceback)."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    return MissingExtraError(top, extra, purpose) if extra else None
