"""Where an export starts: a run folder or checkpoint, rebuilt and made deployable.

Deployable means: eval mode, no autograd, and pruning masks folded into plain weights (the
reparametrisation of ``torch.nn.utils.prune`` is a training device; exporters and runtimes must
see ordinary tensors). Channel-pruned checkpoints come back already shrunk (:mod:`lnpt.checkpoint`
replays their recorded cuts).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import CheckpointError
from ..models import create_model
from ..run_folder import RunFolder
from ..surgery.masks import Masks, get_masks, remove_masks


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the first of :meth:`RunFolder.checkpoint_candidates` inside a run
    folder: the trained student if there is one (a `lnpt prune` folder has only the untrained one)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        candidates = RunFolder(path).checkpoint_candidates()
        for file in candidates:
            if file.is_file():
                return file
        raise CheckpointError(f"{path} holds no checkpoint (looked for {', '.join(f.name for f in candidates)})")
    raise CheckpointError(f"{path} does not exist")


@dataclass
class ExportSource:
    """A rebuilt model ready to export, its checkpoint header and the masks it carried."""

    path: Path
    checkpoint: Checkpoint
    model: nn.Module            # deployable: eval, masks folded
    masks: Masks                # the unstructured masks folded into ``model`` ({} if none)
    built: nn.Module            # as rebuilt from the checkpoint, masks attached (for sparse counts)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.checkpoint.dataset.input_shape)  # type: ignore[return-value]

    def dense_reference(self, seed: int = 0) -> nn.Module:
        """The unpruned architecture (fresh weights): the baseline for latency comparisons."""
        c = self.checkpoint
        model = create_model(c.model_name, c.dataset.input_shape, c.dataset.num_classes, c.width, seed=seed)
        return deployable(model)


def deployable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with masks folded into its weights and grads off."""
    out = copy.deepcopy(model)
    remove_masks(out)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def load_source(path: str | Path, allow_code: bool = False) -> ExportSource:
    """The student a run folder or checkpoint holds, ready to export; ``allow_code`` lets a
    user model's recorded factory run (``--trust-model-code``)."""
    file = resolve_checkpoint(path)
    ckpt = load_checkpoint(file)
    model = ckpt.build(allow_code=allow_code)
    return ExportSource(file, ckpt, deployable(model), get_masks(model), model)


def example_batch(input_shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A fixed random batch (normalised inputs are roughly standard normal)."""
    return torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(seed))
