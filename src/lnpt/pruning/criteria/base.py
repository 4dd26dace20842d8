"""The criterion interface: what a criterion receives, what it returns, how it is registered.

A criterion is one function ``score(model, masks, inputs) -> {param name: scores}`` (higher =
keep) registered with :func:`register_criterion`. It receives image batches, the teacher's
guidance for them (computed once, under no_grad) and, only if it asks for labels, an explicit
label function — never a labeled dataset — so the label-free path cannot reach true labels by
construction. It must leave ``model`` unchanged: the helpers here score a private copy.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol, Sequence

import torch
from torch import nn

from ...config import PruneConfig
from ...registry import Registry
from ...surgery.masks import Masks, remove_masks
from ...teachers.base import Guidance

LabelFn = Callable[[int], torch.Tensor]
"""Labels of scoring batch ``i`` (teacher pseudo-labels, or true labels for the supervised
comparison). Handed only to criteria registered with ``needs="labels"``."""

Needs = Literal["none", "teacher", "labels"]


@dataclass(frozen=True)
class ScoringInputs:
    """Everything a criterion may use besides the model and the current masks."""

    batches: tuple[torch.Tensor, ...]              # normalised image tensors, no labels
    guidance: tuple[Guidance, ...] | None          # teacher outputs per batch (needs="teacher")
    labels: LabelFn | None                          # label function (needs="labels" only)
    input_shape: tuple[int, int, int]               # (C, H, W): SynFlow's all-ones input
    cfg: PruneConfig                                # the shared pruning settings (score_bn, ...)
    generator: torch.Generator                      # the only randomness a criterion may use
    settings: Any = None                            # the criterion's own settings (its ``settings`` class)


class ScoreFn(Protocol):
    def __call__(self, model: nn.Module, masks: Masks, inputs: ScoringInputs) -> dict[str, torch.Tensor]:
        ...


@dataclass(frozen=True)
class CriterionSpec:
    """A registered criterion: its score function, what it needs from the pipeline and the
    settings it reads: a frozen dataclass whose fields name settings of the ``score`` section
    (:class:`lnpt.config.ScoreConfig`), handed to it as ``inputs.settings``. Score settings
    it does not declare are refused when given for it."""

    name: str
    score: ScoreFn
    needs: Needs = "none"
    default_rounds: int = 1
    signed: bool = False  # scores are not magnitudes (GraSP-style): higher still means keep
    settings: type | None = None


CRITERIA: Registry[CriterionSpec] = Registry("criterion")


def register_criterion(name: str, *, needs: Needs = "none", default_rounds: int = 1, signed: bool = False,
                       settings: type | None = None) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator: ``@register_criterion("snip", needs="labels")`` adds a score function."""

    def decorator(fn: ScoreFn) -> ScoreFn:
        CRITERIA.register(name)(CriterionSpec(name, fn, needs, default_rounds, signed, settings))
        return fn

    return decorator


def scoring_copy(model: nn.Module, masks: Masks,
                 inputs: ScoringInputs | None = None) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """A private, plain copy of ``model`` with ``masks`` multiplied into its weights.

    Scoring on a copy is how every criterion leaves the scored model untouched (weights,
    BatchNorm running statistics, train/eval flag, masks). Masks already attached to the
    model are folded in, so pruned weights are zero and score zero. Only the masked weights
    require grad: gradients of everything else are never needed. The copy is in train mode
    (BatchNorm uses batch statistics, as during the training the mask is chosen for), unless
    ``inputs.cfg.score_bn`` is "frozen" (see :func:`freeze_batchnorm`).
    """
    work = copy.deepcopy(model)
    remove_masks(work)
    work.train()
    for p in work.parameters():
        p.requires_grad_(False)
        p.grad = None
    params = dict(work.named_parameters())
    missing = sorted(set(masks) - set(params))
    if missing:
        raise KeyError(f"masks name parameters the model does not have: {', '.join(missing)}")
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].device, params[name].dtype))
    if inputs is not None and inputs.cfg.score_bn == "frozen":
        freeze_batchnorm(work, inputs.batches)
    chosen = {name: params[name] for name in masks}
    for p in chosen.values():
        p.requires_grad_(True)
    return work, chosen


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def freeze_batchnorm(work: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Estimate every BatchNorm's statistics on ``batches`` (an exact average over them), then
    put ``work`` in eval mode so scoring uses those statistics as constants.

    Why: in train mode BatchNorm divides a filter's output by its own batch norm, so the loss
    does not change when a filter is scaled, and its gradient is orthogonal to the filter
    (sum_j theta_j g_j = 0 per filter). Saliencies |theta * g| then see only how a weight turns
    its filter, not how much it contributes. With the statistics fixed the network is an
    ordinary function of its weights at the scale the data gives it.
    """
    norms = [m for m in work.modules() if isinstance(m, _NORMS) and m.track_running_stats]
    if not norms:
        work.eval()
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts equally
    work.train()
    for x in batches:
        work(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    work.eval()


def grad_or_zero(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``autograd.grad(..., allow_unused=True)`` output with None (unreached weight) as zeros."""
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def accumulated_grad(params: dict[str, nn.Parameter],
                     losses: Callable[[int], torch.Tensor], n_batches: int) -> list[torch.Tensor]:
    """Mean over batches of d loss_i / d theta (docs/METHOD.md, "Pruning criterion": accumulate before the product, so
    the score depends less on single samples)."""
    plist = list(params.values())
    total = [torch.zeros_like(p) for p in plist]
    for i in range(n_batches):
        grads = torch.autograd.grad(losses(i), plist, allow_unused=True)
        for t, g in zip(total, grad_or_zero(grads, plist)):
            t.add_(g.detach())
    return [t / max(n_batches, 1) for t in total]


def hessian_gradient_product(params: dict[str, nn.Parameter],
                             losses: Callable[[int], torch.Tensor], n_batches: int) -> list[torch.Tensor]:
    """``H g`` of the mean loss, with ``g`` its (stopped) gradient: GraSP's gradient-flow term.

    Two passes as in GraSP's reference code: first ``g`` without a graph, then per batch the
    gradient with a graph, dotted with ``g`` and differentiated again.
    """
    plist = list(params.values())
    g = accumulated_grad(params, losses, n_batches)
    hg = [torch.zeros_like(p) for p in plist]
    for i in range(n_batches):
        grads = torch.autograd.grad(losses(i), plist, create_graph=True, allow_unused=True)
        z = sum(((gi * si).sum() for gi, si in zip(grads, g) if gi is not None),
                plist[0].new_zeros(()))
        if not z.requires_grad:  # no weight reaches the loss twice (e.g. a linear model)
            continue
        second = torch.autograd.grad(z, plist, allow_unused=True)
        for t, h in zip(hg, grad_or_zero(second, plist)):
            t.add_(h.detach())
    return [t / max(n_batches, 1) for t in hg]
