"""Refuse a setting given for a run that does not read it.

A flag or config key the chosen mode ignores (``--sparsity`` with ``--structured``,
``--score-tau`` for a criterion without an LNPT score, ``--kd-tau`` for loss ``lnpt``) used to
be silently ignored while still changing the run's fingerprint. Only settings the user gave
are checked: a default never triggers a refusal.
"""
from __future__ import annotations

from typing import Iterable

from ..config import SETTING_ORDER, RunConfig
from ..errors import ConfigError
from ..pruning.student import unread_setting
from ..train.losses import unread_loss_setting


def unread_reason(cfg: RunConfig, name: str) -> str | None:
    """One line saying why ``cfg`` does not read setting ``name``, or None when it does."""
    if name == "early_schedule" and not cfg.prune.prune_after_epochs:
        return ("--early-schedule is read by early pruning (--prune-after-epochs N > 0); "
                "add --prune-after-epochs or drop --early-schedule")
    wild = _unlabeled_reason(cfg, name)
    if wild:
        return wild
    return unread_setting(cfg.pruning, name) or unread_loss_setting(cfg.train.loss, name)


#: Settings read only with ``--unlabeled``, and those of a dataset's splits it replaces.
STREAM_ONLY = ("on_bad_image", "loader_workers", "eval")
SPLIT_ONLY = ("data_dir", "train_subset", "test_subset")


def _unlabeled_reason(cfg: RunConfig, name: str) -> str | None:
    flag = "--" + name.replace("_", "-")
    if not cfg.data.unlabeled and name in STREAM_ONLY:
        return f"{flag} is read with --unlabeled (your own images); add --unlabeled PATH or drop {flag}"
    if cfg.data.unlabeled and name in SPLIT_ONLY:
        return (f"{flag} reads the dataset's files, which --unlabeled replaces; drop {flag} "
                "(label-free metrics use --val-fraction of your images, accuracy an --eval folder)")
    return None


def check_given(cfg: RunConfig, given: Iterable[str]) -> None:
    """Raise a ConfigError for the first setting in ``given`` that ``cfg`` does not read."""
    for name in sorted(set(given), key=lambda n: SETTING_ORDER.index(n) if n in SETTING_ORDER else len(SETTING_ORDER)):
        reason = unread_reason(cfg, name)
        if reason:
            raise ConfigError(reason)
