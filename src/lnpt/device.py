"""Where tensors live and in which precision the forward pass runs.

The ground floor for every command that computes: a device string from the user (``auto``,
``cpu``, ``cuda``, ``cuda:N``, ``mps``) becomes a :class:`torch.device` or a one-line
:class:`~lnpt.errors.ConfigError` naming the fix; a :class:`Placement` carries the student's
and the teacher's device, the precision and the memory layout explicitly (no global device),
and gives the autocast context, the gradient scaler and the batch transfer that go with them.

Nothing here changes what a CPU fp32 run computes: on the CPU in fp32 the autocast context is
a no-op, the scaler is disabled, and :meth:`Placement.to_device` returns the tensor itself.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """The device ``spec`` names, refused in one line when this machine does not have it.

    ``auto`` (and None) picks the first CUDA device when torch sees one, else the CPU; MPS is
    used only when asked for by name, because several ops lnpt needs fall back to the CPU there.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"unknown --device {spec!r}; known: {', '.join(DEVICES)}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        return _cuda(device, spec)
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {spec}: this machine has no usable MPS (Apple GPU) backend; "
                              "use --device cpu or --device auto")
        return torch.device("mps")
    raise ConfigError(f"unknown --device {spec!r}; known: {', '.join(DEVICES)}")


def _cuda(device: torch.device, spec: str) -> torch.device:
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no visible CUDA GPU"
        raise ConfigError(f"--device {spec}: CUDA is not available here ({build}); "
                          "use --device cpu or --device auto")
    index = 0 if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {spec}: there are only {torch.cuda.device_count()} CUDA device(s) "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


def check_precision(precision: str, device: torch.device) -> str:
    """``precision`` if it is known and runs on ``device``, else a one-line ConfigError."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown --precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 "
                          "support; use --precision fp16 or fp32")
    if precision == "fp16" and device.type == "mps":
        raise ConfigError("--precision fp16 needs CUDA or the CPU (no gradient scaler on MPS); use bf16 or fp32")
    return precision


@dataclass(frozen=True)
class Placement:
    """Where the student and the teacher run, and how.

    ``precision`` sets the autocast dtype of forward passes (``fp32``: none); ``channels_last``
    stores 4-d activations and weights NHWC, which tensor cores and oneDNN prefer for
    convolutions. Teacher and student may sit on different devices (a large teacher on a
    second GPU): guidance is moved to the student's device before the loss reads it.
    """

    device: torch.device = torch.device("cpu")
    teacher_device: torch.device | None = None
    precision: str = "fp32"
    channels_last: bool = False

    @property
    def teacher(self) -> torch.device:
        """The teacher's device (the student's unless set)."""
        return self.teacher_device if self.teacher_device is not None else self.device

    @property
    def pinned(self) -> bool:
        """Whether host batches are pinned and copied without blocking (only to CUDA)."""
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager[Any]:
        """The context forward passes run in: autocast to bf16/fp16, or nothing for fp32."""
        return autocast(self.device, self.precision)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for fp16 (bf16 has fp32's range and needs none)."""
        return grad_scaler(self.device, self.precision)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on the student's device (see :func:`to_device`)."""
        return to_device(tensor, self.device, self.channels_last)

    def module(self, model: nn.Module) -> nn.Module:
        """Move ``model`` (in place) to the student's device and memory layout."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model


def placement(device: str | None = "auto", precision: str = "fp32", channels_last: bool = False,
              teacher_device: str | None = None) -> Placement:
    """A checked :class:`Placement` from the command-line strings."""
    student = resolve_device(device)
    teacher = resolve_device(teacher_device) if teacher_device else None
    return Placement(student, teacher, check_precision(precision, student), channels_last)


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """Autocast for ``precision`` on ``device``'s type; a null context for fp32, so an fp32 run
    executes exactly the code it did before mixed precision existed."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[check_precision(precision, device)])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler for ``device``, enabled only for fp16: without it small fp16 gradients
    underflow to zero. Disabled, ``scale``/``step``/``update`` are plain pass-throughs."""
    return torch.amp.GradScaler(device.type, enabled=check_precision(precision, device) == "fp16")


def to_device(tensor: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """``tensor`` on ``device``. A CPU tensor bound for CUDA is pinned first and copied without
    blocking, so the copy overlaps the previous step's kernels; a tensor already there is
    returned as is (no copy on the CPU)."""
    if tensor.device != device:
        if device.type == "cuda" and tensor.device.type == "cpu":
            tensor = tensor.pin_memory().to(device, non_blocking=True)
        else:
            tensor = tensor.to(device)
    if channels_last and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def device_of(model: nn.Module) -> torch.device:
    """The device ``model``'s parameters (or buffers) are on; the CPU for a module with none.
    Code that creates tensors for a model (all-ones inputs, masks, adapters) asks this."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def cpu_state(state: Any) -> Any:
    """A state dict with every tensor detached and on the CPU (nested dicts and lists too), so a
    checkpoint saved on a GPU loads on a machine without one."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()  # type: ignore[return-value]
    if isinstance(state, dict):
        return {k: cpu_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(cpu_state(v) for v in state)
    return state
