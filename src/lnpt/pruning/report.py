"""What a pruning step did, as JSON (for run folders and sweeps) and Markdown (for people)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..surgery.complexity import MAC_LABEL, Complexity
from ..surgery.masks import Masks
from .selection import CollapseEvent


@dataclass(frozen=True)
class LayerStat:
    name: str
    size: int
    kept: int

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.size if self.size else 0.0


@dataclass
class PruneReport:
    """Result of :func:`lnpt.pruning.prune_at_init`: the masks plus what they cost and saved."""

    criterion: str
    scope: str
    target_sparsity: float
    rounds: int
    batches: int
    score_batch_size: int
    label_source: str | None          # None: the criterion uses no labels
    layers: list[LayerStat]
    before: Complexity
    after: Complexity
    seconds: float                    # scoring wall time: guidance + all rounds of scores and selection
    teacher_seconds: float            # the part spent getting teacher guidance
    collapse_events: list[CollapseEvent] = field(default_factory=list)
    masks: Masks = field(default_factory=dict, repr=False)

    @property
    def sparsity(self) -> float:
        """Achieved fraction of prunable weights removed."""
        total = sum(layer.size for layer in self.layers)
        return 1.0 - sum(layer.kept for layer in self.layers) / total if total else 0.0

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion, "scope": self.scope, "target_sparsity": self.target_sparsity,
            "sparsity": self.sparsity, "rounds": self.rounds, "batches": self.batches,
            "score_batch_size": self.score_batch_size, "label_source": self.label_source,
            "prunable_weights": sum(layer.size for layer in self.layers),
            "kept_weights": sum(layer.kept for layer in self.layers),
            "layers": [{"name": x.name, "size": x.size, "kept": x.kept, "kept_fraction": x.kept_fraction}
                       for x in self.layers],
            "params_before": self.before.params, "params_after": self.after.params_nonzero,
            "macs_before": self.before.macs, "macs_after": self.after.macs_masked, "macs_label": MAC_LABEL,
            "seconds": self.seconds, "teacher_seconds": self.teacher_seconds,
            "collapse_events": [e.to_dict() for e in self.collapse_events],
        }

    def to_markdown(self) -> str:
        d = self.to_dict()
        lines = [
            f"# Pruning report: {self.criterion}",
            "",
            f"- sparsity: {d['sparsity']:.4%} of {d['prunable_weights']:,} prunable weights removed "
            f"(target {self.target_sparsity:.4%}, scope {self.scope}, {self.rounds} round(s))",
            f"- scoring: {self.batches} batch(es) of {self.score_batch_size}, labels: "
            f"{self.label_source or 'none'}, wall time {self.seconds:.3f} s "
            f"(teacher guidance {self.teacher_seconds:.3f} s)",
            f"- parameters: {d['params_before']:,} -> {d['params_after']:,}",
            f"- {MAC_LABEL}: {d['macs_before']:,} -> {d['macs_after']:,} per input",
            "",
            "| layer | weights | kept | kept fraction |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {x.name} | {x.size:,} | {x.kept:,} | {x.kept_fraction:.4f} |" for x in self.layers]
        lines.append("")
        if self.collapse_events:
            lines.append("Layer-collapse guard (a layer keeps at least `min_kept` weights):")
            lines += [f"- round {e.round}: {e.layer} would keep {e.would_keep} of {e.size}, kept {e.kept}"
                      for e in self.collapse_events]
        else:
            lines.append("Layer-collapse guard: not needed.")
        return "\n".join(lines) + "\n"
