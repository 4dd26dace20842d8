"""lnpt.distributed: one-process contexts are exact no-ops; under a real two-process gloo group
(torchrun) masks come from rank 0, sums are reduced, shares of a batch are disjoint and give
the one-process gradient, errors on rank 0 reach every rank, and only rank 0 writes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from _torchrun import torchrun
from lnpt.data.info import DatasetInfo
from lnpt.data.streamed import StreamSettings, open_unlabeled
from lnpt.distributed import (SINGLE, Distributed, all_reduce_sums, broadcast_object, broadcast_tensors,
                              epoch_generator, launched, main_writes, process_group, read_env, run_on_main,
                              shard_batch, share_weight, unwrap, wrap)
from lnpt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_launcher_variables_are_read_and_checked():
    assert not launched({}) and read_env({}) == (0, 1, 0)
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert launched(env) and read_env(env) == (1, 2, 1)
    with pytest.raises(ConfigError, match="inconsistent launcher variables RANK=2 WORLD_SIZE=2"):
        read_env({**env, "RANK": "2"})
    with pytest.raises(ConfigError, match="must be integers"):
        read_env({**env, "RANK": "one"})


def test_a_single_process_context_touches_nothing():
    with process_group(torch.device("cpu"), environ={}) as ctx:
        assert ctx == SINGLE and ctx.is_main and not ctx.active
        masks = {"w": torch.ones(2)}
        assert broadcast_tensors(ctx, masks) is masks
        assert broadcast_object(ctx, [1]) == [1]
        assert all_reduce_sums(ctx, {"loss": 0.1}) == {"loss": 0.1}
        index = torch.arange(5)
        assert shard_batch(index, ctx) is index and shard_batch(index, None) is index
        assert share_weight(5, ctx) == 1.0
        assert run_on_main(ctx, lambda: 7) == 7
        with main_writes(ctx) as writer:
            assert writer
        net = nn.Linear(2, 2)
        assert wrap(net, ctx, sync_batchnorm=True) is net and unwrap(net) is net
    assert not torch.distributed.is_initialized()


def test_sync_batchnorm_is_refused_off_cuda_in_one_line():
    ctx = Distributed(0, 2, 0, torch.device("cpu"), "gloo")  # an active context; wrap refuses before DDP
    with pytest.raises(ConfigError, match="--sync-batchnorm needs CUDA"):
        wrap(nn.BatchNorm1d(2), ctx, sync_batchnorm=True)


@pytest.mark.parametrize("n, world", [(7, 2), (8, 3), (2, 3), (1, 2)])
def test_shares_cover_the_batch_once_and_weights_give_the_global_mean(n, world):
    index = torch.arange(n)
    ranks = [Distributed(r, world, r, torch.device("cpu"), "gloo") for r in range(world)]
    shares = [(shard_batch(index, ctx), share_weight(n, ctx)) for ctx in ranks]
    kept = sorted(i for share, w in shares if w > 0 for i in share.tolist())
    assert kept == list(range(n))
    # DDP averages the ranks' gradients: sum_r w_r * mean_r / world must be the global mean.
    values = torch.randn(n, dtype=torch.float64)
    averaged = sum(w * values[share].mean() for share, w in shares) / world
    assert torch.isclose(averaged, values.mean())
    assert all(share.numel() >= 1 for share, _ in shares)  # every rank takes a step


@pytest.mark.slow
def test_collectives_on_a_real_two_process_gloo_group(tmp_path):
    result = torchrun(str(ROOT / "tests" / "_ddp_collectives.py"), str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["backend"] for r in ranks} == {"gloo"}
    assert ranks[0]["masks"] == ranks[1]["masks"]
    torch.manual_seed(100)  # rank 0's draw
    assert ranks[0]["masks"]["a"] == (torch.rand(3, 4) > 0.5).float().tolist()
    assert all(r["object"] == {"from": 0} for r in ranks)
    assert all(r["sums"] == {"loss": 4.5, "seen": 20.0} for r in ranks)
    assert ranks[0]["order"] == ranks[1]["order"]
    assert ranks[0]["shard"] == [0, 2, 4] and ranks[1]["shard"] == [1, 3]
    assert ranks[0]["tiny"] == [[9], 2.0] and ranks[1]["tiny"] == [[9], 0.0]
    for r in ranks:
        assert r["grad"] == pytest.approx(r["full_grad"], rel=1e-5, abs=1e-7)
        assert r["averaged"] == [1.5, 1.5]
        assert r["main_value"] == "computed on rank 0"
        assert r["error"] == "nothing left to prune"
        assert r["exists_after_barrier"]
    assert (tmp_path / "written.txt").read_text() == "once"


def _two_ranks() -> list[Distributed]:
    return [Distributed(r, 2, r, torch.device("cpu"), "gloo") for r in range(2)]


def _check_shares_rebuild_the_batches(view, batch_size: int) -> None:
    full = list(view.batches(batch_size, shuffle=True, generator=epoch_generator(5, 1)))
    per_rank = [list(view.batches(batch_size, shuffle=True, generator=epoch_generator(5, 1), shard=ctx))
                for ctx in _two_ranks()]
    assert len(per_rank[0]) == len(per_rank[1]) == len(full)  # every rank takes every step
    for (index, x), share0, share1 in zip(full, *per_rank):
        assert torch.equal(share0[0], index[0::2]) and torch.equal(share1[0], index[1::2])
        assert torch.equal(share0[1], x[0::2]) and torch.equal(share1[1], x[1::2])


def test_in_memory_batches_are_shared_between_ranks(digits):
    _check_shares_rebuild_the_batches(digits.train.unlabeled(), 64)
    labeled = list(digits.train.batches(100, shuffle=True, generator=epoch_generator(0, 0), shard=_two_ranks()[1]))
    assert all(torch.equal(y, digits.train.labels[index]) for index, _, y in labeled)


def test_streamed_batches_are_shared_between_ranks_and_decoded_once(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(11):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    info = DatasetInfo("toy", (3, 8, 8), 4, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    _check_shares_rebuild_the_batches(open_unlabeled([tmp_path], info, StreamSettings(num_workers=0)), 4)


def test_a_view_kept_on_a_device_gives_the_same_batches(digits):
    view = digits.train.unlabeled()
    moved = view.to(torch.device("cpu"))
    assert moved.device == torch.device("cpu") and moved.fingerprint() == view.fingerprint()
    for (i, x), (j, y) in zip(view.batches(64, generator=epoch_generator(0, 0), shuffle=True),
                              moved.batches(64, generator=epoch_generator(0, 0), shuffle=True)):
        assert torch.equal(i, j) and torch.equal(x, y)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_dataset_on_the_gpu_gives_the_cpu_batches_augmented_too(digits):
    cuda = digits.train.to(torch.device("cuda"))
    for (i, x, y), (j, gx, gy) in zip(digits.train.batches(64, True, True, epoch_generator(0, 0)),
                                      cuda.batches(64, True, True, epoch_generator(0, 0))):
        assert gx.device.type == "cuda" and torch.equal(i, j) and torch.equal(y, gy.cpu())
        torch.testing.assert_close(gx.cpu(), x)
