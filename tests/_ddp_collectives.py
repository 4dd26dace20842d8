"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2``: exercises every
collective of lnpt.distributed on a real gloo group and writes what each rank saw to
``<out>/rank<R>.json`` (the test compares the ranks)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from lnpt.device import resolve_device
from lnpt.distributed import (all_reduce_sums, average_gradients, broadcast_object, broadcast_tensors, epoch_generator,
                              main_writes, process_group, run_on_main, shard_batch, share_weight, unwrap, wrap)
from lnpt.errors import PruningError


def _masks(ctx) -> dict:
    torch.manual_seed(100 + ctx.rank)  # every rank draws different masks; rank 0's must win
    masks = {"a": (torch.rand(3, 4) > 0.5).float(), "b": (torch.rand(5) > 0.5).float()}
    broadcast_tensors(ctx, masks)
    return {k: v.tolist() for k, v in masks.items()}


def _gradient(ctx) -> tuple[list, list]:
    """DDP gradient of the weighted share of a 7-sample batch, and the one-process gradient."""
    torch.manual_seed(0)
    net = nn.Linear(3, 1)
    x = torch.randn(7, 3)
    full = nn.Linear(3, 1)
    full.load_state_dict(net.state_dict())
    full(x).pow(2).mean().backward()
    model = wrap(net, ctx)
    share = shard_batch(torch.arange(7), ctx)
    (model(x[share]).pow(2).mean() * share_weight(7, ctx)).backward()
    return unwrap(model).weight.grad.flatten().tolist(), full.weight.grad.flatten().tolist()


def _error_everywhere(ctx) -> str:
    def fail():
        raise PruningError("nothing left to prune")
    try:
        run_on_main(ctx, fail)
    except PruningError as exc:
        return str(exc)
    return "no error"


def main(out: Path) -> None:
    with process_group(resolve_device("cpu")) as ctx:
        seen = {"rank": ctx.rank, "world": ctx.world_size, "backend": ctx.backend, "masks": _masks(ctx)}
        seen["object"] = broadcast_object(ctx, {"from": ctx.rank})
        seen["sums"] = all_reduce_sums(ctx, {"loss": 1.5 * (ctx.rank + 1), "seen": 10.0})
        seen["order"] = torch.randperm(10, generator=epoch_generator(3, 2)).tolist()
        seen["shard"] = shard_batch(torch.arange(5), ctx).tolist()
        seen["tiny"] = [shard_batch(torch.tensor([9]), ctx).tolist(), share_weight(1, ctx)]
        seen["grad"], seen["full_grad"] = _gradient(ctx)
        outside = nn.Parameter(torch.zeros(2))
        outside.grad = torch.full((2,), float(ctx.rank + 1))
        average_gradients(ctx, [outside])
        seen["averaged"] = outside.grad.tolist()
        seen["main_value"] = run_on_main(ctx, lambda: f"computed on rank {ctx.rank}")
        seen["error"] = _error_everywhere(ctx)
        with main_writes(ctx) as writer:
            if writer:
                (out / "written.txt").write_text("once")
        seen["exists_after_barrier"] = (out / "written.txt").is_file()
        (out / f"rank{ctx.rank}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
