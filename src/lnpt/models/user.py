"""Models users bring: a factory reference instead of a zoo name.

A reference is ``package.module:function``, ``path/to/file.py:function``, or
``timm:NAME`` / ``torchvision:NAME`` when those optional packages are installed. The factory is
called as ``function(num_classes=..., input_shape=(C, H, W), **model_args)`` and must return an
``nn.Module`` that honours the feature contract (:mod:`.features`); that is checked at once on a
zero batch, so a model that breaks it fails before any data is read.

A built model remembers its reference and arguments (:data:`FACTORY_ATTR`) so a checkpoint of
it records how to rebuild it. Rebuilding imports the module or runs the file named there, as
training did: load checkpoints of user models only from sources you trust with that code.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .features import forward_with_features

PACKAGES = ("timm", "torchvision")
FACTORY_ATTR = "lnpt_factory"  # {"reference": str, "args": dict} on every model built here

_FORM = "package.module:function or path/to/file.py:function"


def is_user_reference(name: str) -> bool:
    """Zoo names never hold a colon; every factory reference does."""
    return ":" in name


def named_by_user(recorded: str, given: str | None) -> bool:
    """Whether a checkpoint's recorded factory ``recorded`` is the code the user named in this
    command (``given``, e.g. the run's --model): rebuilding it then runs nothing new."""
    return bool(given) and is_user_reference(given) and canonical_reference(given) == recorded


def canonical_reference(ref: str) -> str:
    """``ref`` with a file path made absolute, so a checkpoint rebuilds from any directory."""
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py"):
        return f"{Path(target).expanduser().resolve()}:{attr}"
    return ref


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _load_file(path: Path, ref: str) -> ModuleType:
    if not path.is_file():
        raise ConfigError(f"model factory file {path} does not exist (from {ref!r}); "
                          f"give {_FORM}")
    resolved = path.expanduser().resolve()
    # Registered in sys.modules under a name derived from the path: dataclasses and pickling
    # in the user's file look their module up there.
    name = "lnpt_user_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} cannot be imported as Python (from {ref!r})")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001  user code may raise anything while importing
        sys.modules.pop(name, None)
        raise ConfigError(f"importing {path} for model {ref!r} failed ({_first_line(exc)}); "
                          "fix the file") from None
    return module


def _import(target: str, ref: str) -> ModuleType:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"module {exc.name or target!r} for model {ref!r} is not importable: install "
                          f"it, add its folder to PYTHONPATH, or give path/to/file.py:function") from None
    except Exception as exc:  # noqa: BLE001  user code may raise anything while importing
        raise ConfigError(f"importing {target} for model {ref!r} failed ({_first_line(exc)})") from None


def _package_factory(package: str, name: str) -> Callable[..., nn.Module]:
    """timm or torchvision, built randomly initialised with the data's classes and channels."""
    try:
        if package == "timm":
            import timm  # optional extra "timm"
        else:
            import torchvision  # optional extra "torchvision"
    except ImportError:
        raise ConfigError(f"model {package}:{name} needs {package}, which is not installed: "
                          f"pip install 'lnpt[{package}]'") from None

    def build(num_classes: int, input_shape: tuple[int, int, int], **kwargs: Any) -> nn.Module:
        if package == "timm":
            return timm.create_model(name, pretrained=False, num_classes=num_classes,
                                     in_chans=input_shape[0], **kwargs)
        return torchvision.models.get_model(name, num_classes=num_classes, **kwargs)

    return build


def resolve_factory(ref: str) -> Callable[..., nn.Module]:
    """The callable a reference names; a one-line :class:`ConfigError` when it cannot be found."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ConfigError(f"model reference {ref!r} is not {_FORM}")
    if target in PACKAGES:
        return _package_factory(target, attr)
    if not attr.isidentifier():
        raise ConfigError(f"model reference {ref!r}: {attr!r} is not a function name; give {_FORM}")
    module = _load_file(Path(target), ref) if target.endswith(".py") else _import(target, ref)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{target} has no function {attr!r} (from model reference {ref!r})")
    return fn


def check_feature_contract(model: nn.Module, input_shape: tuple[int, int, int], num_classes: int,
                           label: str) -> int:
    """Run a zero batch (eval mode, no gradient) and return the penultimate feature size; a
    model whose logits or features do not fit fails with a :class:`ConfigError`."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits, features = forward_with_features(model, torch.zeros(2, *input_shape))
    except Exception as exc:  # noqa: BLE001  a user's forward may raise anything
        raise ConfigError(f"model {label} breaks the feature contract on inputs of shape "
                          f"{tuple(input_shape)} ({_first_line(exc)}); see docs/MODELS.md") from None
    finally:
        model.train(was_training)
    if tuple(logits.shape) != (2, num_classes):
        raise ConfigError(f"model {label} returns logits of shape {tuple(logits.shape[1:])} per "
                          f"sample, expected ({num_classes},) for {num_classes} classes")
    return int(features.shape[1])


def build_user_model(ref: str, input_shape: tuple[int, int, int], num_classes: int,
                     model_args: Mapping[str, Any] | None = None) -> nn.Module:
    """Call the factory, check the feature contract, and tag the model with its reference."""
    args = dict(model_args or {})
    fn = resolve_factory(ref)
    shape = tuple(int(v) for v in input_shape)
    try:
        model = fn(num_classes=int(num_classes), input_shape=shape, **args)
    except Exception as exc:  # noqa: BLE001  user code may raise anything
        raise ConfigError(f"model factory {ref!r} failed when called with num_classes={num_classes}, "
                          f"input_shape={shape}{''.join(f', {k}={v!r}' for k, v in args.items())} "
                          f"({_first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {ref!r} returned {type(model).__name__}, not a torch.nn.Module")
    check_feature_contract(model, shape, int(num_classes), repr(ref))  # type: ignore[arg-type]
    setattr(model, FACTORY_ATTR, {"reference": canonical_reference(ref), "args": args})
    return model
