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
#: A probe whose predicted classes agree with the teacher's on fewer than this many times chance
#: (1 / classes) of the held-out images has not started to learn. On the full-budget LeNet-5 grid
#: (docs/PLAN.md) every such probe sat at chance (0.10) and every learning one at 0.45 or more.
DEFAULT_MIN_AGREEMENT = 2.0


class NothingLearned(ValueError):
    """No probe started to learn, so the gaps cannot say which network stays close to a good one."""


@dataclass(frozen=True)
class Candidate:
    """One probed network: how it was pruned and the learning gap its probe ended with."""

    criterion: str
    sparsity: float
    gap: float
    #: fraction of held-out images where the probe predicts the teacher's class (None: not measured)
    agreement: float | None = None

    def learned(self, min_agreement: float) -> bool:
        return self.agreement is None or self.agreement >= min_agreement


@dataclass(frozen=True)
class Decision:
    """The plan's choice: the reference candidate, the gap bound and what passed it."""

    chosen: Candidate
    reference: Candidate
    bound: float
    predicted_good: tuple[Candidate, ...]
    #: probes that had not started to learn: never the reference, never recommended
    stalled: tuple[Candidate, ...] = ()


def gap_bound(reference_gap: float, tolerance: float, rule: str = "relative") -> float:
    """The largest gap still predicted to be within tolerance of ``reference_gap``."""
    if rule not in RULES:
        raise ValueError(f"unknown plan rule {rule!r}; known: {', '.join(RULES)}")
    if tolerance < 0:
        raise ValueError(f"the plan tolerance must be >= 0, got {tolerance}")
    return reference_gap * (1.0 + tolerance) if rule == "relative" else reference_gap + tolerance


def choose(candidates: Sequence[Candidate], tolerance: float = DEFAULT_TOLERANCE,
           rule: str = "relative", min_agreement: float = 0.0) -> Decision:
    """Recommend the sparsest candidate whose gap is within the bound of the reference.

    The reference is the candidate with the smallest gap among those at the lowest sparsity
    (with several criteria, the best of the densest networks). Among predicted-good candidates
    at the highest sparsity, the smallest gap wins; the reference itself always passes.

    Candidates whose teacher agreement is below ``min_agreement`` have not started to learn:
    their gap measures nothing yet, and a relative bound around a stalled reference's large gap
    lets through networks that never train (docs/PLAN.md, random pruning on the full-budget
    grid). They are set aside; the reference is the best learning candidate at the lowest
    sparsity where one learned. Raises :class:`NothingLearned` when none did.
    """
    if not candidates:
        raise ValueError("the plan needs at least one candidate")
    learning = [c for c in candidates if c.learned(min_agreement)]
    stalled = tuple(c for c in candidates if not c.learned(min_agreement))
    if not learning:
        best = max(c.agreement for c in stalled if c.agreement is not None)
        raise NothingLearned(f"no probe started to learn: the best agreed with the teacher on {best:.1%} "
                             f"of held-out images (needed {min_agreement:.1%})")
    lowest = min(c.sparsity for c in learning)
    reference = min((c for c in learning if c.sparsity == lowest), key=lambda c: c.gap)
    bound = gap_bound(reference.gap, tolerance, rule)
    good = tuple(c for c in learning if c.gap <= bound)
    chosen = max(good, key=lambda c: (c.sparsity, -c.gap))
    return Decision(chosen=chosen, reference=reference, bound=bound, predicted_good=good, stalled=stalled)


@dataclass(frozen=True)
class Outcome:
    """The plan's choice against the choice final accuracies make, for one group of runs."""

    plan_sparsity: float | None  # None: the plan refused (no probe had started to learn)
    truth_sparsity: float
    plan_acc: float | None
    truth_acc: float
    reference_acc: float
    accuracy_tolerance: float

    @property
    def refused(self) -> bool:
        return self.plan_sparsity is None

    @property
    def match(self) -> bool:
        return self.plan_sparsity == self.truth_sparsity

    @property
    def shortfall(self) -> float:
        """How far the plan's choice falls below the accepted accuracy (0 when it does not, and
        when it refused: a refusal costs another probe, not accuracy)."""
        if self.plan_acc is None:
            return 0.0
        return max(0.0, self.reference_acc - self.accuracy_tolerance - self.plan_acc)


def agreement(gaps: dict[float, float], accs: dict[float, float], tolerance: float,
              accuracy_tolerance: float, rule: str = "relative",
              agreements: dict[float, float] | None = None, min_agreement: float = 0.0) -> Outcome:
    """Score the plan on one group (one criterion, seed and loss; keys are sparsities): the
    plan chooses from ``gaps`` (and the probes' teacher ``agreements``, when given); the truth
    is the sparsest network whose final accuracy is within ``accuracy_tolerance`` of the
    densest network's."""
    agreements = agreements or {}
    try:
        decision = choose([Candidate("", s, g, agreements.get(s)) for s, g in gaps.items()], tolerance, rule,
                          min_agreement)
        plan: float | None = decision.chosen.sparsity
    except NothingLearned:
        plan = None
    densest = min(accs)
    accepted = [s for s, a in accs.items() if a >= accs[densest] - accuracy_tolerance]
    truth = max(accepted)
    return Outcome(plan_sparsity=plan, truth_sparsity=truth, plan_acc=None if plan is None else accs[plan],
                   truth_acc=accs[truth], reference_acc=accs[densest], accuracy_tolerance=accuracy_tolerance)
