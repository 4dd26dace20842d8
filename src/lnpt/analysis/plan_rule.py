"""The rule of ``lnpt plan``: from short-probe learning gaps alone, pick the sparsest network
predicted to stay close to the densest candidate — and a way to check that rule against the
choice final test accuracies would have made.

Why the learning gap: across the pruned LeNet-5 networks of docs/learning-gap.md, the gap after
one epoch correlates with the final test accuracy at |Pearson| 0.91 (weight distance: 0.65).
The rule reads gaps only (measured on held-out *unlabeled* images against the teacher), so a
plan never needs a label. :func:`agreement` is the one place here that sees accuracies: it
scores the rule after the fact, on runs whose final accuracies are known (docs/PLAN.md).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: How a candidate's gap is compared with the reference gap (the densest candidate's).
RULES = ("relative", "additive")
#: Relative gap tolerance that best matched an accuracy tolerance of 2-3 points on the committed
#: LeNet-5 / Fashion-MNIST sweep; chosen on that same data (docs/PLAN.md gives the leave-one-seed-out
#: numbers, which are the honest estimate).
DEFAULT_TOLERANCE = 0.25


@dataclass(frozen=True)
class Candidate:
    """One probed network: how it was pruned and the learning gap its probe ended with."""

    criterion: str
    sparsity: float
    gap: float


@dataclass(frozen=True)
class Decision:
    """The plan's choice: the reference candidate, the gap bound and what passed it."""

    chosen: Candidate
    reference: Candidate
    bound: float
    predicted_good: tuple[Candidate, ...]


def gap_bound(reference_gap: float, tolerance: float, rule: str = "relative") -> float:
    """The largest gap still predicted to be within tolerance of ``reference_gap``."""
    if rule not in RULES:
        raise ValueError(f"unknown plan rule {rule!r}; known: {', '.join(RULES)}")
    if tolerance < 0:
        raise ValueError(f"the plan tolerance must be >= 0, got {tolerance}")
    return reference_gap * (1.0 + tolerance) if rule == "relative" else reference_gap + tolerance


def choose(candidates: Sequence[Candidate], tolerance: float = DEFAULT_TOLERANCE,
           rule: str = "relative") -> Decision:
    """Recommend the sparsest candidate whose gap is within the bound of the reference.

    The reference is the candidate with the smallest gap among those at the lowest sparsity
    (with several criteria, the best of the densest networks). Among predicted-good candidates
    at the highest sparsity, the smallest gap wins; the reference itself always passes.
    """
    if not candidates:
        raise ValueError("the plan needs at least one candidate")
    lowest = min(c.sparsity for c in candidates)
    reference = min((c for c in candidates if c.sparsity == lowest), key=lambda c: c.gap)
    bound = gap_bound(reference.gap, tolerance, rule)
    good = tuple(c for c in candidates if c.gap <= bound)
    chosen = max(good, key=lambda c: (c.sparsity, -c.gap))
    return Decision(chosen=chosen, reference=reference, bound=bound, predicted_good=good)


@dataclass(frozen=True)
class Outcome:
    """The plan's choice against the choice final accuracies make, for one group of runs."""

    plan_sparsity: float
    truth_sparsity: float
    plan_acc: float
    truth_acc: float
    reference_acc: float
    accuracy_tolerance: float

    @property
    def match(self) -> bool:
        return self.plan_sparsity == self.truth_sparsity

    @property
    def shortfall(self) -> float:
        """How far the plan's choice falls below the accepted accuracy (0 when it does not)."""
        return max(0.0, self.reference_acc - self.accuracy_tolerance - self.plan_acc)


def agreement(gaps: dict[float, float], accs: dict[float, float], tolerance: float,
              accuracy_tolerance: float, rule: str = "relative") -> Outcome:
    """Score the plan on one group (one criterion, seed and loss; keys are sparsities): the
    plan chooses from ``gaps``; the truth is the sparsest network whose final accuracy is within
    ``accuracy_tolerance`` of the densest network's."""
    decision = choose([Candidate("", s, g) for s, g in gaps.items()], tolerance, rule)
    densest = min(accs)
    accepted = [s for s, a in accs.items() if a >= accs[densest] - accuracy_tolerance]
    truth = max(accepted)
    plan = decision.chosen.sparsity
    return Outcome(plan_sparsity=plan, truth_sparsity=truth, plan_acc=accs[plan], truth_acc=accs[truth],
                   reference_acc=accs[densest], accuracy_tolerance=accuracy_tolerance)
