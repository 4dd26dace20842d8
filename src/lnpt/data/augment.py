"""Batch augmentation with torch ops: random crop with zero padding and horizontal flip.

Done on whole batches (one gather per batch) because per-sample Python transforms dominate
the epoch time of small networks on a CPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad by ``padding`` pixels and crop back to the original size at a random offset per image."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    # Offsets come from the (CPU) generator whatever the batch's device: same crops anywhere.
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (n, w)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    out = x.clone()
    out[flip] = out[flip].flip(-1)
    return out


def augment(x: torch.Tensor, padding: int, hflip: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    x = random_crop(x, padding, generator)
    if hflip:
        x = random_hflip(x, generator)
    return x
