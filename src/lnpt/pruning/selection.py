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

import numpy as np
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
    names = list(scores)
    sizes = [scores[n].numel() for n in names]
    # Ranked on the CPU whatever the device: the same scores give the same masks on every
    # device (selection and tie order may differ between backends).
    dtype = _ranking_dtype(scores)
    allv = torch.cat([scores[n].detach().reshape(-1).to("cpu", dtype) for n in names])
    if not all_finite([allv]):
        check_finite(scores)  # names the layer; a float64 -> float32 overflow cannot happen (see _ranking_dtype)
    alive_all = None
    if previous is not None and any(n in previous for n in names):
        alive_all = torch.cat([previous[n].reshape(-1).cpu() if n in previous else torch.ones(size)
                               for n, size in zip(names, sizes)]) != 0
        if bool(alive_all.all()):
            alive_all = None  # nothing pruned yet (a first round): rank without the filter
    ranked = _Ranked(allv, alive_all, sizes)
    if scope == "global":
        kept, events = _select_global(names, ranked, density, min_kept, round_index)
    else:
        kept, events = _select_layerwise(names, ranked, density, min_kept, round_index)
    masks = {n: k.to(scores[n].device, torch.float32).reshape(scores[n].shape) for n, k in zip(names, kept)}
    return masks, events


class _Ranked:
    """The scores as one flat CPU array (numpy view), which of them are still alive, and the
    per-layer split: what the selection functions below rank, built once per round."""

    def __init__(self, values: torch.Tensor, alive: torch.Tensor | None, sizes: list[int]):
        self.values = values.numpy()
        self.alive = None if alive is None else alive.numpy()
        self.sizes = sizes
        self.bounds = np.cumsum([0, *sizes]).tolist()

    def layer(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        lo, hi = self.bounds[i], self.bounds[i + 1]
        return self.values[lo:hi], None if self.alive is None else self.alive[lo:hi]

    def live_count(self, i: int) -> int:
        live = self.layer(i)[1]
        return self.sizes[i] if live is None else int(np.count_nonzero(live))


def _top(values: torch.Tensor | np.ndarray, k: int, alive: np.ndarray | None = None) -> torch.Tensor:
    """Boolean mask of the ``k`` largest values; ties at the threshold go to the lower index.

    ``alive`` (optional) marks the entries that compete: the others rank below every alive
    one, in position order, exactly as if their value were -inf (a pruned weight is revived
    only when k exceeds the alive count). Same result as a stable descending sort cut at k, in
    O(n): the k-th largest alive value is found by ``numpy.partition`` over the alive values
    only (introselect, linear in the worst case; SynFlow selects 100 times, on fewer alive
    weights each round); everything at or above it is kept, and when ties at it exceed the
    budget the last of them (by position) are dropped.
    """
    v = values.numpy() if isinstance(values, torch.Tensor) else values
    n = v.size
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool)
    if k >= n:
        return torch.ones(n, dtype=torch.bool)
    live = v if alive is None else v[alive]
    m = live.size
    if k >= m:  # every alive entry, then the first dead ones by position
        keep = alive.copy()
        keep[np.flatnonzero(~alive)[:k - m]] = True
        return torch.from_numpy(keep)
    threshold = np.partition(live, m - k)[m - k]
    keep = v >= threshold
    if alive is not None:
        keep &= alive
    excess = int(np.count_nonzero(keep)) - k  # ties at the threshold beyond the budget: drop the last
    if excess > 0:
        ties = v == threshold
        if alive is not None:
            ties &= alive
        keep[np.flatnonzero(ties)[-excess:]] = False
    return torch.from_numpy(keep)


def _select_global(names, ranked, density, min_kept, round_index):
    sizes = ranked.sizes
    k = keep_count(ranked.values.size, density)
    keep = _top(ranked.values, k, ranked.alive)
    flags = keep.numpy()
    counts = [int(np.count_nonzero(flags[lo:hi])) for lo, hi in zip(ranked.bounds, ranked.bounds[1:])]
    parts = list(torch.split(keep, sizes))
    # A layer is short when it keeps fewer than min(min_kept, its live weights).
    short = [i for i, c in enumerate(counts) if c < min_kept and c < ranked.live_count(i)]
    if not short:
        return parts, []
    floors = [min(min_kept, ranked.live_count(i)) for i in range(len(sizes))]
    would = {i: counts[i] for i in short}
    # Reserve each layer's best `floor` weights (score -> +inf), then rank again.
    guarded = ranked.values.copy()
    for i, floor in enumerate(floors):
        values, live = ranked.layer(i)
        guarded[ranked.bounds[i]:ranked.bounds[i + 1]][_top(values, floor, live).numpy()] = math.inf
    keep = _top(guarded, max(k, sum(floors)), ranked.alive)
    parts = list(torch.split(keep, sizes))
    events = [CollapseEvent(names[i], sizes[i], would[i], int(parts[i].sum()), round_index) for i in short]
    return parts, events


def _select_layerwise(names, ranked, density, min_kept, round_index):
    parts, events = [], []
    for i, name in enumerate(names):
        values, live = ranked.layer(i)
        k = keep_count(values.size, density)
        floor = min(min_kept, ranked.live_count(i))
        if k < floor:
            events.append(CollapseEvent(name, values.size, k, floor, round_index))
            k = floor
        parts.append(_top(values, k, live))
    return parts, events
