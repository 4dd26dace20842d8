"""Why do LNPT channel scores keep a subset that trains worse than random? A redundancy check.

docs/BENCHMARKS.md (issue 7): over 8 seeds, ResNet-20 layer-wise at ratio 0.5, the LNPT channel
scores train significantly worse than random channels. One guess: ranking by gradient flow
keeps channels that carry the same signal. This measures, for each criterion's kept set at
seeds 0-2, the mean |correlation| between kept channels' BatchNorm outputs (one batch of 256
training images, train-mode statistics), the fraction of them a ReLU would pass, and the
kept filters' L2 norm relative to their layer's mean (under BatchNorm a larger filter learns
more slowly).

    OMP_NUM_THREADS=1 python sweeps/research/channel_redundancy.py
"""
import torch, numpy as np
from lnpt.config import PruneConfig
from lnpt.data import load_data
from lnpt.models import create_model
from lnpt.teachers import load_teacher
from lnpt.pruning.structured import ChannelGraph, channel_criterion
from lnpt.pruning.structured.api import _scoring_inputs
from lnpt.pruning.structured.selection import plan_removal
torch.set_num_threads(1)
data = load_data("fashion-mnist", train_subset=5000, val_fraction=0.05)
teacher = load_teacher("shipped", "fashion-mnist")
out = {}
for seed in (0, 1, 2):
    model = create_model("resnet20", data.info.input_shape, 10, 1.0, seed=seed)
    graph = ChannelGraph(model, data.info.input_shape); groups = graph.groups()
    # activations of every norm member (post-BN) on one batch
    _, x = next(iter(data.train.unlabeled().batches(256, shuffle=True, generator=torch.Generator().manual_seed(99),
                                                     limit=1)))
    acts = {}
    hooks = [model.get_submodule(m.module).register_forward_hook(lambda mod, i, o, n=m.module: acts.__setitem__(n, o.detach()))
             for g in groups for m in g.members("norm")]
    model.train()
    with torch.no_grad(): model(x)
    for h in hooks: h.remove()
    for crit in ("lnpt", "lnpt-fm", "magnitude", "random", "snip"):
        c = channel_criterion(crit)
        cfg = PruneConfig(criterion=crit, structured=True, score_tau=4.0)
        inputs, _ = _scoring_inputs(c, cfg, data.train.unlabeled(), teacher, None, seed)
        scores = c.score(model, groups, inputs)
        plan = plan_removal(groups, scores, 0.5, "layer", 1, 8)
        corr, kfrac, norm_ratio = [], [], []
        for g in groups:
            drop = set(plan[g.root]); keep = [i for i in range(g.size) if i not in drop]
            for m in g.members("producer"):
                w = model.get_submodule(m.module).weight.detach()
                norms = w.reshape(w.shape[0], -1).norm(dim=1)
                kept = [ch for ch, r in zip(m.channels, m.roots) if r not in drop]
                norm_ratio.append(float(norms[kept].mean() / norms.mean()))
            for m in g.members("norm"):
                a = acts[m.module]  # N, C, H, W
                idx = [ch for ch, r in zip(m.channels, m.roots) if r in keep]
                f = a[:, idx].transpose(0, 1).reshape(len(idx), -1)
                f = f - f.mean(1, keepdim=True)
                f = f / (f.norm(dim=1, keepdim=True) + 1e-8)
                cc = (f @ f.T).abs(); n = len(idx)
                corr.append(float((cc.sum() - n) / (n * (n - 1))))
                # fraction of positive (post-ReLU alive) units among kept channels
                kfrac.append(float((a[:, idx] > 0).float().mean()))
        out.setdefault(crit, []).append((np.mean(corr), np.mean(kfrac), np.mean(norm_ratio)))
for crit, v in out.items():
    v = np.array(v)
    print(f"{crit:10s} mean |corr| among kept {v[:, 0].mean():.4f} (per seed {np.round(v[:, 0], 4)}), "
          f"ReLU-active {v[:, 1].mean():.4f}, kept filter L2 norm / layer mean {v[:, 2].mean():.4f}")
