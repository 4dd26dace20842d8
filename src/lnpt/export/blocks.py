"""Will ONNX Runtime pad this model's channels on this CPU? The channel block of its kernels.

ONNX Runtime's CPU convolutions (its MLAS library, on x86-64) run in a blocked channel layout,
NCHWc: 16 channels per block on CPUs with AVX-512F, 8 on the others. A convolution whose
output channel count is not a multiple of the block is computed padded up to it, and
``ReorderOutput`` nodes strip the padding again, so a pruned layer of 8 channels costs about
what a 16-channel one does on AVX-512. That is why a channel-pruned ResNet-20 at ratio 0.5
(first stage 16 -> 8 channels) gets 2.5x instead of about 2.9x on the same CPU
(docs/BENCHMARKS.md). ``lnpt bench-latency`` says so when it applies, instead of leaving the
shortfall to be found with ``--profile``.

The block is read from the CPU flags the kernel reports (Linux ``/proc/cpuinfo``); elsewhere,
and on non-x86 CPUs (where it depends on how ONNX Runtime was built), it is unknown and
nothing is claimed.
"""
from __future__ import annotations

import platform
from pathlib import Path

from torch import nn

_X86 = {"x86_64", "amd64", "i386", "i686"}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU feature flags of the first processor in ``cpuinfo``, or None when unreadable."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def nchwc_block(flags: set[str] | None = None, machine: str | None = None) -> tuple[int, str] | None:
    """``(channels per block, instruction set)`` of ONNX Runtime's x86 convolutions here, or None.

    ``flags`` and ``machine`` default to this computer's (given, they describe another)."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine not in _X86:
        return None
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return None
    if "avx512f" in flags:
        return 16, "AVX-512"
    return 8, "AVX2" if "avx2" in flags else "SSE/AVX"


def _blocked_convolutions(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The convolutions that run in the blocked layout. Depthwise and other grouped ones are
    left out: ONNX Runtime gives them their own kernels."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1]


def padded_convolutions(model: nn.Module, block: int) -> list[tuple[str, int]]:
    """``(name, output channels)`` of the convolutions whose output is padded to ``block``."""
    return [(name, m.out_channels) for name, m in _blocked_convolutions(model) if m.out_channels % block]


def padding_note(model: nn.Module, block: tuple[int, str] | None) -> str | None:
    """A sentence for the latency report when ``model`` has convolutions padded on this CPU."""
    if block is None:
        return None
    size, isa = block
    padded = padded_convolutions(model, size)
    if not padded:
        return None
    convs = len(_blocked_convolutions(model))
    widths = ", ".join(str(c) for c in sorted({c for _, c in padded}))
    return (f"note: this CPU ({isa}) runs ONNX Runtime's convolutions in blocks of {size} channels; "
            f"{len(padded)} of the pruned model's {convs} convolutions have {widths} output channels, "
            f"not a multiple of {size}, and are computed padded up to it, so the ONNX Runtime speedup "
            f"stays below the MAC reduction (--profile shows the padding; docs/DEPLOYMENT.md, Latency)")
