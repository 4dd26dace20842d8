"""What a channel-pruning step did: per-layer channels before/after, params and MACs."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...surgery.channels import History
from ...surgery.complexity import MAC_LABEL, Complexity


@dataclass(frozen=True)
class ChannelStat:
    name: str
    in_before: int
    in_after: int
    out_before: int
    out_after: int

    def to_dict(self) -> dict:
        return {"name": self.name, "in_before": self.in_before, "in_after": self.in_after,
                "out_before": self.out_before, "out_after": self.out_after,
                "kept_fraction": self.out_after / self.out_before if self.out_before else 0.0}


@dataclass
class StructuredReport:
    """Result of :func:`lnpt.pruning.structured.prune_channels`."""

    criterion: str
    form: str                         # "native" or "filter-sum of <criterion>"
    scope: str
    channel_ratio: float
    min_channels: int
    round_to: int
    batches: int
    score_batch_size: int
    label_source: str | None
    groups: int
    layers: list[ChannelStat]
    before: Complexity
    after: Complexity
    weights_before: int               # Conv/Linear weights (the prunable kind) before/after
    weights_after: int
    seconds: float
    teacher_seconds: float
    history: History = field(default_factory=list, repr=False)
    budget: str = "layer-wise"        # global scope: "channels" or "macs" (see --channel-budget)
    global_ratio: float | None = None  # the global cut actually used (differs from the ratio with "macs")
    norm: str | None = None           # global scope: "mean" or "per-mac" (see --channel-norm)

    @property
    def sparsity(self) -> float:
        """Fraction of Conv/Linear weights physically removed (comparable to unstructured sparsity)."""
        return 1.0 - self.weights_after / self.weights_before if self.weights_before else 0.0

    def to_dict(self) -> dict:
        return {
            "structured": True, "criterion": self.criterion, "channel_form": self.form,
            "channel_scope": self.scope, "channel_ratio": self.channel_ratio, "channel_budget": self.budget,
            "global_ratio": self.global_ratio if self.scope == "global" else None, "channel_norm": self.norm,
            "min_channels": self.min_channels, "round_to": self.round_to, "groups": self.groups,
            "sparsity": self.sparsity, "batches": self.batches, "score_batch_size": self.score_batch_size,
            "label_source": self.label_source, "layers": [x.to_dict() for x in self.layers],
            "params_before": self.before.params, "params_after": self.after.params,
            "macs_before": self.before.macs, "macs_after": self.after.macs, "macs_label": MAC_LABEL,
            "speedup_macs": self.before.macs / self.after.macs if self.after.macs else None,
            "seconds": self.seconds, "teacher_seconds": self.teacher_seconds,
        }

    def to_markdown(self) -> str:
        d = self.to_dict()
        lines = [
            f"# Structured pruning report: {self.criterion} ({self.form})",
            "",
            f"- channels removed: ratio {self.channel_ratio:g}, scope {self.scope}"
            + (" (scores per MAC)" if self.norm == "per-mac" else "")
            + (f" at the layer-wise plan's MACs (global cut {self.global_ratio:.4f} of all channels)"
               if self.budget == "macs" and self.global_ratio is not None else "") + ", at least "
            f"{self.min_channels} kept per layer, kept counts rounded to multiples of {self.round_to}; "
            f"{self.groups} coupled channel group(s)",
            f"- scoring: {self.batches} batch(es) of {self.score_batch_size}, labels: "
            f"{self.label_source or 'none'}, wall time {self.seconds:.3f} s "
            f"(teacher guidance {self.teacher_seconds:.3f} s)",
            f"- parameters: {d['params_before']:,} -> {d['params_after']:,} "
            f"({d['params_after'] / max(d['params_before'], 1):.2%})",
            f"- {MAC_LABEL}: {d['macs_before']:,} -> {d['macs_after']:,} per input "
            f"({d['speedup_macs'] or 0:.2f}x fewer)",
            "",
            "| layer | in channels | out channels | kept (out) |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {x.name} | {x.in_before} -> {x.in_after} | {x.out_before} -> {x.out_after} | "
                  f"{x.out_after / max(x.out_before, 1):.2f} |" for x in self.layers]
        return "\n".join(lines) + "\n"
