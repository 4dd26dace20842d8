"""Every kind of teacher file lnpt reads, in one table: a new format is one entry.

``load_teacher`` (the package's entry point) handles remote servers and ``shipped``; any other
source goes to the first format here that claims it. Order matters: content and suffix checks
come before the fallback, an lnpt checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import ConfigError
from ..models import is_user_reference
from .base import Teacher
from .factory import load_factory_teacher
from .local import LocalTeacher
from .onnx_graph import OnnxTeacher
from .scripted import TorchScriptTeacher, is_torchscript


@dataclass(frozen=True)
class TeacherOptions:
    """What some formats need beside the source; each format says which of these it reads."""

    sidecar: str | None = None    # JSON with input size, normalisation, classes (default: beside the file)
    weights: str | None = None    # a factory teacher's state_dict or .safetensors file
    features: str | None = None   # ONNX: the penultimate tensor's name (default: found in the graph)
    model_args: Mapping[str, Any] = field(default_factory=dict)  # a factory's extra keyword arguments
    trust_code: bool = False      # an lnpt checkpoint of a user model: run the factory it names

    def given(self) -> set[str]:
        return {f.name for f in fields(self) if getattr(self, f.name)}


@dataclass(frozen=True)
class TeacherFormat:
    name: str
    claims: Callable[[str], bool]
    load: Callable[[str, TeacherOptions], Teacher]
    reads: frozenset[str] = frozenset()


FORMATS: tuple[TeacherFormat, ...] = (
    TeacherFormat("onnx", lambda s: s.lower().endswith(".onnx"),
                  lambda s, o: OnnxTeacher.from_file(s, o.sidecar, o.features), frozenset({"sidecar", "features"})),
    TeacherFormat("torchscript", lambda s: is_torchscript(Path(s)),
                  lambda s, o: TorchScriptTeacher.from_file(s, o.sidecar), frozenset({"sidecar"})),
    TeacherFormat("factory", lambda s: is_user_reference(s) and not Path(s).exists(),
                  lambda s, o: load_factory_teacher(s, o.weights, o.sidecar, o.model_args),
                  frozenset({"sidecar", "weights", "model_args"})),
    TeacherFormat("checkpoint", lambda s: True, lambda s, o: LocalTeacher.from_checkpoint(s, o.trust_code),
                  frozenset({"trust_code"})),
)


def teacher_format(source: str) -> TeacherFormat:
    """The format that reads ``source`` (an lnpt checkpoint when nothing else claims it)."""
    return next(f for f in FORMATS if f.claims(source))


def load_teacher_source(source: str, options: TeacherOptions | None = None) -> Teacher:
    """A teacher from a file or factory reference; options a format does not read are refused
    (a sidecar given for an lnpt checkpoint would otherwise be silently ignored)."""
    options = options or TeacherOptions()
    fmt = teacher_format(source)
    unused = sorted(options.given() - fmt.reads)
    if unused:
        raise ConfigError(f"teacher {source} is read as {fmt.name}, which takes no {', '.join(unused)}; "
                          f"drop {'it' if len(unused) == 1 else 'them'}")
    return fmt.load(source, options)
