"""Scores -> masks: the one function every criterion's scores go through.

Criteria only score; choosing what to keep lives here, so all criteria are compared under the
same rules: exact kept counts (ties at the threshold are broken by position, so equal scores
never make the count drift), global or layer-wise scope, a layer-collapse guard, and the exponential
density schedule of iterative pruning (docs/METHOD.md, "Pruning criterion").
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch

from ..errors import PruningError
from ..surgery.masks import Masks

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class CollapseEvent:
    """A layer the ranking alone would have left with fewer than ``min_kept`` weights."""

    layer: str
    size: int
    would_keep: int
    kept: int
    round: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def keep_count(total: int, density: float) -> int:
    """How many of ``total`` weights a density keeps: ``round(density * total)``, half up.

    One formula everywhere, so a test (or a reader) can predict the count exactly.
    """
    return min(total, max(0, int(math.floor(density * total + 0.5))))


def density_schedule(density: float, rounds: int) -> list[float]:
    """Per-round densities ``d^(k/K)``, k = 1..K: exponential, ending exactly at ``d``.

    Pruning a constant fraction of what is left each round (rather than a constant count)
    is what SynFlow and iterative magnitude pruning do; it avoids cutting most of the network
    in the first round, when the scores are least informed by the mask.
    """
    if rounds < 1:
        raise PruningError(f"rounds must be >= 1, got {rounds}")
    if not 0.0 < density <= 1.0:
        raise PruningError(f"density must be in (0, 1], got {density}")
    out = [density ** (k / rounds) for k in range(1, rounds + 1)]
    out[-1] = density
    return out


def check_finite(scores: dict[str, torch.Tensor], criterion: str = "criterion") -> None:
    """Refuse NaN/inf scores: ranking them would silently produce an arbitrary mask."""
    if all_finite(scores.values()):
        return
    for name, s in scores.items():
        if not bool(torch.isfinite(s).all()):
            bad = int((~torch.isfinite(s)).sum())
            raise PruningError(
                f"{criterion} produced {bad} non-finite score(s) (NaN or inf) for {name}; the student's "
                "weights, the scoring inputs or the teacher's outputs hold NaN/inf or overflow "
                "(try another seed, a smaller --score-tau, or --score-distance mse)")


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every entry of every tensor is finite, in a few operations in the common case.

    A finite grand total proves it (inf and NaN propagate through sums); a non-finite total,
    which overflow of finite values alone may give, is settled element by element.
    """
    floats = [t.detach() for t in tensors if t.is_floating_point() or t.is_complex()]
    if not floats or bool(torch.isfinite(torch.stack([t.sum() for t in floats]).sum())):
        return True
    return all(bool(torch.isfinite(t).all()) for t in floats)


def _ranking_dtype(scores: dict[str, torch.Tensor]) -> torch.dtype:
    """float32 when every score converts to it exactly (float32, float16, bfloat16): the
    ranking then compares the very same values as in float64, at half the memory traffic.
    Anything else (float64, integers) is ranked in float64, as it always was."""
    exact32 = (torch.float32, torch.float16, torch.bfloat16)
    return torch.float32 if all(s.dtype in exact32 for s in scores.values()) else torch.float64


def select_masks(scores: dict[str, torch.Tensor], density: float, scope: str = "global",
                 min_kept: int = 1, previous: Masks | None = None,
                 round_index: int = 0) -> tuple[Masks, list[CollapseEvent]]:
    """Keep the highest scores: ``keep_count(total, density)`` of them, globally or per layer.

    ``previous`` masks (iterative pruning) exclude weights already pruned, so a later round
    never revives one. The collapse guard reserves each layer's ``min_kept`` best weights
    before the ranking fills the rest of the budget, so the global count stays exact; if the
    reservations alone exceed the budget, they win and the event says so.
    """
    if scope not in SCOPES:
        raise PruningError(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")
    if not scores:
        raise PruningError("nothing to prune: the model has no prunable weights under these settings")
    check_finite(scores)
    names = list(scores)
    sizes = [scores[n].numel() for n in names]
    dtype = _ranking_dtype(scores)
    # Ranked on the CPU whatever the device: the same scores give the same masks on every
    # device (kthvalue and tie order may differ between backends).
    allv = torch.cat([scores[n].detach().reshape(-1).to("cpu", dtype) for n in names])
    before = [previous[n].reshape(-1).cpu() if previous is not None and n in previous
              else torch.ones(size, dtype=torch.bool) for n, size in zip(names, sizes)]
    alive_all = torch.cat(before) != 0
    allv.masked_fill_(~alive_all, -math.inf)
    flat = list(torch.split(allv, sizes))  # views of allv, one per layer
    alive = list(torch.split(alive_all, sizes))
    if scope == "global":
        kept, events = _select_global(names, allv, flat, alive, density, min_kept, round_index)
    else:
        kept, events = _select_layerwise(names, flat, alive, density, min_kept, round_index)
    masks = {n: k.to(scores[n].device, torch.float32).reshape(scores[n].shape) for n, k in zip(names, kept)}
    return masks, events


def _top(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest values; ties at the threshold go to the lower index.

    O(n): the k-th largest value is the threshold; everything above it is kept and the
    remaining budget is filled with the first positions equal to it. Same result as a stable
    descending sort cut at k, several times faster (SynFlow selects 100 times).
    """
    n = values.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool)
    if k >= n:
        return torch.ones(n, dtype=torch.bool)
    threshold = _kth_largest(values, k)
    keep = values > threshold
    need = k - int(keep.sum())
    if need > 0:
        keep[(values == threshold).nonzero().flatten()[:need]] = True
    return keep


_SAMPLE = 16384  # values sampled to bracket the k-th largest (below 8x that, plain kthvalue)


def _kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The exact k-th largest of ``values`` (1 <= k <= numel), as ``torch.kthvalue`` gives it,
    at a fraction of its cost on large inputs.

    An evenly strided sample brackets the k-th largest in [lo, hi] (sample ranks a few standard
    deviations either side of k's). Sorted descending, the values are: ``above`` values > hi,
    then exactly the band (lo, hi], then the values equal to lo, then the rest. If rank k falls
    in the band, the answer is the band's (k - above)-th largest, a selection over a few percent
    of the values; if it falls among the values equal to lo (pruned weights at -inf, ties), it
    is lo. A bracket that misses (adversarial order) only costs the plain selection.
    """
    n = values.numel()
    stride = n // _SAMPLE
    if stride < 8:
        return torch.kthvalue(values, n - k + 1).values
    sample = values[::stride]
    m = sample.numel()
    p = k / n
    margin = 4.0 * math.sqrt(m * p * (1.0 - p)) + 16.0
    top_rank, low_rank = math.floor(p * m - margin), math.ceil(p * m + margin)
    if top_rank < 1 or low_rank > m:
        return torch.kthvalue(values, n - k + 1).values
    hi = torch.kthvalue(sample, m - top_rank + 1).values
    lo = torch.kthvalue(sample, m - low_rank + 1).values
    above = int((values > hi).sum())
    band = values[(values > lo) & (values <= hi)]
    if above < k <= above + band.numel():
        return torch.kthvalue(band, band.numel() - (k - above) + 1).values
    if above + band.numel() < k <= int((values >= lo).sum()):
        return lo
    return torch.kthvalue(values, n - k + 1).values


def _select_global(names, allv, flat, alive, density, min_kept, round_index):
    sizes = [f.numel() for f in flat]
    k = keep_count(allv.numel(), density)
    keep = _top(allv, k)
    parts = list(torch.split(keep, sizes))
    counts = torch.stack([p.sum() for p in parts]).tolist()
    # A layer is short when it keeps fewer than min(min_kept, its live weights).
    short = [i for i, c in enumerate(counts) if c < min_kept and c < int(alive[i].sum())]
    if not short:
        return parts, []
    floors = [min(min_kept, int(a.sum())) for a in alive]
    would = {i: counts[i] for i in short}
    # Reserve each layer's best `floor` weights (score -> +inf), then rank again.
    guarded = []
    for f, m in zip(flat, floors):
        g = f.clone()
        g[_top(f, m)] = math.inf
        guarded.append(g)
    keep = _top(torch.cat(guarded), max(k, sum(floors)))
    parts = list(torch.split(keep, sizes))
    events = [CollapseEvent(names[i], sizes[i], would[i], int(parts[i].sum()), round_index) for i in short]
    return parts, events


def _select_layerwise(names, flat, alive, density, min_kept, round_index):
    parts, events = [], []
    for name, f, a in zip(names, flat, alive):
        k = keep_count(f.numel(), density)
        floor = min(min_kept, int(a.sum()))
        if k < floor:
            events.append(CollapseEvent(name, f.numel(), k, floor, round_index))
            k = floor
        parts.append(_top(f, k))
    return parts, events
